"""Two-tap fixes: a confirmation is a single-use, expiring permission to apply one plan, held in PostgreSQL so
a double tap, a second device or a restart cannot use it twice. It stores the plan, the values the operator
was shown, so the fix applies exactly those or nothing.

A confirmed fix is *unsettled* (outcome ``confirmed``, no ``settled_at``) until its process has recorded what
came of it. While it is applied, that process holds the fix's lease: a PostgreSQL session advisory lock on a
connection of its own, taken in the same step that marks the confirmation ``confirmed`` and released when the
fix ends. PostgreSQL drops the lock with the connection, so when the process dies (``kill -9``, a crash) the
lease is free at once — for a lost host, once the server's TCP keepalive notices — and an unsettled confirmation
whose lease anyone can take is orphaned: ``services.fixes.interrupted`` settles it by a re-read. A live
process's fix is never settled under it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from services import audit
from services.plans import FixPlan, plan_from_json, plan_to_json

log = logging.getLogger(__name__)


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
    payload: Any = None
    actor: str | None = None
    message_id: int | None = None
    settled_at: datetime | None = None

    @property
    def plan(self) -> FixPlan:
        """The stored plan; raises pydantic's ValidationError if the payload was tampered with."""
        payload = self.payload if isinstance(self.payload, str) else json.dumps(self.payload)
        return plan_from_json(payload)


class ClaimRefused(StrEnum):
    """Why a press on Confirm or Cancel could not use its confirmation."""

    MISSING = "missing"
    NOT_YOURS = "not_yours"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Claim:
    """The result of pressing Confirm or Cancel: the confirmation if it may be used, else why not.

    ``expired`` is set when this press found the confirmation expired: it can never be used by anyone now,
    so its message may say so for good. Other refusals (someone else's confirmation, a second tap) leave
    the message as it is."""

    confirmation: Confirmation | None
    refused: ClaimRefused | None = None
    used_as: str | None = None
    lease: FixLease | None = None

    @property
    def expired(self) -> bool:
        return self.refused is ClaimRefused.EXPIRED


def _confirmation(record: asyncpg.Record) -> Confirmation:
    return Confirmation(**dict(record))


CONFIRMED = "confirmed"
INTERRUPTED = "interrupted"


