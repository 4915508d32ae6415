-- The audit log is append-only, enforced by the database (issue 17).
--
-- 1. Triggers refuse UPDATE, DELETE and TRUNCATE of audit_log whoever asks. Only the table's owner (or a
--    superuser) can disable a trigger.
-- 2. The application runs as the role exodus_app (core/db.py: open_pool sets it on every connection; in
--    production the login role of DATABASE_URL should be a member of exodus_app and nothing else). exodus_app
--    owns nothing, so it cannot disable the triggers, and it has no UPDATE, DELETE or TRUNCATE privilege on
--    audit_log: it may only append (audit_append()) and read.
--
-- Roles belong to the whole server, not to one database: the role is created once, whoever gets there first.

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'exodus_app') THEN
        BEGIN
            CREATE ROLE exodus_app NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migration made it
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the role exodus_app does not exist and this user may not create it: '
                    'run CREATE ROLE exodus_app NOLOGIN as an administrator, then start again';
        END;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO exodus_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO exodus_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO exodus_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM exodus_app;
-- Tables and sequences later migrations create get the same grants (audit_log is the only exception).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO exodus_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO exodus_app;

CREATE INDEX audit_log_at ON audit_log (at);
