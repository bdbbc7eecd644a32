"""One account's private stream through ccxt.pro, as a trigger: every position or order event says "look at this
account now"; it never becomes a finding by itself (Binance pushes only the changed symbols and no mark price,
ccxt's Bybit snapshot covers one category and one page). reconbot's own complete REST read decides.

The stream's health is part of the account's state: connecting, up, down (with the reason), or off. A failure
of any kind — refused auth, a dropped socket, a missed pong, an expired listenKey, a malformed frame — closes the
whole ccxt.pro client (a client whose auth failed stays stuck) and a new one connects after a backoff with
jitter. Every (re)connect asks for a full check of the account: a gap can hide a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ccxt.base import errors as ccxt_errors

from services.model import Side, Sighting
from services.redaction import redact
from services.venues import Gateway
from services.venues.errors import from_ccxt

log = logging.getLogger(__name__)


class StreamState(StrEnum):
    OFF = "off"  # not streaming: polling only (the reason says why)
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"  # failed; reconnecting after a backoff


@dataclass
class Backoff:
    """Exponential backoff with full jitter, reset by a connection that came up."""

    first_s: float = 1.0
    most_s: float = 60.0
    factor: float = 2.0
    attempts: int = 0

    def next_s(self) -> float:
        ceiling = min(self.most_s, self.first_s * self.factor**self.attempts)
        self.attempts += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0


OnEvent = Callable[[str, frozenset[Sighting]], None]
OnConnected = Callable[[str], Awaitable[None] | None]
OnState = Callable[["AccountStream"], None]


class AccountStream:
    """Watches one account's positions and orders; calls ``on_event(account, sightings)`` for every update,
    ``on_connected(account)`` after every (re)connect, ``on_state(stream)`` on every change of state."""

    connect_timeout_s = 15.0
    # An open socket is not yet a working stream: Bybit answers a refused auth on it, Binance may close it on a
    # dead key at once. Up means open, with no watcher failing for this long.
    settle_s = 1.0

    def __init__(
        self,
        gateway: Gateway,
        *,
        on_event: OnEvent,
        on_connected: OnConnected,
        on_state: OnState,
        backoff: Backoff | None = None,
    ):
        self.gateway = gateway
        self.on_event = on_event
        self.on_connected = on_connected
        self.on_state = on_state
        self.backoff = backoff or Backoff()
        self.state = StreamState.OFF
        self.since = datetime.now(UTC)
        self.error: str | None = None
        self.events = 0
        self.connects = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def account(self) -> str:
        return self.gateway.name

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._set(StreamState.CONNECTING)
            self._task = asyncio.create_task(self._run(), name=f"stream {self.account}")

    async def stop(self) -> None:
        """Close the stream for good (on shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._set(StreamState.OFF, "stopped")

    def _set(self, state: StreamState, error: str | None = None) -> None:
        """``since`` moves only when the stream comes up or stops being up: reconnect attempts do not reset
        how long it has been down."""
        if (state is StreamState.UP) != (self.state is StreamState.UP):
            self.since = datetime.now(UTC)
        self.state, self.error = state, error
        self.on_state(self)

    async def _run(self) -> None:
        while True:
            self._set(StreamState.CONNECTING)
            client = self.gateway.create_stream_client()
            try:
                await self._session(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = self._reason(exc, client)
                log.info("%s: live stream down: %s", self.account, reason)
                self._set(StreamState.DOWN, reason)
            finally:
                with contextlib.suppress(Exception):
                    await self.gateway.close_stream_client(client)
            await asyncio.sleep(self.backoff.next_s())

    def _reason(self, exc: Exception, client: Any) -> str:
        """What went wrong, in one line, without a key, a secret or a listenKey."""
        secrets = (*self.gateway.secrets, *self.gateway.stream_secrets(client))
        if isinstance(exc, ccxt_errors.RequestTimeout):
            text = f"no answer to pings ({' '.join(str(exc).split())[:120]})"
        elif isinstance(exc, TimeoutError):
            text = f"no connection within {self.connect_timeout_s:g}s"
        elif isinstance(exc, ccxt_errors.BaseError):
            return from_ccxt(exc, self.gateway.account.timeout_s, secrets).reason
        else:
            text = " ".join(str(exc).split())[:160] or type(exc).__name__
        return redact(text, secrets)

    async def _session(self, client: Any) -> None:
        """Watch until something fails; raises what failed."""
        async with asyncio.timeout(self.connect_timeout_s):
            await self.gateway.prepare_stream(client)
        watchers = [
            asyncio.create_task(self._watch(client, positions=True), name=f"stream {self.account} positions"),
            asyncio.create_task(self._watch(client, positions=False), name=f"stream {self.account} orders"),
            asyncio.create_task(self.gateway.keep_stream_alive(client), name=f"stream {self.account} keep-alive"),
        ]
        try:
            await self._connected(client, watchers)
            self.connects += 1
            self.backoff.reset()
            self._set(StreamState.UP)
            outcome = self.on_connected(self.account)
            if asyncio.iscoroutine(outcome):
                await outcome
            done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise ConnectionError("the stream ended")
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _connected(self, client: Any, watchers: list[asyncio.Task[Any]]) -> None:
        """Wait until the socket is open and stays so for ``settle_s`` (a watcher that fails raises its error)."""
        loop = asyncio.get_running_loop()
        opened: float | None = None
        async with asyncio.timeout(self.connect_timeout_s + self.settle_s):
            while True:
                for task in watchers:
                    if task.done():
                        task.result()
                        raise ConnectionError("the stream ended before it connected")
                if opened is None and _socket_open(client):
                    opened = loop.time()
                if opened is not None and loop.time() - opened >= self.settle_s:
                    return
                await asyncio.sleep(0.02)

    async def _watch(self, client: Any, *, positions: bool) -> None:
        watch = client.watch_positions if positions else client.watch_orders
        while True:
            update = await watch()
            self.events += 1
            self.on_event(self.account, self._sightings(client, update, positions))

    def _sightings(self, client: Any, update: Any, positions: bool) -> frozenset[Sighting]:
        """Which (market, side) the update names: a position's own side, either side for an order or a flat
        one-way row; ``gone`` when it is a position whose size is 0 (ccxt's ``contracts``: Binance ``pa``, Bybit
        ``size``; ccxt.pro hands over the event's own positions, ``newUpdates``), the one update that itself says
        the position closed. An entry reconbot cannot place names nothing (the check reads the whole account
        anyway)."""
        found = set()
        for item in update if isinstance(update, list) else [update]:
            if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
                continue
            market = (client.markets or {}).get(item["symbol"], {}).get("id")
            if not market:
                continue
            side = item.get("side") if positions else None
            gone = positions and item.get("contracts") == 0
            found.add(Sighting(self.account, market, Side(side) if side in ("long", "short") else None, gone=gone))
        return frozenset(found)


def _socket_open(client: Any) -> bool:
    for ws in list(getattr(client, "clients", {}).values()):
        connected = getattr(ws, "connected", None)
        if connected is not None and connected.done() and not connected.cancelled() and not connected.exception():
            return True
    return False
