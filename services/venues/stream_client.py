"""What reconbot needs from every ccxt.pro stream client besides the venue's protocol: no frame may end ccxt's
receive loop, every frame is timed (so silence can be noticed), and nothing ccxt scheduled outlives the client.

Relied on, in ccxt 4.5.90 (``ccxt/async_support/base/ws/client.py`` and ``exchange.py``):

- ``Client.receive_loop`` hands each aiohttp message to ``self.handle_message`` inside a done-callback and
  schedules the next receive only after it returns. Any exception there escapes as asyncio's "Exception in
  callback" and the receive loop is over for good: orjson failing on a cut-off frame, a venue handler failing on
  ``"pa":"1e400"`` (``int('inf')``), on a JSON array (Binance: ``None + '@arr'``) or on a ``null`` row (Bybit).
  Every watcher then waits until ccxt's ping-pong check misses two pongs: 2 × ``streaming['keepAlive']``, 360 s
  on Binance, 36 s on Bybit. ``Exchange.client(url)`` creates each ``Client``; reconbot wraps the new client's
  ``handle_message`` there, on the instance, so a frame that cannot be read is reported and skipped, and a
  failure on a control message (close, error) ends the connection as a network error.
- ``Exchange.delay`` schedules with ``loop.call_later`` and the handle is dropped: Binance's listenKey keep-alive
  (``listenKeyRefreshRate``, 20 minutes) held every closed client, markets and all, until it fired. Here every
  handle is kept and cancelled on ``close``.
- ``Client.connection`` is the aiohttp ``ClientWebSocketResponse``; ``ping()`` on it is aiohttp's public API.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType
from ccxt.base.errors import NetworkError

OnUnreadable = Callable[[str, Exception], None]
_FRAMES = (WSMsgType.TEXT, WSMsgType.BINARY)


class GuardedStream:
    """Mixin for a ccxt.pro exchange class (listed before it): see the module docstring.

    ``on_unreadable(text, error)`` is called for a text or binary frame ccxt could not parse or handle; the frame
    is then skipped. Without a handler the frame is skipped silently."""

    on_unreadable: OnUnreadable | None = None

    def client(self, url: str) -> Any:
        client = super().client(url)  # type: ignore[misc]
        if "last_frame_s" not in vars(client):
            client.last_frame_s = None  # time.monotonic() of the last message of any kind, pongs included
            client.handle_message = self._guarded(client, client.handle_message)
        return client

    def _guarded(self, client: Any, handle: Callable[[Any], None]) -> Callable[[Any], None]:
        def guarded(message: Any) -> None:
            client.last_frame_s = time.monotonic()
            try:
                handle(message)
            except Exception as exc:
                kind = getattr(message, "type", None)
                try:
                    if kind not in _FRAMES:
                        raise
                    if self.on_unreadable is not None:
                        data = message.data
                        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                        self.on_unreadable(text, exc)
                except Exception as failure:  # nothing may escape into ccxt's receive callback
                    client.on_error(NetworkError(f"a {getattr(kind, 'name', kind)} message failed: {failure}"))

        return guarded

    def sockets(self) -> list[Any]:
        """The ws clients whose socket is open now."""
        return [
            ws
            for ws in list((getattr(self, "clients", None) or {}).values())
            if getattr(ws, "connection", None) is not None and not ws.closed()
        ]

    def last_heard_s(self) -> float | None:
        """When the latest message arrived on any open socket (``time.monotonic()``), or None."""
        heard = [ws.last_frame_s for ws in self.sockets() if getattr(ws, "last_frame_s", None) is not None]
        return max(heard, default=None)

    async def probe(self) -> None:
        """Ping every open socket: a live venue answers at once, so a socket that says nothing is known early
        (Binance sends nothing of its own on a quiet account, and ccxt's first ping waits a keep-alive)."""
        for ws in self.sockets():
            with contextlib.suppress(Exception):
                await ws.connection.ping()

    # -- nothing scheduled outlives the client ------------------------------------------------------------------

    def delay(self, timeout: Any, method: Any, *args: Any) -> Any:
        handle = super().delay(timeout, method, *args)  # type: ignore[misc]
        now = self.asyncio_loop.time()  # type: ignore[attr-defined] - the loop ccxt's delay schedules on
        timers = [h for h in vars(self).get("_timers", []) if not h.cancelled() and h.when() > now]
        self._timers = [*timers, handle]
        return handle

    async def close(self, *args: Any, **kwargs: Any) -> Any:
        for handle in vars(self).pop("_timers", []):
            handle.cancel()
        return await super().close(*args, **kwargs)  # type: ignore[misc]
