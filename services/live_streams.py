"""Every account's live stream, and what its health means to the trader: a stream down for longer than
``scan.stream_grace_s`` raises one notice (the account is polled meanwhile) and one when it is back. An account
that cannot stream (streams off, a REST base URL without a WebSocket one) polls, said once at start-up and
never as "down"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from services.model import Sighting
from services.notices import Notice, NoticeKind
from services.settings import ScanSettings
from services.streams import AccountStream, StreamState
from services.triggers import AccountChecks
from services.venues import Gateway

log = logging.getLogger(__name__)

Notify = Callable[[Notice], Awaitable[None]]
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One account's stream as /healthz, /metrics and /status show it."""

    account: str
    state: StreamState
    since: datetime
    error: str | None = None
    events: int = 0
    connects: int = 0
    unreadable_frames: int = 0


class LiveStreams:
    def __init__(
        self,
        gateways: Mapping[str, Gateway],
        checks: AccountChecks,
        scan: ScanSettings,
        notify: Notify,
        say: Say = print,
        owns: Callable[[str], bool] = lambda _account: True,
    ):
        self.owns = owns  # a replica streams only the accounts of the shards it holds
        self.checks = checks
        self.scan = scan
        self.notify = notify
        self.streams: dict[str, AccountStream] = {}
        self.polling: dict[str, str] = {}  # account -> why it does not stream
        self._notified: set[str] = set()
        self._watch: asyncio.Task[None] | None = None
        self._started = datetime.now(UTC)
        for name, gateway in gateways.items():
            reason = "scan.streams is false" if not scan.streams else gateway.stream_unavailable()
            if reason is not None:
                self.polling[name] = reason
                continue
            self.streams[name] = AccountStream(
                gateway, on_event=self._on_event, on_connected=self._on_connected, on_state=self._on_state
            )
        if scan.streams:
            for name, reason in self.polling.items():
                say(f"{name}: no live stream ({reason}); polled every {scan.orphan_interval_s:g}s")

    def start(self) -> None:
        for name, stream in self.streams.items():
            if self.owns(name):
                stream.start()
        if self.streams:
            self._watch = asyncio.create_task(self._watch_health(), name="stream health")

    async def retarget(self) -> None:
        """After a claim round: stream the accounts now held, close the streams of accounts given away."""
        for name, stream in self.streams.items():
            if self.owns(name) and not stream.running:
                stream.start()
            elif not self.owns(name) and stream.running:
                await stream.stop()
                self._notified.discard(name)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await asyncio.gather(*(stream.stop() for stream in self.streams.values()))

    # -- events ------------------------------------------------------------------------------------------------

    def _on_event(self, account: str, sightings: frozenset[Sighting]) -> None:
        self.checks.request(account, self.scan.stream_settle_s, sightings)

    def _on_connected(self, account: str) -> None:
        self.checks.request(account)  # a gap can hide a change: read the whole account

    def _on_state(self, stream: AccountStream) -> None:
        log.debug("%s: stream %s%s", stream.account, stream.state, f" ({stream.error})" if stream.error else "")

    # -- health ------------------------------------------------------------------------------------------------

    def statuses(self) -> list[StreamStatus]:
        shown = [
            StreamStatus(s.account, s.state, s.since, s.error, s.events, s.connects, s.unreadable_frames)
            for s in self.streams.values()
        ]
        shown += [StreamStatus(name, StreamState.OFF, self._started, why) for name, why in self.polling.items()]
        return shown

    def down_since(self, stream: AccountStream) -> datetime | None:
        """When the stream stopped being up (its start when it never was)."""
        return None if stream.state is StreamState.UP else stream.since

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.scan.stream_grace_s / 4)))
            await self.review()

    async def review(self) -> None:
        """Raise a notice for a stream down past its grace, and one when a stream that was reported is back."""
        now = datetime.now(UTC)
        for name, stream in self.streams.items():
            if not stream.running:
                continue  # another replica streams it
            since = self.down_since(stream)
            if since is not None and name not in self._notified:
                if (now - since).total_seconds() >= self.scan.stream_grace_s:
                    self._notified.add(name)
                    await self._send(
                        Notice(
                            NoticeKind.STREAM_DOWN,
                            account=name,
                            since=since,
                            error=stream.error,
                            interval_s=self.scan.orphan_interval_s,
                        )
                    )
            elif since is None and name in self._notified:
                self._notified.discard(name)
                await self._send(Notice(NoticeKind.STREAM_UP, account=name))

    async def _send(self, notice: Notice) -> None:
        try:
            await self.notify(notice)
        except Exception:
            log.exception("%s: could not queue the stream notice", notice.account)
