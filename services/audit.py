"""The audit trail: who did what to which position, with the row before and after, in the change's transaction."""

from __future__ import annotations

import json
from typing import Any, Literal

import asyncpg

Outcome = Literal["done", "refused", "expired"]


async def record(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    target: str,
    outcome: Outcome,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> int:
    """Append one audit row; call it on the connection whose transaction makes the change."""
    return await conn.fetchval(
        "INSERT INTO reconbot.audit_log (actor, action, target, outcome, reason, before, after) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) RETURNING id",
        actor,
        action,
        target,
        outcome,
        reason,
        None if before is None else json.dumps(before),
        None if after is None else json.dumps(after),
    )
