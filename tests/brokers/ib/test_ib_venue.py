"""The local TWS venue's wire protocol, spoken by hand over a raw socket (framing, the handshake, version
negotiation, startApi, IB's order-id rules and its reject/cancel messages), and decoded by ib_async's own decoder."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from datetime import UTC
from decimal import Decimal

import pytest

from core.instruments import InstrumentCatalog
from devstack.venues.ib.venue import IBVenue, IBVenueServer
from devstack.venues.ib.wire import MAX_SERVER_VERSION, Handshake, frame, negotiate, read_frame
from sim.venue import SimVenue

D = Decimal


@pytest.fixture(scope="module")
async def server(instruments: InstrumentCatalog) -> AsyncIterator[IBVenueServer]:
    sim = SimVenue(instruments, name="ibvenue", tick_interval=0)
    s = IBVenueServer(IBVenue(sim, list(instruments)))
    await s.start()
    yield s
    await s.stop()


class Raw:
    """A hand-made API client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, offer: bytes = b"v157..178") -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"API\0" + struct.pack(">I", len(offer)) + offer)
        return cls(reader, writer)

    def send(self, *fields: object) -> None:
        self.writer.write(frame(fields))

    async def read(self) -> list[str]:
        return await asyncio.wait_for(read_frame(self.reader), 5)

    async def until(self, msg_id: int) -> list[str]:
        while True:
            fields = await self.read()
            if int(fields[0]) == msg_id:
                return fields

    def close(self) -> None:
        self.writer.close()


def _place(
    order_id: int, *, qty: str = "10", order_type: str = "LMT", lmt: str = "100", ref: str = "EXREF"
) -> list[object]:
    contract = [0, "AAPL", "STK", "", 0.0, "", "", "SMART", "", "USD", "", ""]
    head = [3, order_id, *contract, "", "", "BUY", qty, order_type, lmt, "", "GTC", "", "", "O", 0, ref, 1, 0]
    return [*head, 0, 0, 0, 0, 0, 0, "", "", "", "", "", "", ""]


def test_the_server_version_is_the_highest_both_speak() -> None:
    assert negotiate(Handshake(157, 178, "")) == 178
    assert negotiate(Handshake(100, 200, "")) == MAX_SERVER_VERSION
    assert negotiate(Handshake(157, 176, "")) == 176
    assert negotiate(Handshake(190, 201, "")) is None  # protobuf-only clients are not served
    assert negotiate(Handshake(100, 150, "")) is None


async def test_handshake_start_api_and_session(server: IBVenueServer) -> None:
    c = await Raw.open(server.port)
    version, conn_time = await c.read()
    assert version == "178" and conn_time.endswith("UTC")
    c.send(71, 2, 41, "")
    assert (await c.read())[:2] == ["9", "1"]  # nextValidId
    assert await c.read() == ["15", "1", "DU1234567"]  # managedAccounts
    # A second connection with the same client id is refused (326) and dropped.
    d = await Raw.open(server.port)
    await d.read()
    d.send(71, 2, 41, "")
    err = await d.read()
    assert err[0] == "4" and err[3] == "326"
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await d.read()
    c.close()
    d.close()


async def test_an_offer_without_a_common_version_is_closed(server: IBVenueServer) -> None:
    c = await Raw.open(server.port, b"v190..201")
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await c.read()
    c.close()


async def test_order_ids_grow_and_a_working_id_modifies(server: IBVenueServer) -> None:
    await server.venue.set_mid("AAPL", D("190.00"))
    c = await Raw.open(server.port)
    await c.read()
    c.send(71, 2, 42, "")
    next_id = int((await c.until(9))[2])
    c.send(*_place(next_id + 5, ref="EXA"))
    opened = await c.until(5)  # openOrder, then orderStatus Submitted
    assert opened[1] == str(next_id + 5) and "EXA" in opened
    status = await c.until(3)
    assert status[1:3] == [str(next_id + 5), "Submitted"]
    # Below the highest id used: 103 duplicate order id.
    c.send(*_place(next_id + 1, ref="EXB"))
    err = await c.until(4)
    assert err[2:4] == [str(next_id + 1), "103"]
    # The working id again: a modification (new price, new orderRef), not a second order.
    c.send(*_place(next_id + 5, lmt="101", ref="EXA.1"))
    modified = await c.until(5)
    assert "EXA.1" in modified and "101" in modified
    assert len([o for o in server.venue.orders.values() if o.client_id == 42]) == 1
    c.close()


async def test_a_reject_is_error_201_then_cancelled_and_a_cancel_is_202(server: IBVenueServer) -> None:
    c = await Raw.open(server.port)
    await c.read()
    c.send(71, 2, 43, "")
    next_id = int((await c.until(9))[2])
    assert (await c.until(4))[3] == "2104"  # the market data farm notice (a warning)
    c.send(*_place(next_id, qty="999999"))  # above the instrument's max quantity
    err = await c.until(4)
    assert err[3] == "201" and err[4].startswith("Order rejected")
    status = await c.until(3)
    assert status[2] == "Cancelled"  # only the error says it was a reject
    c.send(*_place(next_id + 1, lmt="100"))
    await c.until(3)
    c.send(4, 1, next_id + 1, "")
    err = await c.until(4)
    assert err[3] == "202"
    assert (await c.until(3))[2] == "Cancelled"
    c.send(4, 1, next_id + 1, "")
    assert (await c.until(4))[3] == "161"  # not cancelable any more
    c.send(4, 1, 999_999, "")
    assert (await c.until(4))[3] == "10147"  # unknown
    c.close()


async def test_messages_decode_with_ib_async_decoder(server: IBVenueServer) -> None:
    """Every answer the venue sends for an order's life is read by ib_async's decoder without an error."""
    from ib_async.decoder import Decoder

    calls: list[tuple[str, tuple[object, ...]]] = []

    class Recorder:
        defaultTimezone = UTC

        class ib:  # noqa: N801 - the attribute ib_async's decoder reads
            TimezoneTWS = None

        def __getattr__(self, name: str) -> object:
            return lambda *args: calls.append((name, args))

    decoder = Decoder(Recorder(), 178)  # type: ignore[arg-type]
    errors: list[str] = []
    decoder.logger.exception = lambda msg, *a, **k: errors.append(str(msg))  # type: ignore[method-assign]
    await server.venue.set_mid("AAPL", D("190.00"))
    c = await Raw.open(server.port)
    await c.read()
    c.send(71, 2, 44, "")
    next_id = int((await c.until(9))[2])
    c.send(*_place(next_id, order_type="MKT", lmt="", ref="EXMKT"))
    c.send(7, 3, 1, 0, "", "", "", "", "", "")  # reqExecutions
    c.send(99, 0)  # reqCompletedOrders
    c.send(16, 1)  # reqAllOpenOrders
    c.send(61, 1)  # reqPositions
    seen: set[str] = set()
    while not {"execDetailsEnd", "completedOrdersEnd", "openOrderEnd", "positionEnd"} <= seen:
        decoder.interpret(await c.read())
        seen = {name for name, _ in calls}
    assert not errors
    assert {"openOrder", "orderStatus", "execDetails", "commissionReport", "completedOrder", "position"} <= seen
    c.close()
