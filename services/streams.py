"""One account's private stream through ccxt.pro, as a trigger: every position or order event says "look at this
account now"; it never becomes a finding by itself (Binance pushes only the changed symbols and no mark price,
ccxt's Bybit snapshot covers one category and one page). reconbot's own complete REST read decides.

The stream's health is part of the account's state: connecting, up, down (with the reason), or off. A stream
cannot die quietly:

- a failure of any kind — refused auth, a dropped socket, a missed pong, an expired listenKey, a watcher that
  raised — closes the whole ccxt.pro client (a client whose auth failed stays stuck) and a new one connects after
  a backoff with jitter; the stream stays down, with the reason, until a connection is up again;
- a socket that says nothing — no event, no pong — for ``Gateway.stream_silence_s`` is down, whatever TCP says;
  a new socket is up only once the venue answered something on it;
- a frame ccxt cannot read (cut-off JSON, a number beyond a float, a JSON array, a null row) is logged once,
  bounded and redacted, and skipped (``services.venues.stream_client`` keeps it from ending ccxt's receive loop);
  the account is checked, since the frame may have been news.

Every (re)connect asks for a full check of the account: a gap can hide a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
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

EXCERPT_CHARS = 160  # of an unreadable frame, in the log
UNREADABLE_LOG_EVERY_S = 60.0  # one log line per account and minute; the others are counted in the next line


class StreamSilent(ConnectionError):
    """The socket is open but the venue said nothing, not even a pong."""


def excerpt(text: str, secrets: tuple[str, ...], limit: int = EXCERPT_CHARS) -> str:
    """A frame as one bounded log line: whitespace folded, secrets masked, cut at ``limit`` with its length."""
    folded = redact(" ".join(text.split()), secrets)
    return folded if len(folded) <= limit else f"{folded[:limit]}… ({len(text)} chars)"


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
    # dead key at once, a mute peer accepts it and says nothing. Up means open, answered (reconbot pings at once),
    # with no watcher failing for this long.
    settle_s = 1.0
    # aiohttp gives a dead peer 10 s to answer the close frame; this bounds whatever else closing might wait for.
    close_timeout_s = 15.0

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
        self.unreadable_frames = 0
        self._unreadable_logged_s: float | None = None
        self._unreadable_unlogged = 0
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
            if self.state is not StreamState.DOWN:  # a reconnect stays down, with its reason, until it is up
                self._set(StreamState.CONNECTING)
            client = self.gateway.create_stream_client()
            client.on_unreadable = lambda text, error, client=client: self._unreadable(client, text, error)
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
                    async with asyncio.timeout(self.close_timeout_s):  # a dead peer never answers the close
                        await self.gateway.close_stream_client(client)
            await asyncio.sleep(self.backoff.next_s())

    def _reason(self, exc: Exception, client: Any) -> str:
        """What went wrong, in one line, without a key, a secret or a listenKey."""
        secrets = (*self.gateway.secrets, *self.gateway.stream_secrets(client))
        if isinstance(exc, StreamSilent):
            text = str(exc)
        elif isinstance(exc, ccxt_errors.RequestTimeout):
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
            watchers.append(asyncio.create_task(self._listen(client), name=f"stream {self.account} silence"))
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
        """Wait until the socket is open, the venue answered on it, and it stays so for ``settle_s`` (a watcher
        that fails raises its error)."""
        opened: float | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s + self.settle_s):
                while True:
                    for task in watchers:
                        if task.done():
                            task.result()
                            raise ConnectionError("the stream ended before it connected")
                    if opened is None and client.sockets():
                        opened = time.monotonic()
                        await client.probe()
                    heard = client.last_heard_s()
                    answered = opened is not None and heard is not None and heard >= opened
                    if answered and time.monotonic() - opened >= self.settle_s:
                        return
                    await asyncio.sleep(0.02)
        except TimeoutError:
            if opened is None:
                raise
            limit = self.connect_timeout_s
            raise StreamSilent(f"silent: the socket opened but nothing came back within {limit:g}s") from None

    async def _listen(self, client: Any) -> None:
        """Raise ``StreamSilent`` when the socket says nothing — no event, no pong — for the venue's silence limit:
        a receive loop that died, a peer that stopped answering, a path that drops packets."""
        limit = self.gateway.stream_silence_s
        since = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            if not client.sockets():
                raise ConnectionError("the socket closed")
            quiet = time.monotonic() - max(client.last_heard_s() or since, since)
            if quiet > limit:
                every = self.gateway.stream_ping_s
                raise StreamSilent(f"silent for {quiet:.1f}s: no event and no answer to pings sent every {every:g}s")

    def _unreadable(self, client: Any, text: str, error: Exception) -> None:
        """A frame ccxt could not read was skipped: log it (one line a minute, bounded, redacted) and check the
        account, since the frame may have been news."""
        self.unreadable_frames += 1
        now = time.monotonic()
        if self._unreadable_logged_s is not None and now - self._unreadable_logged_s < UNREADABLE_LOG_EVERY_S:
            self._unreadable_unlogged += 1
        else:
            secrets = (*self.gateway.secrets, *self.gateway.stream_secrets(client))
            earlier = f" ({self._unreadable_unlogged} more since the last line)" if self._unreadable_unlogged else ""
            reason = excerpt(f"{type(error).__name__}: {error}", secrets, 80)
            log.warning(
                "%s: live stream: skipped a frame ccxt could not read (%s)%s: %s",
                self.account,
                reason,
                earlier,
                excerpt(text, secrets),
            )
            self._unreadable_logged_s, self._unreadable_unlogged = now, 0
        self.on_event(self.account, frozenset())

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
