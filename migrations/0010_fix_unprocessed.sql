-- Messages the FIX adapter received and could not apply, kept for an operator instead of being dropped: an
-- ExecutionReport it cannot interpret, a trade bust or correction (not applied automatically), a report QuickFIX
-- itself refused at the session level. Each also opens a reconciliation break for its order (when it names one).
-- `key` identifies the message across resends: "17:<ExecID>" when it has one, else "34:<MsgSeqNum>:<SendingTime>".
CREATE TABLE fix_unprocessed (
    session          text NOT NULL,
    key              text NOT NULL,
    msg_type         text NOT NULL,
    order_id         text,
    client_order_id  text,
    kind             text NOT NULL,
    reason           text NOT NULL,
    -- the message as tag=value|tag=value, passwords masked
    message          text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session, key)
);
CREATE INDEX fix_unprocessed_order ON fix_unprocessed (order_id);
