"""The audit trail: who did what to which position, with the row before and after, in the change's transaction.

Outcomes: ``done``, ``refused``, ``expired`` (a confirmation nobody used in time), ``unknown`` (an order whose
answer was lost, until a re-read settles it to done or refused) and ``interrupted`` (reconbot stopped before a
confirmed fix finished). A confirmation that was used always has an audit row naming it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import asyncpg

Outcome = Literal["done", "refused", "expired", "unknown", "interrupted"]


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
    confirmation_id: int | None = None,
) -> int:
    """Append one audit row; call it on the connection whose transaction makes the change."""
    return await conn.fetchval(
        "INSERT INTO reconbot.audit_log (actor, action, target, outcome, reason, before, after, confirmation_id) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8) RETURNING id",
        actor,
        str(action),
        target,
        outcome,
        reason,
        None if before is None else json.dumps(before, default=str),
        None if after is None else json.dumps(after, default=str),
        confirmation_id,
    )


async def settle(pool: asyncpg.Pool, entry_id: int, outcome: Outcome, reason: str) -> None:
    """Turn an ``unknown`` row into what a re-read found; only ``unknown`` rows are ever changed."""
    await pool.execute(
        "UPDATE reconbot.audit_log SET outcome = $2, reason = $3, settled_at = now() "
        "WHERE id = $1 AND outcome = 'unknown'",
        entry_id,
        outcome,
        reason,
    )


async def record_interrupted_confirmations(pool: asyncpg.Pool, older_than_s: float = 300.0) -> int:
    """Audit every confirmed fix that left no outcome (the process died mid-fix); returns how many."""
    return len(
        await pool.fetch(
            """INSERT INTO reconbot.audit_log (actor, action, target, outcome, reason, confirmation_id)
               SELECT c.actor, c.action, c.target, 'interrupted',
                      'reconbot stopped before this confirmed fix finished; check the position before asking again',
                      c.id
               FROM reconbot.confirmations c
               WHERE c.outcome = 'confirmed' AND c.used_at < now() - make_interval(secs => $1)
                 AND NOT EXISTS (SELECT 1 FROM reconbot.audit_log a WHERE a.confirmation_id = c.id)
               RETURNING id""",
            older_than_s,
        )
    )