def _lock_key(confirmation_id: int) -> int:
    """The fix's advisory lock key: the confirmation id, negated. Every other single-key lock reconbot takes is
    positive (shards use the two-key form), so no other lock ever shares it."""
    return -confirmation_id


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class FixLease:
    """The right to apply, or settle, one confirmed fix: its advisory lock, held on a connection of its own
    (outside the pool, so fixes under way never starve the pool they read and write through)."""

    def __init__(self, conn: asyncpg.Connection, confirmation_id: int):
        self.confirmation_id = confirmation_id
        self._conn: asyncpg.Connection | None = conn

    @classmethod
    async def take(cls, connect: Connect, confirmation_id: int) -> FixLease | None:
        """The lease, or None while someone else holds it (its process is applying or settling the fix)."""
        conn = await connect()
        try:
            taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", _lock_key(confirmation_id))
        except BaseException:
            await conn.close(timeout=5)
            raise
        if not taken:
            await conn.close(timeout=5)
            return None
        return cls(conn, confirmation_id)

    async def release(self, *, settled: bool = False) -> None:
        """Give the lease back (closing its connection drops the lock); ``settled``: the fix recorded its
        outcome, so nothing is left to settle."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if settled:
                await conn.execute(
                    "UPDATE reconbot.confirmations SET settled_at = now() WHERE id = $1 AND settled_at IS NULL",
                    self.confirmation_id,
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # an outcome not marked settled is re-read and recorded by the next settlement: late, never lost
            log.warning("confirmation #%s: not marked settled (%s)", self.confirmation_id, type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)


def target_of(plan: FixPlan) -> str:
    """How the audit trail names what a confirmation is about."""
    ids = getattr(plan, "position_ids", None)
    return ",".join(ids) if ids else plan.where


class ConfirmationStore:
    def __init__(self, pool: asyncpg.Pool, ttl: timedelta, connect: Connect):
        self.pool = pool
        self.ttl = ttl
        self.connect = connect  # a connection outside the pool, for a fix's lease

    async def create(
        self, *, plan: FixPlan, question: str, user_id: int, chat_id: int, finding_id: int | None = None
    ) -> Confirmation:
        record = await self.pool.fetchrow(
            "INSERT INTO reconbot.confirmations "
            "(action, target, finding_id, question, user_id, chat_id, expires_at, payload) "
            "VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8::jsonb) RETURNING *",
            str(plan.action),
            target_of(plan),
            finding_id,
            question,
            user_id,
            chat_id,
            self.ttl.total_seconds(),
            plan_to_json(plan),
        )
        return _confirmation(record)

    async def claim(
        self, confirmation_id: int, user_id: int, outcome: str, actor: str, message_id: int | None = None
    ) -> Claim:
        """Use a confirmation once (outcome 'confirmed' or 'cancelled'); expiry is audited.

        Confirming takes the fix's lease first and hands it back with the claim, so there is no moment at which
        the confirmation is ``confirmed`` and nobody holds it. ``message_id``: the question's message, edited
        with the outcome even if this process dies before it can say."""
        lease = await FixLease.take(self.connect, confirmation_id) if outcome == CONFIRMED else None
        try:
            may_use = outcome != CONFIRMED or lease is not None
            claim = await self._claim(confirmation_id, user_id, outcome, actor, message_id, may_use)
        except BaseException:
            if lease is not None:
                await lease.release()
            raise
        if claim.confirmation is None or lease is None:
            if lease is not None:
                await lease.release()
            return claim
        return Claim(claim.confirmation, lease=lease)

    async def _claim(
        self,
        confirmation_id: int,
        user_id: int,
        outcome: str,
        actor: str,
        message_id: int | None,
        may_use: bool,
    ) -> Claim:
        async with self.pool.acquire() as conn, conn.transaction():
            record = None
            if may_use:
                record = await conn.fetchrow(
                    "UPDATE reconbot.confirmations SET used_at = now(), outcome = $3, actor = $4, "
                    "message_id = coalesce($5, message_id) "
                    "WHERE id = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > now() RETURNING *",
                    confirmation_id,
                    user_id,
                    outcome,
                    actor,
                    message_id,
                )
            if record is not None:
                return Claim(_confirmation(record))
            current = await conn.fetchrow(
                "SELECT * FROM reconbot.confirmations WHERE id = $1 FOR UPDATE", confirmation_id
            )
            if current is None:
                return Claim(None, ClaimRefused.MISSING)
            existing = _confirmation(current)
            if existing.user_id != user_id:
                return Claim(None, ClaimRefused.NOT_YOURS)
            if existing.used_at is not None:
                return Claim(None, ClaimRefused.USED, existing.outcome)
            if not may_use:  # a press at the same instant holds the lease and is confirming it
                return Claim(None, ClaimRefused.USED, CONFIRMED)
            await conn.execute(
                "UPDATE reconbot.confirmations SET used_at = now(), outcome = 'expired', actor = $2 WHERE id = $1",
                confirmation_id,
                actor,
            )
            await audit.record(
                conn,
                actor=actor,
                action=existing.action,
                target=existing.target,
                outcome="expired",
                reason=f"confirmation #{existing.id} expired at {existing.expires_at.isoformat()}",
                confirmation_id=existing.id,
            )
            return Claim(None, ClaimRefused.EXPIRED)

    # -- confirmed fixes a stopped process left unsettled ------------------------------------------------------

    async def get(self, confirmation_id: int) -> Confirmation | None:
        record = await self.pool.fetchrow("SELECT * FROM reconbot.confirmations WHERE id = $1", confirmation_id)
        return _confirmation(record) if record else None

    async def unsettled(self) -> list[Confirmation]:
        """Confirmed fixes whose outcome is not recorded yet: under way somewhere, or left by a stopped process."""
        records = await self.pool.fetch(
            "SELECT * FROM reconbot.confirmations WHERE outcome = $1 AND settled_at IS NULL ORDER BY id", CONFIRMED
        )
        return [_confirmation(r) for r in records]

    async def lease(self, confirmation_id: int) -> FixLease | None:
        """The lease of an unsettled fix, if its process is gone (nobody holds it); None while it is held."""
        return await FixLease.take(self.connect, confirmation_id)

    @staticmethod
    async def close_interrupted(conn: asyncpg.Connection, confirmation_id: int) -> bool:
        """Close a confirmation whose process stopped mid-fix (guarded: once, and only while unsettled); in the
        caller's transaction, with the audit row that says what a re-read found."""
        closed = await conn.fetchval(
            "UPDATE reconbot.confirmations SET outcome = $2, settled_at = now() "
            "WHERE id = $1 AND outcome = $3 AND settled_at IS NULL RETURNING id",
            confirmation_id,
            INTERRUPTED,
            CONFIRMED,
        )
        return closed is not None
