"""Muted chats: an operator's ``/mute 1h`` quiets one chat for a while without hiding anything from it.

New findings still arrive in a muted chat: critical ones ring (or arrive silently, when
``telegram.mute_critical`` says so), everything the mute covers arrives silently, and a scoped mute
(``/mute 1h info``) covers only findings up to that level. Every finding that arrives meanwhile is noted, and when
the mute ends — /mute off, or its time is up — one catch-up listing them is queued in the outbox in the same
transaction that ends the mute, so whichever replica delivers posts it, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from services.outbox import Channel, Destination, OutboxKind, enqueue_many
from services.severity import Severity

log = logging.getLogger(__name__)

DEFAULT_MUTE = timedelta(hours=1)
LONGEST_MUTE = timedelta(days=7)
MUTE_SCOPES = (Severity.INFO, Severity.WARNING)  # what a mute may cover; critical follows telegram.mute_critical
DEFAULT_SCOPE = Severity.WARNING  # everything below critical
END_POLL_S = 15.0

_DURATION = re.compile(r"^(\d{1,4})([mhd])$")
_LOOKS_LIKE_DURATION = re.compile(r"^\d")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, slots=True)
class Mute:
    chat_id: int
    since: datetime
    until: datetime
    scope: Severity  # the highest level it quiets
    by: str

    def covers(self, severity: Severity) -> bool:
        """Whether a finding of this level is quieted (critical never is by the scope: see mute_critical)."""
        return severity is not Severity.CRITICAL and severity.rank >= self.scope.rank


@dataclass(frozen=True, slots=True)
class EndedMute:
    mute: Mute
    arrived: int  # findings that arrived in the chat while it was muted: the catch-up lists them


class MuteProblem(StrEnum):
    NOT_A_DURATION = "not a duration"
    TOO_LONG = "too long"
    NOT_A_LEVEL = "not a level"
    TOO_MANY_WORDS = "too many words"


class MuteArgumentError(ValueError):
    """``/mute`` arguments that mean nothing: the problem and the word at fault."""

    def __init__(self, problem: MuteProblem, word: str = ""):
        super().__init__(f"{problem}: {word}")
        self.problem = problem
        self.word = word


@dataclass(frozen=True, slots=True)
class MuteRequest:
    span: timedelta = DEFAULT_MUTE
    scope: Severity = DEFAULT_SCOPE


def parse_duration(text: str) -> timedelta | None:
    """``30m``, ``2h``, ``1d``; None for anything else."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        return None
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_request(arguments: str) -> MuteRequest | None:
    """``[duration] [info|warning]`` in either order: ``30m``, ``1h info``, ``info``; None for ``off``; raises
    MuteArgumentError for anything else."""
    words = arguments.lower().split()
    if words == ["off"]:
        return None
    if len(words) > 2 or "off" in words:
        raise MuteArgumentError(MuteProblem.TOO_MANY_WORDS)
    span: timedelta | None = None
    scope: Severity | None = None
    for word in words:
        if word in MUTE_SCOPES:
            if scope is not None:
                raise MuteArgumentError(MuteProblem.TOO_MANY_WORDS)
            scope = Severity(word)
        elif _LOOKS_LIKE_DURATION.match(word):
            parsed = parse_duration(word)
            if parsed is None or parsed <= timedelta(0):
                raise MuteArgumentError(MuteProblem.NOT_A_DURATION, word)
            if parsed > LONGEST_MUTE:
                raise MuteArgumentError(MuteProblem.TOO_LONG, word)
            if span is not None:
                raise MuteArgumentError(MuteProblem.TOO_MANY_WORDS)
            span = parsed
        else:
            raise MuteArgumentError(MuteProblem.NOT_A_LEVEL, word)
    return MuteRequest(span or DEFAULT_MUTE, scope or DEFAULT_SCOPE)


def _mute(record: asyncpg.Record) -> Mute:
    return Mute(record["chat_id"], record["started_at"], record["until"], Severity(record["scope"]), record["muted_by"])


