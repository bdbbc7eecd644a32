"""One private-stream WebSocket connection, venue-neutral: a writer fed by account changes, a reader for the
client's frames, and the live faults (drop, reset, stall, hostile frames) every venue shares.

A venue subclass formats :class:`~emulator.state.streams.AccountChange` into its frames (:meth:`frames_for`),
writes the hostile frames in its own wire format (:meth:`hostile_frame`), answers the client's text frames
(:meth:`on_text`) and handles venue-only faults (:meth:`fire_venue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import string
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from emulator.state.account import EmulatedAccount
from emulator.state.common import now_ms
from emulator.state.streams import HOSTILE_FRAME_FAULTS, AccountChange

if TYPE_CHECKING:
    from emulator.streams.hub import StreamHub

log = logging.getLogger(__name__)

_CLOSE = object()  # writer queue item: send the pending close frame
_ID_CHARS = string.ascii_lowercase + string.digits


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


def random_id(length: int) -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


class StreamConnection:
    """A private WebSocket stream of one account; see the module docstring."""

    venue = ""

    def __init__(self, hub: StreamHub, account: EmulatedAccount, request: web.Request, path: str) -> None:
        self.hub = hub
        self.account = account
        self.request = request
        self.path = path
        self.ws = web.WebSocketResponse(autoping=False, max_msg_size=1024 * 1024)
        self.opened_ms = now_ms()
        self.stalled = False
        self.silent = False  # no more pushes (Binance after listenKeyExpired); pings still answered
        self.frames_sent = 0
        self.pings_answered = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._close_code: int | None = None
        self._close_reason = b""
        self._unsubscribe: Any = None
        self.closed = asyncio.Event()

    # lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> web.WebSocketResponse:
        await self.ws.prepare(self.request)
        self._transport = self.request.transport
        self._unsubscribe = self.account.subscribe(self._on_change)
        self.hub.links.add(self)
        writer = asyncio.create_task(self._writer(), name=f"emulator-ws-writer-{self.account.name}")
        try:
            self.account.attach_stream(self)  # fires armed live faults on this stream
            await self._reader()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._unsubscribe()
            self.account.detach_stream(self)
            self.hub.links.discard(self)
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
            if not self.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(code=self._close_code or WSCloseCode.OK), 1.0)
            self.closed.set()
        return self.ws

    async def _reader(self) -> None:
        while not self.ws.closed:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.TEXT:
                if not self.stalled:
                    await self.on_text(msg.data)
            elif msg.type == WSMsgType.PING:
                if not self.stalled:
                    self.pings_answered += 1
                    await self.ws.pong(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return  # a close frame is honoured even while stalled, so clients hang up quickly

    async def _writer(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _CLOSE:
                await self.ws.close(code=self._close_code or WSCloseCode.OK, message=self._close_reason)
                return
            if self.stalled:
                continue  # a stalled link loses what it should have sent
            await self.ws.send_str(item)
            self.frames_sent += 1

    def send(self, frame: str) -> None:
        """Queue one text frame (thread-safe; frames keep their order)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._queue.put_nowait(frame)
        else:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, frame)

    def send_json(self, payload: Any) -> None:
        self.send(dumps(payload))

    def close_now(self, code: int = WSCloseCode.GOING_AWAY, reason: str = "") -> None:
        """Send a close frame with ``code`` after the frames already queued (even while stalled)."""
        if self._close_code is not None:
            return
        self._close_code, self._close_reason = int(code), reason.encode()
        self.stalled = False  # let the close frame through
        self._clear_queue()
        self._queue.put_nowait(_CLOSE)

    def _clear_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    # account changes -----------------------------------------------------------------------------------

    def _on_change(self, change: AccountChange) -> None:
        if self.silent or self._close_code is not None:
            return
        for frame in self.frames_for(change):
            self.send_json(frame)

    # faults --------------------------------------------------------------------------------------------

    def fire(self, kind: str) -> None:
        if kind == "drop":
            self.close_now(WSCloseCode.GOING_AWAY)
        elif kind == "reset":
            transport = getattr(self, "_transport", None)
            if transport is not None:
                transport.abort()  # TCP gone without a close frame
        elif kind == "stall":
            self.stalled = True
            self._clear_queue()
        elif kind == "resume":
            self.stalled = False
        elif kind in HOSTILE_FRAME_FAULTS:
            self.send(self.hostile_frame(kind))
        else:
            self.fire_venue(kind)

    def info(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "path": self.path,
            "opened_ms": self.opened_ms,
            "stalled": self.stalled,
            "silent": self.silent,
            "frames_sent": self.frames_sent,
            "pings_answered": self.pings_answered,
            **self.venue_info(),
        }

    # venue hooks ---------------------------------------------------------------------------------------

    def frames_for(self, change: AccountChange) -> list[Any]:
        raise NotImplementedError

    async def on_text(self, text: str) -> None:
        """A text frame from the client (ignored unless the venue answers it)."""

    def hostile_frame(self, kind: str) -> str:
        """One frame of ``kind`` (see :data:`~emulator.state.streams.HOSTILE_FRAME_FAULTS`) in the venue's wire
        format; only the kinds listed in the venue's ``fault_kinds`` are asked for."""
        raise NotImplementedError

    def fire_venue(self, kind: str) -> None:
        """A fault only some venues know (e.g. Binance "expire")."""

    def venue_info(self) -> dict[str, Any]:
        return {}
