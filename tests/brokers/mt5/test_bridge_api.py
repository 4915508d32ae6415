"""The bridge endpoints and the command outbox, without Temporal: auth, leases, acks, deals, liveness."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.mt5.session import mark_stale_accounts, session_check
from core.domain import OrderSide, OrderType, ReportKind, SubmitOrder, TimeInForce, derive_order_id
from tests.brokers.mt5.conftest import Rig
from tests.brokers.mt5.peer import EaPeer, EaState

pytestmark = pytest.mark.asyncio

D = Decimal


def _order(rig: Rig, **kw: object) -> SubmitOrder:
    import uuid

    fields: dict[str, object] = {
        "client_order_id": derive_order_id(uuid.uuid4().hex),
        "account": rig.account,
        "symbol": "EURUSD",
        "side": OrderSide.BUY,
        "type": OrderType.LIMIT,
        "time_in_force": TimeInForce.GTC,
        "qty": D("10000"),
        "price": D("1.08000"),
    }
    fields.update(kw)
    return SubmitOrder(**fields)  # type: ignore[arg-type]


async def _poll(rig: Rig, peer: EaPeer | None = None) -> list[dict]:
    body = (peer or rig.peer)._ident() | {"max_commands": 20}
    resp = await rig.http.post(rig.url("/commands/poll"), json=body, headers=rig.auth())
    assert resp.status_code == 200, resp.text
    return resp.json()["commands"]


async def _second_terminal(rig: Rig) -> EaPeer:
    """Another terminal running the EA for the same account (its heartbeat makes it the one Exodus talks to)."""
    other = EaPeer(
        rig.http,
        rig.terminal,
        account=rig.account,
        token=rig.token,
        magic=rig.peer.magic,
        state=EaState(terminal_id="T-second-terminal"),
    )
    await other.on_init()
    other.detach()
    return other


# ------------------------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bridge token"),
        ({"Authorization": "Basic abc"}, "malformed Authorization header"),
        ({"Authorization": "Bearer nope"}, "wrong bridge token for account"),
    ],
)
async def test_bridge_refuses_a_missing_or_wrong_token_with_401(rig: Rig, headers: dict, message: str) -> None:
    resp = await rig.http.post(rig.url("/commands/poll"), json=rig.peer._ident(), headers=headers)
    assert resp.status_code == 401
    assert message in resp.json()["message"]
    assert resp.json()["reasons"][0]["field"] == "Authorization"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_ea_with_a_wrong_token_takes_no_commands(rig: Rig) -> None:
    command_id, _ = await rig.commands.enqueue_new(_order(rig))
    impostor = EaPeer(
        rig.http,
        rig.terminal,
        account=rig.account,
        token="not-the-token",
        magic=rig.peer.magic,
        state=EaState(terminal_id="T-impostor"),
    )
    await impostor.on_init()
    await impostor.sync()
    assert {status for _, status, _ in impostor.responses} == {401}
    assert all("wrong bridge token" in body["message"] for _, _, body in impostor.responses)
    state = await rig.commands.command_state(command_id)
    assert state is not None and state.state == "PENDING"  # never delivered, never leased
    assert rig.terminal.sent == []


async def test_token_of_one_account_does_not_open_another(rig: Rig) -> None:
    resp = await rig.http.post(
        "/api/v1/bridge/mt5/accounts/someone-else/commands/poll", json=rig.peer._ident(), headers=rig.auth()
    )
    assert resp.status_code == 401 and "no MT5 bridge account 'someone-else'" in resp.json()["message"]


async def test_malformed_bodies_are_refused_naming_the_field(rig: Rig) -> None:
    body = rig.peer._ident() | {"max_commands": 5, "colour": "red"}
    resp = await rig.http.post(rig.url("/commands/poll"), json=body, headers=rig.auth())
    assert resp.status_code == 422 and resp.json()["reasons"][0]["field"] == "colour"
    body = rig.peer._ident() | {"protocol": 2}
    resp = await rig.http.post(rig.url("/commands/poll"), json=body, headers=rig.auth())
    assert resp.status_code == 400
    assert resp.json()["reasons"][0]["field"] == "protocol" and "speaks bridge protocol 1" in resp.json()["message"]
    resp = await rig.http.post(rig.url("/acks"), json=rig.peer._ident() | {"command_id": "x"}, headers=rig.auth())
    assert resp.status_code == 422
    assert {r["field"] for r in resp.json()["reasons"]} == {"retcode", "executed_at_msc"}


# ------------------------------------------------------------------------------------------------ liveness


async def _session_check(pool, account: str) -> str | None:
    # The risk check calls it with its decision's own connection.
    async with pool.connection() as conn:
        return await session_check(conn, account)


async def test_heartbeats_connect_then_keep_alive_and_feed_the_session_check(rig: Rig, pool) -> None:
    assert rig.peer.responses[-1][2]["status"] == "CONNECTED"  # on_init's heartbeat
    reply = await rig.peer.heartbeat()
    assert reply["status"] == "ALIVE" and reply["breaks"] == []
    assert await _session_check(pool, rig.account) is None
    [row] = await _fetch(pool, "SELECT login, server, terminal_id FROM mt5_accounts WHERE account = %s", rig.account)
    assert row["login"] == rig.terminal.login and row["terminal_id"] == rig.peer.state.terminal_id
    specs = await _fetch(
        pool,
        "SELECT symbol, broker_symbol, contract_size FROM mt5_symbols WHERE account = %s ORDER BY symbol",
        rig.account,
    )
    assert [(s["symbol"], s["broker_symbol"]) for s in specs] == [
        ("EURUSD", "EURUSD#"),
        ("GBPUSD", "GBPUSD#"),
        ("USDJPY", "USDJPY#"),
    ]


async def test_silence_marks_the_account_disconnected_and_refuses_new_orders(rig: Rig, pool) -> None:
    await _age_heartbeat(pool, rig.account, seconds=45)
    reason = await _session_check(pool, rig.account)
    assert reason is not None and "has not sent a heartbeat for 45 s (limit 30 s): account disconnected" in reason
    assert await mark_stale_accounts(pool, [rig.account]) == [rig.account]
    assert await mark_stale_accounts(pool, [rig.account]) == []  # once
    reply = await rig.peer.heartbeat()
    assert reply["status"] == "RECONNECTED"
    assert await _session_check(pool, rig.account) is None
    kinds = [
        e["kind"]
        for e in await _fetch(pool, "SELECT kind FROM mt5_account_events WHERE account = %s ORDER BY id", rig.account)
    ]
    assert kinds == ["CONNECTED", "RECONCILED", "DISCONNECTED", "RECONNECTED", "RECONCILED"]


async def test_the_registrys_session_check_asks_on_the_risk_decisions_own_connection(rig: Rig, pool) -> None:
    import psycopg

    from brokers import BROKERS

    check = BROKERS["mt5"].session_check
    assert check is not None
    async with pool.connection() as conn, conn.transaction() as tx:
        assert await check(conn, rig.account) is None
        # Inside the decision's transaction (not committed): only a check on this connection can see it.
        await conn.execute(
            "UPDATE mt5_accounts SET last_heartbeat_at = now() - make_interval(secs => 45) WHERE account = %s",
            (rig.account,),
        )
        reason = await check(conn, rig.account)
        assert reason is not None and "has not sent a heartbeat for 45 s" in reason
        raise psycopg.Rollback(tx)
    assert await _session_check(pool, rig.account) is None  # rolled back: the terminal still counts as connected


async def test_algo_trading_switched_off_is_a_clear_refusal(rig: Rig, pool) -> None:
    rig.terminal.trade_allowed = False
    await rig.peer.heartbeat()
    assert "algo trading is switched off" in (await _session_check(pool, rig.account) or "")


async def test_polls_without_an_accepted_heartbeat_get_no_commands(rig: Rig) -> None:
    await rig.commands.enqueue_new(_order(rig))
    stranger = rig.peer._ident() | {"session_id": "S-never-heartbeated", "max_commands": 20}
    resp = await rig.http.post(rig.url("/commands/poll"), json=stranger, headers=rig.auth())
    assert resp.status_code == 409 and resp.json()["reasons"][0]["field"] == "session_id"
    assert "send a heartbeat first" in resp.json()["message"]
    assert len(await _poll(rig)) == 1  # the EA that heartbeats gets it


async def test_a_terminal_logged_in_to_another_login_is_refused(rig: Rig, pool, database_url, instruments) -> None:
    from tests.brokers.mt5.conftest import bridge_settings, open_rig

    settings = bridge_settings(database_url, [rig.account])
    settings.mt5.accounts[rig.account].login = 999
    async with open_rig(settings, rig.account, pool, instruments, terminal=rig.terminal) as other:
        await rig.commands.enqueue_new(_order(rig))
        await other.peer.on_init()
        path, status, body = other.peer.responses[-1]
        assert status == 409 and body["reasons"][0]["field"] == "account.login"
        assert "logged in to 51234567" in body["message"]
        await other.peer.tick()  # and it gets no commands: it never had an accepted heartbeat
        assert other.peer.responses[-1][0] == "/commands/poll" and other.peer.responses[-1][1] == 409
        assert rig.terminal.sent == []


# ------------------------------------------------------------------------------------------------ outbox


async def test_a_command_is_redelivered_until_acknowledged_and_never_to_a_second_terminal(rig: Rig, pool) -> None:
    order = _order(rig)
    command_id, created = await rig.commands.enqueue_new(order)
    assert created
    first = await _poll(rig)
    again = await _poll(rig)  # a duplicate poll (or a lost poll response) gets the same command again
    assert [c["command_id"] for c in first] == [c["command_id"] for c in again] == [command_id]
    assert await _poll(rig, await _second_terminal(rig)) == []  # leased to the first terminal
    [row] = await _fetch(
        pool, "SELECT state, deliveries, lease_owner FROM mt5_commands WHERE command_id = %s", command_id
    )
    assert row["state"] == "LEASED" and row["deliveries"] == 2 and row["lease_owner"] == rig.peer.state.terminal_id
    # The EA executes it once, although it saw it twice.
    for command in first + again:
        await rig.peer._handle(command)
    await rig.peer.heartbeat()
    assert rig.peer.executed == [command_id] and len(rig.terminal.sent) == 1
    assert [r[2]["status"] for r in rig.peer.responses if r[0] == "/acks"] == ["RECORDED", "DUPLICATE"]
    assert await _poll(rig) == []
    reports = await rig.reports.reports_of(command_id.split(":")[0])
    assert [r.kind for r in reports] == [ReportKind.ACCEPTED]
    assert reports[0].broker_order_id == str(next(iter(rig.terminal.orders)))  # the resting order's ticket


async def test_an_expired_lease_passes_the_command_to_another_terminal(rig: Rig, pool) -> None:
    order = _order(rig)
    command_id, _ = await rig.commands.enqueue_new(order)
    await _poll(rig)
    await _exec(
        pool, "UPDATE mt5_commands SET lease_until = now() - interval '1 second' WHERE command_id = %s", command_id
    )
    taken = await _poll(rig, await _second_terminal(rig))
    assert [c["command_id"] for c in taken] == [command_id]
    events = await _fetch(
        pool, "SELECT detail FROM mt5_account_events WHERE account = %s AND kind = 'LEASE_TAKEN_OVER'", rig.account
    )
    assert events[0]["detail"]["previous"] == rig.peer.state.terminal_id


async def test_a_command_nobody_picked_up_in_time_expires_and_is_never_delivered(rig: Rig, pool) -> None:
    order = _order(rig)
    command_id, _ = await rig.commands.enqueue_new(order)
    await _exec(
        pool, "UPDATE mt5_commands SET created_at = now() - interval '61 seconds' WHERE command_id = %s", command_id
    )
    assert await _poll(rig) == []
    [report] = await rig.reports.reports_of(command_id.split(":")[0])
    assert report.kind is ReportKind.REJECTED and "did not pick the order up within 60 s" in (report.reason or "")
    late = rig.peer._ack({"command_id": command_id}, retcode=10008, order=1)
    resp = await rig.http.post(rig.url("/acks"), json=late, headers=rig.auth())
    assert resp.status_code == 409 and resp.json()["reasons"][0]["field"] == "command_id"


async def test_an_ack_for_an_unknown_command_is_404(rig: Rig) -> None:
    ack = rig.peer._ack({"command_id": "EXNOSUCHORDER00000:NEW"}, retcode=10009)
    resp = await rig.http.post(rig.url("/acks"), json=ack, headers=rig.auth())
    assert resp.status_code == 404 and resp.json()["reasons"][0]["field"] == "command_id"


# ------------------------------------------------------------------------------------------------ trades


async def test_deals_are_deduplicated_by_ticket_and_unknown_deals_are_breaks(rig: Rig, pool) -> None:
    order = _order(rig, type=OrderType.MARKET, price=None)
    command_id, _ = await rig.commands.enqueue_new(order)
    for command in await _poll(rig):
        await rig.peer._handle(command)
    body = rig.peer._ident() | {"deals": list(rig.peer._deals), "orders": []}
    first = (await rig.http.post(rig.url("/trades"), json=body, headers=rig.auth())).json()
    again = (await rig.http.post(rig.url("/trades"), json=body, headers=rig.auth())).json()
    assert (first["deals_new"], first["deals_duplicate"]) == (1, 0)
    assert (again["deals_new"], again["deals_duplicate"]) == (0, 1)
    fills = [r for r in await rig.reports.reports_of(order.cl_ord_id) if r.kind is ReportKind.FILL]
    assert len(fills) == 1 and fills[0].last_qty == D("10000") and fills[0].last_price == D("1.08501")
    assert fills[0].exec_id == f"mt5:{rig.account}:deal:{body['deals'][0]['deal']}"
    stray = dict(body["deals"][0], deal=424242, order=434343, comment="manual")
    reply = (
        await rig.http.post(rig.url("/trades"), json=rig.peer._ident() | {"deals": [stray]}, headers=rig.auth())
    ).json()
    assert reply["unmatched"] == [424242]
    breaks = await _fetch(
        pool,
        "SELECT kind, detail FROM reconciliation_breaks WHERE detail LIKE %s",
        f"%account {rig.account} deal 424242%",
    )
    assert [b["kind"] for b in breaks] == ["UNMATCHED_DEAL"]


async def test_a_restarted_ea_resends_its_ack_instead_of_executing_again(rig: Rig) -> None:
    order = _order(rig)
    command_id, _ = await rig.commands.enqueue_new(order)
    rig.peer.drop_acks = 1  # the ack never leaves the terminal
    for command in await _poll(rig):
        await rig.peer._handle(command)
    assert (await rig.commands.command_state(command_id)).state == "LEASED"  # type: ignore[union-attr]
    peer = await rig.restart_peer()
    await peer.tick()
    state = await rig.commands.command_state(command_id)
    assert state is not None and state.state == "ACKED" and state.ack is not None
    assert rig.peer.executed == [] and len(rig.terminal.sent) == 1


async def test_an_ea_without_its_state_file_still_finds_the_order_by_magic_and_comment(rig: Rig) -> None:
    order = _order(rig)
    command_id, _ = await rig.commands.enqueue_new(order)
    rig.peer.crash_after_send = "NEW"
    [command] = await _poll(rig)
    with pytest.raises(Exception, match="crashed"):
        await rig.peer._handle(command)
    peer = await rig.restart_peer(state=EaState(terminal_id=rig.peer.state.terminal_id))  # state file lost
    await peer.tick()
    state = await rig.commands.command_state(command_id)
    assert state is not None and state.ack is not None and state.ack.recovered and state.ack.retcode == 10008
    assert len(rig.terminal.sent) == 1


async def _fetch(pool, sql: str, *params: object) -> list[dict]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


async def _exec(pool, sql: str, *params: object) -> None:
    async with pool.connection() as conn:
        await conn.execute(sql, params)


async def _age_heartbeat(pool, account: str, *, seconds: int) -> None:
    await _exec(
        pool,
        "UPDATE mt5_accounts SET last_heartbeat_at = now() - make_interval(secs => %s) WHERE account = %s",
        seconds,
        account,
    )


# ------------------------------------------------------------------------------------------------ refusals on record


async def test_a_refused_login_is_recorded_as_an_account_event(rig: Rig, pool, database_url, instruments) -> None:
    from tests.brokers.mt5.conftest import bridge_settings, open_rig

    settings = bridge_settings(database_url, [rig.account])
    settings.mt5.accounts[rig.account].login = 999
    async with open_rig(settings, rig.account, pool, instruments, terminal=rig.terminal) as other:
        await other.peer.on_init()
        await other.peer.heartbeat()  # the EA tries again: still refused, still one event
        assert [status for _, status, _ in other.peer.responses] == [409, 409]
    [event] = await _fetch(
        pool, "SELECT detail FROM mt5_account_events WHERE account = %s AND kind = 'LOGIN_MISMATCH'", rig.account
    )
    assert event["detail"] == {"expected": 999, "got": rig.terminal.login}


async def test_an_execution_acknowledged_after_its_withdrawal_is_refused_and_kept_as_a_break(rig: Rig, pool) -> None:
    order = _order(rig)
    command_id, _ = await rig.commands.enqueue_new(order)
    order_id = command_id.split(":")[0]
    assert await rig.commands.withdraw_new(order_id, reason="cancel requested") is not None
    ack = rig.peer._ident() | {
        "command_id": command_id,
        "retcode": 10009,
        "order": 88001235,
        "deal": 77001236,
        "volume": "0.1",
        "price": "1.08",
        "executed_at_msc": 1795684480120,
    }
    resp = await rig.http.post(rig.url("/acks"), json=ack, headers=rig.auth())
    assert resp.status_code == 409 and resp.json()["reasons"][0]["code"] == "COMMAND_NOT_DELIVERED"
    # The refusal does not lose what it found: the conflict and, since the EA says it executed, a break.
    [event] = await _fetch(
        pool, "SELECT detail FROM mt5_account_events WHERE account = %s AND kind = 'ACK_CONFLICT'", rig.account
    )
    assert event["detail"]["state"] == "WITHDRAWN" and event["detail"]["again"]["order"] == 88001235
    [brk] = await _fetch(
        pool,
        "SELECT detail FROM reconciliation_breaks WHERE broker = 'mt5' AND kind = 'EXECUTED_AFTER_WITHDRAWAL'"
        " AND order_id = %s",
        order_id,
    )
    assert f"executed {command_id} (order 88001235) although it was withdrawn" in brk["detail"]
    state = await rig.commands.command_state(command_id)
    assert state is not None and state.state == "WITHDRAWN" and state.ack is None  # the ack is not taken
