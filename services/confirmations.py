"""Two-tap fixes: a confirmation is a single-use, expiring permission to apply one fix, held in PostgreSQL so
a double tap, a second device or a restart cannot use it twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services import audit

# The fixes a confirmation can stand for.
CLOSE_GHOST = "close_ghost"
ADOPT_ORPHAN = "adopt_orphan"
CLOSE_ORPHAN = "close_orphan"
SET_DB_QUANTITY = "set_db_quantity"
ACTIONS = (CLOSE_GHOST, ADOPT_ORPHAN, CLOSE_ORPHAN, SET_DB_QUANTITY)


@dataclass(frozen=True, slots=True)
class Confirmation:
    id: int
    action: str
    target: str
    finding_id: int | None
    question: str
    user_id: int
    chat_id: int
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """The result of pressing Confirm or Cancel: the confirmation if it may be used, else why not.

    ``expired`` is set when this press found the confirmation expired: it can never be used by anyone now,
    so its message may say so for good. Other refusals (someone else's confirmation, a second tap) leave
    the message as it is."""

    confirmation: Confirmation | None
    refusal: str | None = None
    expired: bool = False


def _confirmation(record: asyncpg.Record) -> Confirmation:
    return Confirmation(**dict(record))


class ConfirmationStore:
    def __init__(self, pool: asyncpg.Pool, ttl: timedelta):
        self.pool = pool
        self.ttl = ttl

    async def create(
        self, *, action: str, target: str, question: str, user_id: int, chat_id: int, finding_id: int | None = None
    ) -> Confirmation:
        if action not in ACTIONS:
            raise ValueError(f"unknown fix action {action!r}")
        record = await self.pool.fetchrow(
            "INSERT INTO reconbot.confirmations (action, target, finding_id, question, user_id, chat_id, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING *",
            action,
            target,
            finding_id,
            question,
            user_id,
            chat_id,
            self.ttl.total_seconds(),
        )
        return _confirmation(record)

    async def claim(self, confirmation_id: int, user_id: int, outcome: str, actor: str) -> Claim:
        """Use a confirmation once (outcome 'confirmed' or 'cancelled'); expiry is audited."""
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                "UPDATE reconbot.confirmations SET used_at = now(), outcome = $3 "
                "WHERE id = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > now() RETURNING *",
                confirmation_id,
                user_id,
                outcome,
            )
            if record is not None:
                return Claim(_confirmation(record))
            current = await conn.fetchrow(
                "SELECT * FROM reconbot.confirmations WHERE id = $1 FOR UPDATE", confirmation_id
            )
            if current is None:
                return Claim(None, "This confirmation does not exist.")
            existing = _confirmation(current)
            if existing.user_id != user_id:
                return Claim(None, "Only the person who asked for this change can confirm it.")
            if existing.used_at is not None:
                return Claim(None, f"This confirmation was already used ({existing.outcome}); nothing changed.")
            await conn.execute(
                "UPDATE reconbot.confirmations SET used_at = now(), outcome = 'expired' WHERE id = $1",
                confirmation_id,
            )
            await audit.record(
                conn,
                actor=actor,
                action=existing.action,
                target=existing.target,
                outcome="expired",
                reason=f"confirmation #{existing.id} expired at {existing.expires_at.isoformat()}",
            )
            return Claim(
                None, "This confirmation expired; nothing changed. Ask again to get a fresh one.", expired=True
            )
