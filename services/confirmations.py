"""Two-tap fixes: a confirmation is a single-use, expiring permission to apply one plan, held in PostgreSQL so
a double tap, a second device or a restart cannot use it twice. It stores the plan, the values the operator
was shown, so the fix applies exactly those or nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from services import audit
from services.plans import FixPlan, plan_from_json, plan_to_json


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

    @property
    def expired(self) -> bool:
        return self.refused is ClaimRefused.EXPIRED


def _confirmation(record: asyncpg.Record) -> Confirmation:
    return Confirmation(**dict(record))


def target_of(plan: FixPlan) -> str:
    """How the audit trail names what a confirmation is about."""
    ids = getattr(plan, "position_ids", None)
    return ",".join(ids) if ids else plan.where


class ConfirmationStore:
    def __init__(self, pool: asyncpg.Pool, ttl: timedelta):
        self.pool = pool
        self.ttl = ttl

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

    async def claim(self, confirmation_id: int, user_id: int, outcome: str, actor: str) -> Claim:
        """Use a confirmation once (outcome 'confirmed' or 'cancelled'); expiry is audited."""
        async with self.pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                "UPDATE reconbot.confirmations SET used_at = now(), outcome = $3, actor = $4 "
                "WHERE id = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > now() RETURNING *",
                confirmation_id,
                user_id,
                outcome,
                actor,
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
