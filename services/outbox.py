"""The durable outbox: every alert to send is a row, written in the transaction that created the finding.

A deliverer drains it per destination in id order, so a chat sees its alerts in order; a failed delivery
blocks only its own destination and is retried with backoff. Telegram down, the process killed, the
machine rebooted: the rows are still there when delivery can resume.

Queuing a row notifies ``reconbot_outbox`` (at commit), so the deliverer wakes at once on whichever replica
holds the channel. A deliverer claims the rows it sends in one statement fenced by its lease generation (see
``services.leases``): a replica that lost the lease claims nothing, and a claimed row is not due again for
CLAIM_S, so a row in flight when its deliverer lost the lease is not sent a second time by the next one while
the first may still finish it (and record it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from services.leases import SESSION_TIMEOUT_S, Connect, Fence, LeaseLost

MAX_BACKOFF_S = 300.0
RECORD_ATTEMPTS = 3
# The connection failed, not the statement (a pooled connection whose session the server ended, say).
_BROKEN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError)
WAKEUPS = "reconbot_outbox"  # the NOTIFY channel; the payload is the outbox channel that has new rows
CLAIM_S = 30.0  # a claimed row is nobody else's for this long; its deliverer gives a send less than that


class Channel(StrEnum):
    TELEGRAM = "telegram"
    EMAIL = "email"


class OutboxKind(StrEnum):
    ALERT = "alert"  # a new finding
    UPDATE = "update"  # a finding changed state: its alerts are edited
    REMINDER = "reminder"  # findings still open (body: finding_ids; older rows name one finding_id)
    NOTICE = "notice"  # about an account or the process, not one finding
    DIGEST = "digest"  # many new findings from one check, in one message (body: digest_id, finding_ids)
    # a confirmation whose process stopped mid-fix: its question edited with what a re-read found, without its
    # buttons (body: confirmation_id, message_id, question, found, reason)
    CONFIRMATION = "confirmation"
    CATCH_UP = "catch_up"  # a mute ended: the findings that arrived meanwhile (body: finding_ids, since)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where alerts go: a channel and an address on it (chat id, e-mail address)."""

    channel: Channel
    address: str


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    channel: str
    destination: str
    kind: OutboxKind
    finding_id: int | None
    body: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    created_at: datetime | None = None


def _item(record: asyncpg.Record) -> OutboxItem:
    body = record["body"]
    return OutboxItem(
        id=record["id"],
        channel=record["channel"],
        destination=record["destination"],
        kind=OutboxKind(record["kind"]),
        finding_id=record["finding_id"],
        body=json.loads(body) if isinstance(body, str) else (body or {}),
        attempts=record["attempts"],
        created_at=record["created_at"],
    )


async def enqueue_many(
    conn: asyncpg.Connection,
    destinations: Sequence[Destination],
    kind: OutboxKind,
    *,
    finding_id: int | None = None,
    body: dict[str, Any] | None = None,
) -> None:
    """Queue one message per destination on the caller's connection (and so in its transaction)."""
    if not destinations:
        return
    await conn.executemany(
        "INSERT INTO reconbot.outbox (channel, destination, kind, finding_id, body) VALUES ($1, $2, $3, $4, $5)",
        [(str(d.channel), d.address, str(kind), finding_id, json.dumps(body or {})) for d in destinations],
    )
    await conn.execute(
        "SELECT pg_notify($1, channel) FROM unnest($2::text[]) AS channel",
        WAKEUPS,
        sorted({str(d.channel) for d in destinations}),
    )


# "head": the oldest undelivered row of each destination (later ones wait their turn).
_CLAIM = """WITH fence AS (
                 SELECT coalesce((SELECT generation = $3 FROM reconbot.leases WHERE role = $2), false) AS held),
             head AS (
                 SELECT DISTINCT ON (destination) id, next_attempt_at FROM reconbot.outbox
                 WHERE channel = $1 AND sent_at IS NULL AND dead_at IS NULL ORDER BY destination, id),
             due AS (SELECT id FROM head WHERE next_attempt_at <= now()),
             claimed AS (
                 UPDATE reconbot.outbox AS o
                 SET claim_generation = $3, next_attempt_at = now() + make_interval(secs => $4)
                 FROM due, fence
                 WHERE o.id = due.id AND fence.held
                   AND o.sent_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= now()
                 RETURNING o.*)
             SELECT fence.held, claimed.* FROM fence LEFT JOIN claimed ON true ORDER BY claimed.id"""


