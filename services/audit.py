"""The audit trail: who did what to which position, with the row before and after, in the change's transaction.

Outcomes: ``done``, ``refused``, ``expired`` (a confirmation nobody used in time), ``unknown`` (an order whose
answer was lost, until a re-read settles it to done or refused) and ``interrupted`` (reconbot stopped before a
confirmed fix finished; ``found`` then says what a re-read of both sides showed afterwards: ``done`` or
``not done``). A confirmation that was used always has an audit row naming it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import asyncpg

Outcome = Literal["done", "refused", "expired", "unknown", "interrupted"]
Found = Literal["done", "not done"]


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
    found: Found | None = None,
) -> int:
    """Append one audit row; call it on the connection whose transaction makes the change."""
    return await conn.fetchval(
        "INSERT INTO reconbot.audit_log "
        "(actor, action, target, outcome, reason, before, after, confirmation_id, found) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9) RETURNING id",
        actor,
        str(action),
        target,
        outcome,
        reason,
        None if before is None else json.dumps(before, default=str),
        None if after is None else json.dumps(after, default=str),
        confirmation_id,
        found,
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


async def record_interrupted(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    target: str,
    reason: str,
    found: Found | None,
    confirmation_id: int,
) -> int:
    """What a re-read found after reconbot stopped in the middle of a confirmed fix, in the caller's transaction.

    A graceful stop that had to abandon the fix already wrote an ``interrupted`` row without knowing its effect:
    that row is completed rather than doubled. An ``unknown`` row of the same fix (an order whose answer was
    lost) is settled with it to ``done`` or ``refused``."""
    entry = await conn.fetchval(
        "UPDATE reconbot.audit_log SET found = $2, reason = $3, settled_at = now() "
        "WHERE id = (SELECT min(id) FROM reconbot.audit_log "
        "            WHERE confirmation_id = $1 AND outcome = 'interrupted' AND found IS NULL) RETURNING id",
        confirmation_id,
        found,
        reason,
    )
    if entry is None:
        entry = await record(
            conn,
            actor=actor,
            action=action,
            target=target,
            outcome="interrupted",
            reason=reason,
            confirmation_id=confirmation_id,
            found=found,
        )
    if found is not None:
        await conn.execute(
            "UPDATE reconbot.audit_log SET outcome = CASE WHEN $2 = 'done' THEN 'done' ELSE 'refused' END, "
            "found = $2, reason = $3, settled_at = now() WHERE confirmation_id = $1 AND outcome = 'unknown'",
            confirmation_id,
            found,
            reason,
        )
    return entry
