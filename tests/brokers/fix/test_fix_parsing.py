"""The FIX adapter's pure parts: the relaxed dictionary, values fit for a tag, password masking, repeating groups,
timestamps FIX can and cannot write, and the market data books (no sessions, no servers)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.fix.config import data_dictionary_dir
from brokers.fix.dictionary import relax_dictionary
from brokers.fix.marketdata import FixMarketData
from brokers.fix.parsing import fix_decimal, fix_timestamp
from brokers.fix.session import FixMessage, clean_value, mask
from core.marketdata import Quote
from tests.waiting import until

D = Decimal
SOH = "\x01"


def _raw(*pairs: tuple[int, str]) -> str:
    return SOH.join(f"{t}={v}" for t, v in pairs) + SOH


@pytest.mark.parametrize("name", ["FIX42.xml", "FIX44.xml", "FIX50SP2.xml"])
def test_the_relaxed_dictionary_keeps_structure_and_drops_value_rules(tmp_path: Path, name: str) -> None:
    target = relax_dictionary(data_dictionary_dir() / name, tmp_path / f"{name}.relaxed.xml")
    root = ET.parse(target).getroot()
    fields = {f.get("name"): f for f in root.iterfind("fields/field")}
    exec_type = fields["ExecType"]
    assert list(exec_type) == [] and exec_type.get("type") == "STRING"  # 150=2 on a 4.4 session passes
    assert fields["NoMDEntries"].get("type") in ("NUMINGROUP", "INT")  # groups still parse (4.2 says INT)
    report = root.find("messages/message[@msgtype='8']")
    assert report is not None
    assert {e.get("required") for e in report.iter() if e is not report and e.get("required")} == {"N"}
    if name != "FIX50SP2.xml":  # 4.x dictionaries carry the header; it stays as it was
        assert len(list(fields["MsgType"])) > 0
        logon = root.find("messages/message[@msgtype='A']")
        assert logon is not None and logon.find("field[@name='HeartBtInt']").get("required") == "Y"  # type: ignore[union-attr]


def test_values_cannot_carry_control_characters() -> None:
    assert clean_value("a\x0158=b\x00c\x7fd\n") == "a 58=b c d "
    assert clean_value("plain text: 1/2") == "plain text: 1/2"


def test_passwords_are_masked_wherever_they_are_in_a_message() -> None:
    logon = _raw((8, "FIX.4.4"), (35, "A"), (553, "desk"), (554, "pw=1;x"), (925, "new"), (10, "000"))
    assert mask(logon) == _raw(
        (8, "FIX.4.4"), (35, "A"), (553, "desk"), (554, "********"), (925, "********"), (10, "000")
    )
    assert mask("554=first" + SOH) == "554=********" + SOH
    assert FixMessage.parse(logon).text() == "35=A|553=desk|554=********|925=********"


def test_repeating_groups_are_read_in_order() -> None:
    msg = FixMessage.parse(
        _raw(
            (35, "W"),
            (55, "AAPL"),
            (262, "R1"),
            (268, "2"),
            (269, "0"),
            (270, "1.5"),
            (271, "100"),
            (269, "1"),
            (270, "1.6"),
            (10, "000"),
        )
    )
    assert msg.groups(268) == [{269: "0", 270: "1.5", 271: "100"}, {269: "1", 270: "1.6"}]
    assert msg.groups(146) == []
    assert FixMessage.parse(_raw((35, "8"), (58, "a\x00b"))).fields[58] == "a?b"


def test_timestamps_and_numbers_fix_cannot_write_are_refused() -> None:
    assert fix_timestamp(datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)) == "20260102-03:04:05.678"
    assert fix_timestamp(datetime(1, 1, 1, tzinfo=UTC)) == "00010101-00:00:00.000"
    with pytest.raises(ValueError, match="year out of range"):
        fix_timestamp(datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))))
    assert fix_decimal(D("1E+3")) == "1000" and fix_decimal(D("1.2300")) == "1.23"
    for bad in (D("NaN"), D("Infinity")):
        with pytest.raises(ValueError, match="not a number"):
            fix_decimal(bad)


class _Sink:
    def __init__(self) -> None:
        self.quotes: list[Quote] = []

    async def __call__(self, quote: Quote) -> None:
        self.quotes.append(quote)


def _md(*, symbols: list[str] | None = None, to_venue: dict[str, str] | None = None) -> FixMarketData:
    return FixMarketData(source="fix", symbols=symbols or ["EURUSD"], to_venue=to_venue or {}, sink=None)


def test_market_data_books_take_the_best_level_and_the_venues_time() -> None:
    md = _md(to_venue={"EURUSD": "EUR/USD"})
    md._requests["R1"] = "EURUSD"
    # A snapshot deeper than asked: the best bid and offer win; the time is MDEntryDate + MDEntryTime.
    md.on_message(
        FixMessage.parse(
            _raw(
                (35, "W"),
                (52, "20260301-10:00:05.000"),
                (55, "EUR/USD"),
                (262, "R1"),
                (268, "4"),
                (269, "0"),
                (270, "1.0849"),
                (272, "20260301"),
                (273, "10:00:01.250"),
                (269, "0"),
                (270, "1.0850"),
                (273, "10:00:01.500"),
                (269, "1"),
                (270, "1.0853"),
                (269, "1"),
                (270, "1.0852"),
            )
        )
    )
    [quote] = md._pending.values()
    assert (quote.symbol, quote.bid, quote.ask, quote.source) == ("EURUSD", D("1.0850"), D("1.0852"), "fix")
    assert quote.at == datetime(2026, 3, 1, 10, 0, 1, 500000, tzinfo=UTC)
    # An incremental refresh: the offer is deleted, the bid changes; no entry time, so SendingTime.
    md.on_message(
        FixMessage.parse(
            _raw(
                (35, "X"),
                (52, "20260301-10:00:07.125"),
                (262, "R1"),
                (268, "2"),
                (279, "2"),
                (269, "1"),
                (55, "EUR/USD"),
                (279, "1"),
                (269, "0"),
                (270, "1.0851"),
            )
        )
    )
    quote = md._pending["EURUSD"]
    assert (quote.bid, quote.ask, quote.mid) == (D("1.0851"), None, D("1.0851"))
    assert quote.at == datetime(2026, 3, 1, 10, 0, 7, 125000, tzinfo=UTC)
    # A reject names the request; the symbol is remembered as refused.
    md._requests["R2"] = "GBPUSD"
    md.on_message(FixMessage.parse(_raw((35, "Y"), (262, "R2"), (281, "0"), (58, "unknown symbol"))))
    assert md.rejected == {"GBPUSD": "unknown symbol"}
    # Nonsense is logged, never raised into the session.
    md.on_message(FixMessage.parse(_raw((35, "X"), (262, "R1"), (268, "1"), (279, "1"), (269, "0"), (270, "x"))))


async def test_market_data_publishes_the_latest_quote_per_symbol() -> None:
    sink = _Sink()
    md = FixMarketData(source="fix", symbols=["AAPL"], to_venue={}, sink=sink)
    md._requests["R"] = "AAPL"
    for px in ("190", "191", "192"):
        md.on_message(FixMessage.parse(_raw((35, "X"), (262, "R"), (268, "1"), (279, "1"), (269, "0"), (270, px))))
    md.start()
    try:
        await until("a quote published", lambda: sink.quotes)
    finally:
        await md.stop()
    assert [q.bid for q in sink.quotes] == [D("192")]  # conflated: only the latest is worth publishing
