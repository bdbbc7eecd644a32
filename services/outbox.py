"""The durable outbox: every alert to send is a row, written in the transaction that created the finding.

A deliverer drains it per destination in id order, so a chat sees its alerts in order; a failed delivery
blocks only its own destination and is retried with backoff. Telegram down, the process killed, the
machine rebooted: the rows are still there when delivery can resume.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

MAX_BACKOFF_S = 300.0


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


class Outbox:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def heads(self, channel: str) -> list[OutboxItem]:
        """The oldest undelivered item of each destination, if it is due; later ones wait their turn."""
        records = await self.pool.fetch(
            """SELECT * FROM (
                   SELECT DISTINCT ON (destination) * FROM reconbot.outbox
                   WHERE channel = $1 AND sent_at IS NULL AND dead_at IS NULL
                   ORDER BY destination, id) AS head
               WHERE next_attempt_at <= now() ORDER BY id""",
            channel,
        )
        return [_item(r) for r in records]

    async def next_due_in_s(self, channel: str) -> float | None:
        """Seconds until the next retry falls due; None when nothing waits."""
        value = await self.pool.fetchval(
            "SELECT greatest(0, extract(epoch FROM min(next_attempt_at) - now())) FROM reconbot.outbox "
            "WHERE channel = $1 AND sent_at IS NULL AND dead_at IS NULL",
            channel,
        )
        return None if value is None else float(value)

    async def mark_sent(self, item_id: int) -> None:
        await self.pool.execute("UPDATE reconbot.outbox SET sent_at = now() WHERE id = $1", item_id)

    async def mark_failed(self, item_id: int, error: str) -> float:
        """Count a failed attempt and schedule the next with exponential backoff; returns the delay chosen."""
        return float(
            await self.pool.fetchval(
                """UPDATE reconbot.outbox SET attempts = attempts + 1, last_error = $2,
                       next_attempt_at = now() + make_interval(secs => least($3, power(2, attempts + 1)))
                   WHERE id = $1 RETURNING least($3, power(2, attempts))""",
                item_id,
                error[:500],
                MAX_BACKOFF_S,
            )
        )

    async def mark_dead(self, item_id: int, error: str) -> None:
        """Give up on an item that can never be delivered (chat not found, bot blocked); it is kept, not lost."""
        await self.pool.execute(
            "UPDATE reconbot.outbox SET dead_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = $1",
            item_id,
            error[:500],
        )

    async def depth(self, channel: str | None = None) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM reconbot.outbox WHERE sent_at IS NULL AND dead_at IS NULL "
            "AND ($1::text IS NULL OR channel = $1)",
            channel,
        )
