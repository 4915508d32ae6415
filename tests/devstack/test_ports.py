"""Ports for servers started later: nobody else is handed them meanwhile, and the server can still bind them."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from devstack.services import PortReservation, free_port

pytestmark = pytest.mark.asyncio


def _bind_refused(port: int) -> bool:
    # What the kernel does with the port: a bind without SO_REUSEADDR fails while anything holds it. bind(0) skips a
    # port held like this, so another process is not handed it.
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            assert e.errno == errno.EADDRINUSE
            return True
        return False


async def _serves(port: int) -> bool:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", port)  # SO_REUSEADDR, as servers do
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        return True
    finally:
        server.close()
        await server.wait_closed()


async def test_a_free_port_is_kept_from_others_and_a_server_binds_it() -> None:
    port = free_port()
    assert _bind_refused(port)  # a port merely found free and released was anyone's
    assert await _serves(port)


async def test_a_reserved_port_stays_held_while_its_server_stops_and_starts_again() -> None:
    with PortReservation() as reserved:
        port = reserved.port
        assert _bind_refused(port)
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))  # down: refused, as a stopped server's port is
        assert await _serves(port)
        assert _bind_refused(port)  # the server stopped: still held
        assert await _serves(port)  # and it starts again on it
