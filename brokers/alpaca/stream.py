"""The ``trade_updates`` WebSocket stream: authenticate, listen, hand every event over, reconnect for ever.

After every successful ``listen`` (the first connection included) ``on_connected`` runs: the adapter catches
up over REST on whatever happened while no stream was listening (Alpaca does not replay events). Frames may be
text or binary (the paper stream sends binary); both carry JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from typing import Any

import websockets

from core.tasks import stop_tasks

__all__ = ["TradeUpdatesStream"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class TradeUpdatesStream:
    """One connection to ``/stream`` at a time, reconnecting with backoff."""

    def __init__(
        self,
        url: str,
        *,
        key_id: str,
        secret_key: str,
        on_event: Handler,
        on_connected: Callable[[], Coroutine[Any, Any, None]],
        on_state: Callable[[bool, str], None] | None = None,
        name: str = "alpaca",
        max_backoff: float = 15.0,
    ) -> None:
        """Connect to ``url`` with the keys; events go to ``on_event`` in arrival order."""
        self.url = url
        self.name = name
        self._key_id = key_id
        self._secret_key = secret_key
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_state = on_state
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None
        #: Set while a connection listens to trade_updates.
        self.listening = asyncio.Event()
        #: Successful listens so far (the first one included).
        self.connections = 0

    def start(self) -> None:
        """Start connecting (in the background)."""
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-trade-updates")

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        if self._task is not None:
            task, self._task = self._task, None
            await stop_tasks([task], what=f"{self.name} trade_updates stream")
        self.listening.clear()

    async def drop(self) -> None:
        """Close the current connection (it reconnects; tests)."""
        if self._ws is not None:
            await self._ws.close()

    def _state(self, up: bool, detail: str) -> None:
        if up:
            self.listening.set()
        else:
            self.listening.clear()
        if self._on_state is not None:
            self._on_state(up, detail)

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._session()
                detail = "the stream closed"
            except asyncio.CancelledError:
                raise
            except Exception as e:
                detail = f"{type(e).__name__}: {e}"
            was_up = self.listening.is_set()
            self._state(False, detail)
            if was_up:
                log.warning("%s: trade_updates stream lost (%s); reconnecting", self.name, detail)
                delay = 0.2
            else:
                log.info("%s: trade_updates stream not connected (%s); retrying in %.1fs", self.name, detail, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _session(self) -> None:
        async with websockets.connect(self.url, open_timeout=10, ping_interval=10, ping_timeout=30) as ws:
            self._ws = ws
            try:
                await ws.send(
                    json.dumps(
                        {"action": "authenticate", "data": {"key_id": self._key_id, "secret_key": self._secret_key}}
                    )
                )
                reply = await self._expect(ws, "authorization")
                if reply.get("status") != "authorized":
                    raise PermissionError(f"the stream refused the keys ({reply})")
                await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
                await self._expect(ws, "listening")
                self.connections += 1
                self._state(True, "listening to trade_updates")
                log.info("%s: listening to trade_updates (connection %d)", self.name, self.connections)
                # Catch up while events already arrive; the adapter deduplicates whatever comes both ways.
                catch_up = asyncio.create_task(self._on_connected(), name=f"{self.name}-catch-up")
                try:
                    async for frame in ws:
                        message = self._decode(frame)
                        if message is None:
                            continue
                        if message.get("stream") == "trade_updates" and isinstance(message.get("data"), dict):
                            await self._on_event(message["data"])
                finally:
                    if not catch_up.done():
                        catch_up.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await catch_up
            finally:
                self._ws = None

    async def _expect(self, ws: Any, stream: str) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                message = self._decode(await ws.recv())
                if message is None:
                    continue
                if message.get("stream") == stream:
                    data = message.get("data")
                    return data if isinstance(data, dict) else {}
                if message.get("stream") == "error":
                    raise ConnectionError(f"the stream answered an error: {message.get('data')}")

    def _decode(self, frame: str | bytes) -> dict[str, Any] | None:
        try:
            message = json.loads(frame, parse_float=Decimal)
        except ValueError:
            log.warning("%s: a stream frame that is not JSON: %r", self.name, frame[:200])
            return None
        return message if isinstance(message, dict) else None
