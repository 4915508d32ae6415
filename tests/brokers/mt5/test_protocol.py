"""The wire protocol, checked three ways: golden messages <-> Python models <-> mql5 sources.

MQL5 cannot be compiled here, so the MQL5 side is checked statically: ``Protocol.mqh`` must declare exactly
the fields and constants of ``brokers/mt5/protocol.py``; the EA may use JSON keys only through those
constants, must write every field of the messages it sends and read the command fields it needs; and its
start-up self-check must cover every MQL5 enum value the protocol carries. The Python EA peer's messages
and the live endpoints are checked against the same golden files.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from api.schemas import ErrorBody, Reason
from brokers.mt5 import protocol as p
from brokers.mt5.parsing import filling_sequence, mql_request, resolve_symbol
from tests.brokers.mt5.conftest import Rig
from tests.brokers.mt5.peer import EaPeer

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
MQL5 = ROOT / "mql5"
PROTOCOL_MQH = MQL5 / "Include" / "ExodusBridge" / "Protocol.mqh"
EA_SOURCES = [MQL5 / "Experts" / "ExodusBridge.mq5", *sorted((MQL5 / "Include" / "ExodusBridge").glob("*.mqh"))]

#: golden file -> the model it is an instance of
MESSAGES: dict[str, type[BaseModel]] = {
    "heartbeat": p.Heartbeat,
    "heartbeat_reply": p.HeartbeatReply,
    "poll_request": p.PollRequest,
    "poll_reply": p.PollReply,
    "ack_done": p.Ack,
    "ack_rejected": p.Ack,
    "ack_recovered": p.Ack,
    "ack_ea_error": p.Ack,
    "ack_reply": p.AckReply,
    "trades": p.TradeReport,
    "trade_reply": p.TradeReply,
    "ticks": p.Ticks,
    "ticks_reply": p.TicksReply,
}

#: Protocol.mqh field-constant prefix (EXB_F_<prefix>_<FIELD>) -> model
PREFIXES: dict[str, type[BaseModel]] = {
    "HEARTBEAT": p.Heartbeat,
    "TERMINAL": p.TerminalInfo,
    "ACCOUNT": p.AccountInfo,
    "POSITION": p.Position,
    "PORDER": p.PendingOrder,
    "SYMBOL": p.SymbolSpec,
    "HBREPLY": p.HeartbeatReply,
    "POLL": p.PollRequest,
    "POLLREPLY": p.PollReply,
    "COMMAND": p.Command,
    "ACK": p.Ack,
    "ACKREPLY": p.AckReply,
    "TRADES": p.TradeReport,
    "DEAL": p.Deal,
    "OUPDATE": p.OrderUpdate,
    "TRADEREPLY": p.TradeReply,
    "TICKS": p.Ticks,
    "TICK": p.Tick,
    "TICKSREPLY": p.TicksReply,
    "ERROR": ErrorBody,
    "REASON": Reason,
}
IDENT = {"protocol", "terminal_id", "session_id"}
#: Messages the EA writes (every field of them must be written somewhere in the EA).
EA_WRITES = [
    "HEARTBEAT",
    "TERMINAL",
    "ACCOUNT",
    "POSITION",
    "PORDER",
    "SYMBOL",
    "POLL",
    "ACK",
    "TRADES",
    "DEAL",
    "OUPDATE",
    "TICKS",
    "TICK",
]
#: Command fields the EA acts on; the rest are for people reading logs.
EA_READS_COMMAND = {
    "command_id",
    "kind",
    "order_id",
    "symbol",
    "action",
    "type",
    "volume",
    "contract_size",
    "price",
    "stoplimit",
    "type_time",
    "expiration",
    "fillings",
    "deviation",
    "ticket",
}


def _golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def _defines() -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for name, value in re.findall(r"^#define\s+(EXB_\w+)[ \t]+(.+?)\s*$", PROTOCOL_MQH.read_text(), re.M):
        out[name] = json.loads(value) if value.startswith('"') else int(value)
    return out


def _fields(model: type[BaseModel]) -> set[str]:
    fields = set(model.model_fields)
    if model is ErrorBody:
        fields.discard("internal_order_id")  # never set on bridge answers
    if issubclass(model, p._FromEa):
        fields -= IDENT
    return fields


def _strip_comments(source: str) -> str:
    # Drop // comments, leaving string literals (which may contain "//", as URLs do) intact.
    out = []
    for line in source.splitlines():
        in_str, i = False, 0
        while i < len(line):
            c = line[i]
            if c == "\\" and in_str:
                i += 2
                continue
            if c == '"':
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                line = line[:i]
                break
            i += 1
        out.append(line)
    return "\n".join(out)


def _ea_code(*, include_protocol: bool = False) -> str:
    return "\n".join(_strip_comments(f.read_text()) for f in EA_SOURCES if include_protocol or f != PROTOCOL_MQH)


# ------------------------------------------------------------------------------------------ golden <-> Python


def test_every_golden_file_is_checked() -> None:
    assert {f.stem for f in GOLDEN.glob("*.json")} - {"mapping"} == set(MESSAGES)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_golden_messages_are_exactly_what_the_python_models_read_and_write(name: str) -> None:
    data = _golden(name)
    message = MESSAGES[name].model_validate(data)
    assert message.model_dump(mode="json") == data


def test_golden_examples_cover_every_command_kind_and_ea_error_path() -> None:
    commands = p.PollReply.model_validate(_golden("poll_reply")).commands
    assert {c.kind for c in commands} == set(p.CommandKind)
    acks = [p.Ack.model_validate(_golden(n)) for n in ("ack_done", "ack_rejected", "ack_recovered", "ack_ea_error")]
    assert [a.retcode for a in acks] == [10009, 10019, 10008, 0] and acks[2].recovered and acks[3].error


# ------------------------------------------------------------------------------------------ Protocol.mqh


def test_protocol_mqh_declares_exactly_the_python_fields() -> None:
    defines = _defines()
    fields = {k: v for k, v in defines.items() if k.startswith("EXB_F_")}
    assert {v for k, v in fields.items() if k.startswith("EXB_F_ID_")} == IDENT
    seen = {k for k in fields if k.startswith("EXB_F_ID_")}
    for prefix, model in PREFIXES.items():
        mine = {k: v for k, v in fields.items() if k.startswith(f"EXB_F_{prefix}_")}
        assert set(mine.values()) == _fields(model), prefix
        assert all(k == f"EXB_F_{prefix}_{v.upper()}" for k, v in mine.items()), prefix  # type: ignore[union-attr]
        seen |= set(mine)
    assert set(fields) == seen, f"stray field constants: {set(fields) - seen}"


def test_protocol_mqh_constants_match_python() -> None:
    d = _defines()
    assert d["EXB_PROTOCOL_VERSION"] == p.PROTOCOL_VERSION
    assert d["EXB_PATH_PREFIX"] + "{account}" == p.API_PREFIX
    assert {
        k.removeprefix("EXB_PATH_").lower(): v
        for k, v in d.items()
        if k.startswith("EXB_PATH_") and k != "EXB_PATH_PREFIX"
    } == p.PATHS
    assert {v for k, v in d.items() if k.startswith("EXB_KIND_")} == {k.value for k in p.CommandKind}
    assert {v for k, v in d.items() if k.startswith("EXB_ERR_")} == {e.value for e in p.EaError} - {""}
    assert {v for k, v in d.items() if k.startswith("EXB_ACK_")} == {s.value for s in p.AckStatus}
    assert {v for k, v in d.items() if k.startswith("EXB_LINK_")} == {s.value for s in p.LinkStatus}
    mt5 = {k.removeprefix("EXB_MT5_"): v for k, v in d.items() if k.startswith("EXB_MT5_")}
    assert mt5 == {k: v for k, v in vars(p.Mt5).items() if k.isupper()}
    retcodes = {k.removeprefix("EXB_RETCODE_"): v for k, v in d.items() if k.startswith("EXB_RETCODE_")}
    assert retcodes == {r.name: r.value for r in p.Retcode}


def test_golden_messages_use_exactly_the_keys_protocol_mqh_declares() -> None:
    d = _defines()

    def keys(prefix: str) -> set[str]:
        return {v for k, v in d.items() if k.startswith(f"EXB_F_{prefix}_")}  # type: ignore[misc]

    def ea(prefix: str) -> set[str]:
        return keys(prefix) | IDENT

    hb = _golden("heartbeat")
    assert set(hb) == ea("HEARTBEAT")
    assert set(hb["terminal"]) == keys("TERMINAL") and set(hb["account"]) == keys("ACCOUNT")
    assert set(hb["positions"][0]) == keys("POSITION") and set(hb["orders"][0]) == keys("PORDER")
    assert all(set(s) == keys("SYMBOL") for s in hb["symbols"])
    assert set(_golden("heartbeat_reply")) == keys("HBREPLY")
    assert set(_golden("poll_request")) == ea("POLL")
    reply = _golden("poll_reply")
    assert set(reply) == keys("POLLREPLY") and all(set(c) == keys("COMMAND") for c in reply["commands"])
    for name in ("ack_done", "ack_rejected", "ack_recovered", "ack_ea_error"):
        assert set(_golden(name)) == ea("ACK")
    assert set(_golden("ack_reply")) == keys("ACKREPLY")
    trades = _golden("trades")
    assert set(trades) == ea("TRADES")
    assert set(trades["deals"][0]) == keys("DEAL") and set(trades["orders"][0]) == keys("OUPDATE")
    assert set(_golden("trade_reply")) == keys("TRADEREPLY")
    ticks = _golden("ticks")
    assert set(ticks) == ea("TICKS") and all(set(t) == keys("TICK") for t in ticks["ticks"])
    assert set(_golden("ticks_reply")) == keys("TICKSREPLY")


# ------------------------------------------------------------------------------------------ the EA's sources


def test_ea_uses_json_keys_only_through_protocol_constants() -> None:
    keys = {v for k, v in _defines().items() if k.startswith("EXB_F_")}
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', _ea_code())
    assert sorted({lit for lit in literals if lit in keys}) == []


def test_ea_writes_every_field_of_every_message_it_sends() -> None:
    code = _ea_code()
    d = _defines()
    missing = [
        k
        for k in d
        if (k.startswith("EXB_F_ID_") or any(k.startswith(f"EXB_F_{prefix}_") for prefix in EA_WRITES))
        and not re.search(rf"\.\w+\(\s*{k}\b", code)
    ]
    assert missing == []


def test_ea_reads_the_command_fields_it_acts_on() -> None:
    code = _ea_code()
    for field in EA_READS_COMMAND:
        assert re.search(rf"\.Get\w*\(\s*EXB_F_COMMAND_{field.upper()}\b", code), field
    assert set(p.Command.model_fields) - EA_READS_COMMAND == {"client_order_id", "side", "created_at"}
    for name in (
        "EXB_F_POLLREPLY_COMMANDS",
        "EXB_F_HBREPLY_STATUS",
        "EXB_F_HBREPLY_BREAKS",
        "EXB_F_ERROR_MESSAGE",
        "EXB_F_TICKSREPLY_UNKNOWN",
    ):
        assert re.search(rf"\.Get\w*\(\s*{name}\b", code), name
    for path in ("EXB_PATH_HEARTBEAT", "EXB_PATH_POLL", "EXB_PATH_ACK", "EXB_PATH_TRADES", "EXB_PATH_TICKS"):
        assert re.search(rf"Post\(\s*{path}\b", code), path


def test_ea_reports_ticks_on_its_timer_from_the_terminals_own_tick() -> None:
    # The ticks are MqlTick values of the resolved (broker-named) symbols, with their time converted to UTC,
    # sent from OnTimer; a 404 (an Exodus without ticks) stops them, a 409 asks for a heartbeat first.
    code = _ea_code()
    send = code[code.index("bool ExbSendTicks(") : code.index("void ExbSendAck(")]
    assert "SymbolInfoTick(names[i], tick)" in send and "g_trader.Resolved(" in send
    assert "w.Str(EXB_F_TICK_BROKER_SYMBOL, names[i])" in send
    assert "ExbToUtcMsc(tick.time_msc)" in send
    assert "status == 404" in send and "g_ticks_off = true" in send and "g_last_heartbeat = 0" in send
    timer = code[code.index("void OnTimer(") :]
    assert "ExbSendTicks();" in timer


def test_ea_self_check_covers_every_mql5_value_the_protocol_carries() -> None:
    code = _strip_comments((MQL5 / "Include" / "ExodusBridge" / "SelfCheck.mqh").read_text())
    for name in (k.removeprefix("EXB_MT5_") for k in _defines() if k.startswith("EXB_MT5_")):
        assert f'ExbCheck("{name}", EXB_MT5_{name}, {name}, ok);' in code, name
    for name in ("PLACED", "DONE", "DONE_PARTIAL", "NO_CHANGES", "NO_MONEY", "MARKET_CLOSED", "INVALID_FILL"):
        assert f'ExbCheck("TRADE_RETCODE_{name}", EXB_RETCODE_{name}, TRADE_RETCODE_{name}, ok);' in code, name


def test_ea_marks_a_command_in_progress_before_order_send() -> None:
    # The at-most-once rule, as the source states it: persist IN_PROGRESS, then execute, then persist DONE.
    code = _ea_code()
    handle = code[code.index("void ExbHandle(") : code.index("bool ExbPoll(")]
    order = [handle.index(s) for s in ('EXB_CMD_IN_PROGRESS, "")', "g_state.Save", "ExecuteNew", "EXB_CMD_DONE,")]
    assert order == sorted(order)
    assert handle.index("Recover(") < handle.index("ExecuteNew")
    trade = (MQL5 / "Include" / "ExodusBridge" / "Trade.mqh").read_text()
    new = trade[trade.index("void              ExecuteNew(") : trade.index("void              ExecuteChange(")]
    assert new.index("Recover(cmd, o)") < new.index("OrderSend(")  # every NEW looks for its order first


def test_mql5_readme_states_that_nothing_was_compiled_here() -> None:
    readme = (MQL5 / "README.md").read_text()
    assert "not been compiled" in readme and "MetaEditor" in readme and "4014" in readme and "5203" in readme


# ------------------------------------------------------------------------------------------ mapping


def test_command_to_request_mapping_matches_the_golden_cases() -> None:
    mapping = _golden("mapping")
    commands = p.PollReply.model_validate(_golden("poll_reply")).commands
    for case in mapping["requests"]:
        request = mql_request(
            commands[case["command"]],
            broker_symbol=case["broker_symbol"],
            filling=case["filling"],
            magic=case["magic"],
            bid=Decimal(case["bid"]) if case["bid"] else None,
            ask=Decimal(case["ask"]) if case["ask"] else None,
            server_offset_s=case["server_offset_s"],
        )
        assert request == case["request"], case["command"]


@pytest.mark.parametrize("case", _golden("mapping")["fillings"], ids=lambda c: c["why"])
def test_filling_sequences_match_the_golden_cases_in_python_and_in_the_peer(case: dict[str, Any]) -> None:
    got = filling_sequence(
        case["preferred"], order_type=case["type"], filling_mask=case["mask"], exemode=case["exemode"]
    )
    assert got == case["expected"]
    assert EaPeer._fillings(case["preferred"], case["type"], case["mask"], case["exemode"]) == case["expected"]


@pytest.mark.parametrize("case", _golden("mapping")["symbols"], ids=lambda c: f"{c['base']}->{c['expected']}")
def test_symbol_resolution_matches_the_golden_cases(case: dict[str, Any]) -> None:
    assert resolve_symbol(case["base"], case["names"], case["overrides"]) == case["expected"]


# ------------------------------------------------------------------------------------------ live


async def test_golden_ea_messages_are_accepted_by_the_endpoints(rig: Rig) -> None:
    async def post(path: str, name: str) -> int:
        resp = await rig.http.post(rig.url(path), json=_golden(name), headers=rig.auth())
        return resp.status_code

    assert await post("/heartbeat", "heartbeat") == 200
    assert await post("/commands/poll", "poll_request") == 200
    assert await post("/trades", "trades") == 200  # unknown deals: accepted and recorded as breaks
    assert await post("/acks", "ack_done") == 404  # well-formed, but no such command for this account
    ticks = await rig.http.post(rig.url("/ticks"), json=_golden("ticks"), headers=rig.auth())
    assert ticks.status_code == 200, ticks.text
    reply, gold = ticks.json(), _golden("ticks_reply")
    assert set(reply) == set(gold)
    assert (reply["accepted"], reply["unknown"]) == (gold["accepted"], gold["unknown"])  # EURUSD#, GOLD# mapped


async def test_the_peer_speaks_the_golden_messages(rig: Rig) -> None:
    from tests.brokers.mt5.test_bridge_api import _order

    await rig.commands.enqueue_new(_order(rig, type="MARKET", price=None))
    await rig.peer.sync()
    sent = rig.peer.sent
    assert set(sent["/heartbeat"][-1]) == set(_golden("heartbeat"))
    hb, gold = sent["/heartbeat"][-1], _golden("heartbeat")
    for part in ("terminal", "account"):
        assert set(hb[part]) == set(gold[part])
    assert set(hb["symbols"][0]) == set(gold["symbols"][0]) and set(hb["positions"][0]) == set(gold["positions"][0])
    assert set(sent["/commands/poll"][-1]) == set(_golden("poll_request"))
    assert set(sent["/acks"][-1]) == set(_golden("ack_done"))
    trades = sent["/trades"][-1]
    assert set(trades) == set(_golden("trades"))
    assert set(trades["deals"][0]) == set(_golden("trades")["deals"][0])
    assert set(trades["orders"][0]) == set(_golden("trades")["orders"][0])
    ticks = sent["/ticks"][-1]
    assert set(ticks) == set(_golden("ticks")) and set(ticks["ticks"][0]) == set(_golden("ticks")["ticks"][0])
    # and the server understood all of it
    assert [r[1] for r in rig.peer.responses] == [200] * len(rig.peer.responses)