class ChatMutes:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.changed = asyncio.Event()  # a mute was set here: the timer that ends mutes looks again

    async def mute(self, chat_id: int, span: timedelta, scope: Severity, by: str) -> Mute:
        """Mute (or re-mute) a chat from now for ``span``; a chat already muted keeps its start, so one catch-up
        covers the whole stretch."""
        record = await self.pool.fetchrow(
            "INSERT INTO reconbot.chat_mutes (chat_id, until, muted_by, scope, started_at) "
            "VALUES ($1, now() + $2::interval, $3, $4, now()) "
            "ON CONFLICT (chat_id) DO UPDATE SET until = EXCLUDED.until, muted_by = EXCLUDED.muted_by, "
            "scope = EXCLUDED.scope RETURNING *",
            chat_id,
            span,
            by,
            str(scope),
        )
        self.changed.set()
        return _mute(record)

    async def current(self, chat_id: int) -> Mute | None:
        """The chat's mute, if it is muted now."""
        record = await self.pool.fetchrow(
            "SELECT * FROM reconbot.chat_mutes WHERE chat_id = $1 AND until > now()", chat_id
        )
        return _mute(record) if record else None

    async def note_arrival(self, chat_id: int, destination: str, finding_ids: Iterable[int]) -> Mute | None:
        """Findings about to be shown in a chat: noted for its catch-up when the chat is muted now; returns the
        mute (None: not muted). The mute's row is locked while noting, so a mute ending at the same moment
        either lists them or was over before they arrived."""
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                "SELECT * FROM reconbot.chat_mutes WHERE chat_id = $1 AND until > now() FOR SHARE", chat_id
            )
            if record is None:
                return None
            await conn.executemany(
                "INSERT INTO reconbot.mute_arrivals (chat_id, destination, finding_id) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                [(chat_id, destination, finding_id) for finding_id in finding_ids],
            )
            return _mute(record)

    async def unmute(self, chat_id: int) -> EndedMute | None:
        """End a chat's mute now and queue its catch-up; None when the chat was not muted."""
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow("DELETE FROM reconbot.chat_mutes WHERE chat_id = $1 RETURNING *", chat_id)
            if record is None:
                return None
            return await self._catch_up(conn, _mute(record))

    async def end_expired(self) -> list[EndedMute]:
        """End every mute whose time is up and queue their catch-ups (safe on several replicas at once: each
        mute is deleted, and so caught up, by one of them)."""
        async with self.pool.acquire() as conn, conn.transaction():
            records = await conn.fetch("DELETE FROM reconbot.chat_mutes WHERE until <= now() RETURNING *")
            return [await self._catch_up(conn, _mute(record)) for record in records]

    async def next_end_in_s(self) -> float | None:
        """Seconds until the next mute ends; None when no chat is muted."""
        value = await self.pool.fetchval(
            "SELECT greatest(0, extract(epoch FROM min(until) - now())) FROM reconbot.chat_mutes"
        )
        return None if value is None else float(value)

    @staticmethod
    async def _catch_up(conn: asyncpg.Connection, mute: Mute) -> EndedMute:
        """Queue one catch-up per place the chat's alerts arrived (a forum topic, or the chat itself)."""
        rows = await conn.fetch(
            "DELETE FROM reconbot.mute_arrivals WHERE chat_id = $1 RETURNING destination, finding_id, arrived_at",
            mute.chat_id,
        )
        by_destination: dict[str, list[int]] = {}
        for row in sorted(rows, key=lambda r: r["arrived_at"]):
            by_destination.setdefault(row["destination"], []).append(row["finding_id"])
        for destination, finding_ids in by_destination.items():
            body = {"finding_ids": finding_ids, "since": mute.since.isoformat()}
            await enqueue_many(conn, [Destination(Channel.TELEGRAM, destination)], OutboxKind.CATCH_UP, body=body)
        return EndedMute(mute, len({row["finding_id"] for row in rows}))


class MuteEnds:
    """Ends mutes when their time is up, without waiting for a command: it sleeps until the next mute ends (at
    most ``poll_s``, so a mute set through another replica is seen too), ends the due ones and wakes delivery."""

    def __init__(self, mutes: ChatMutes, wake: Callable[[], None], poll_s: float = END_POLL_S):
        self.mutes = mutes
        self.wake = wake
        self.poll_s = poll_s

    async def run(self) -> None:
        while True:
            try:
                if await self.mutes.end_expired():
                    self.wake()
                due = await self.mutes.next_end_in_s()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("ending mutes failed (%s); trying again", type(exc).__name__)
                due = None
            wait = self.poll_s if due is None else min(self.poll_s, due + 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.mutes.changed.wait(), wait)
            self.mutes.changed.clear()