class Outbox:
    """The rows; ``connect`` opens a connection of its own, for a deliverer's lease (its lock and its LISTEN)."""

    def __init__(self, pool: asyncpg.Pool, connect: Connect | None = None):
        self.pool = pool
        self.connect = connect

    async def claim_due(self, conn: asyncpg.Connection, channel: str, fence: Fence) -> list[OutboxItem]:
        """Claim each destination's oldest row that is due, in one statement fenced by the lease generation;
        run on the lease's own session, so it fails too once that session is gone.

        Raises LeaseLost when the generation is no longer the role's: another replica holds the channel."""
        records = await conn.fetch(_CLAIM, channel, fence.role, fence.generation, CLAIM_S, timeout=SESSION_TIMEOUT_S)
        if not records[0]["held"]:
            raise LeaseLost(fence.role)
        return [_item(r) for r in records if r["id"] is not None]

    async def next_due_in_s(self, channel: str) -> float | None:
        """Seconds until a destination's next row falls due (0: now); None when nothing waits.

        Only the heads count: a row behind one that waits for its retry is not due before it."""
        value = await self.pool.fetchval(
            """SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM (
                   SELECT DISTINCT ON (destination) next_attempt_at FROM reconbot.outbox
                   WHERE channel = $1 AND sent_at IS NULL AND dead_at IS NULL ORDER BY destination, id) AS head""",
            channel,
        )
        return None if value is None else max(0.0, float(value))

    async def mark_sent(self, item_id: int, generation: int) -> bool:
        """Record a send; only the generation that claimed the row may (False: another one took it over)."""
        return (
            await self._record(
                "UPDATE reconbot.outbox SET sent_at = coalesce(sent_at, now()) "
                "WHERE id = $1 AND claim_generation = $2 RETURNING id",
                item_id,
                generation,
            )
            is not None
        )

    async def mark_failed(self, item_id: int, error: str, generation: int) -> float | None:
        """Count a failed attempt and schedule the next with exponential backoff; returns the delay chosen
        (None: the row is no longer this generation's claim)."""
        delay = await self._record(
            """UPDATE reconbot.outbox SET attempts = attempts + 1, last_error = $2,
                   next_attempt_at = now() + make_interval(secs => least($3, power(2, attempts + 1)))
               WHERE id = $1 AND claim_generation = $4 RETURNING least($3, power(2, attempts))""",
            item_id,
            error[:500],
            MAX_BACKOFF_S,
            generation,
        )
        return None if delay is None else float(delay)

    async def mark_dead(self, item_id: int, error: str, generation: int) -> None:
        """Give up on an item that can never be delivered (chat not found, bot blocked); it is kept, not lost."""
        await self._record(
            "UPDATE reconbot.outbox SET dead_at = now(), attempts = attempts + 1, last_error = $2 "
            "WHERE id = $1 AND claim_generation = $3 RETURNING id",
            item_id,
            error[:500],
            generation,
        )

    async def _record(self, query: str, *args: Any) -> Any:
        """Record what a send did. The pooled connection may have been cut meanwhile (the server restarted, an
        administrator ended the session): the pool opens a fresh one and the write is made again, so a send
        that went out is not sent a second time for want of its record."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return await self.pool.fetchval(query, *args)
            except _BROKEN:
                if attempt == RECORD_ATTEMPTS:
                    raise
                await asyncio.sleep(0.1 * attempt)
        return None

    async def depth(self, channel: str | None = None) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM reconbot.outbox WHERE sent_at IS NULL AND dead_at IS NULL "
            "AND ($1::text IS NULL OR channel = $1)",
            channel,
        )
