"""A TCP proxy the tests can cut and restore: what a restarting Postgres or Temporal server looks like to a client.

``stop()`` stops listening and closes every connection through it (clients see the server go away); ``start()``
listens again on the same port. The target is a TCP ``(host, port)`` or a Unix socket path (the embedded
Postgres listens only on one).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

import psycopg

from devstack.services import PortReservation

__all__ = ["TcpProxy", "postgres_target", "proxied_postgres_url"]


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``."""

    def __init__(self, target: tuple[str, int] | str, port: int | None = None) -> None:
        self.target = target
        if port is None:
            # Held for the proxy's life: while it is down, no other process (nor a client's outgoing connection,
            # which could otherwise connect to itself on this port) takes the port it listens on again.
            reservation = PortReservation()
            weakref.finalize(self, reservation.close)
            port = reservation.port
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0.05)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.target, str):
            return await asyncio.open_unix_connection(self.target)
        return await asyncio.open_connection(*self.target)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open()
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        tasks = [asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            self._writers.difference_update((writer, up_writer))


def postgres_target(url: str) -> tuple[str, int] | str:
    """Where the Postgres of ``url`` listens: a TCP address or the path of its Unix socket."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    host = str(params.get("host") or "localhost")
    port = int(params.get("port") or 5432)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return (host, port)


def proxied_postgres_url(url: str, proxy: TcpProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    params.update(host="127.0.0.1", port=str(proxy.port))
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
