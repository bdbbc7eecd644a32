"""Confirmed fixes a stopped process left unfinished, settled by a re-read of both sides.

A process killed mid-fix (``kill -9``, a crash, an OOM kill, a lost host) leaves its confirmation ``confirmed``
with no outcome: the order may have executed, the row may have been written, or nothing may have happened. At
start, before the first check files anything, and on every replica every ``scan.settle_interval_s``, each such
confirmation whose lease nobody holds (its process is gone; see ``services.confirmations``) is re-read the way
the fix reads — the account's exchange positions and orders and its DB rows — and, in one transaction guarded
so that two replicas never settle one twice:

* audited ``interrupted`` with what the re-read found: ``done`` (the exchange or DB now shows the plan's
  effect) or ``not done`` (it does not);
* its confirmation closed (outcome ``interrupted``);
* its finding fixed when done, with the truth as the resolution; left open when not done;
* the edit of its question message queued: what happened, in place of Confirm / Cancel.

An account that cannot be read now is tried again at the next round (the finding stays live meanwhile, never
"drift no longer seen"); one no longer configured, or a confirmation whose plan cannot be read, is settled
without a re-read and says to check by hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from services import audit, outbox
from services.confirmations import CONFIRMED, Confirmation, ConfirmationStore
from services.findings import FindingsStore
from services.fixes.core import FixCore
from services.fixes.outcomes import Reason, Refused, Why, refuse
from services.model import PositionKey
from services.outbox import Channel, Destination, OutboxKind
from services.plans import AdoptOrphan, CancelOrders, CloseGhost, CloseOrphan, FixPlan, SetDbQuantity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settlement:
    """One interrupted fix and what came of settling it. ``recorded`` False: its account could not be read
    now, so it is tried again at the next round."""

    confirmation_id: int
    action: str
    found: audit.Found | None
    reason: Reason
    recorded: bool = True


class InterruptedFixes(FixCore):
    async def settle_interrupted(self, confirmations: ConfirmationStore) -> list[Settlement]:
        """Settle every confirmed fix whose process is gone; a fix whose process is alive is left to it."""
        settlements = []
        for candidate in await confirmations.unsettled():
            lease = await confirmations.lease(candidate.id)
            if lease is None:
                continue  # its process is applying it, or another replica is settling it, right now
            try:
                confirmation = await confirmations.get(candidate.id)  # again, now that nobody else can change it
                if confirmation is None or confirmation.outcome != CONFIRMED or confirmation.settled_at is not None:
                    continue
                settlement = await self._settle(confirmation)
            except Exception:
                log.exception("confirmation #%s: settling the interrupted fix failed; next round", candidate.id)
                continue
            finally:
                await lease.release()
            if settlement is not None:
                settlements.append(settlement)
        return settlements

    async def _settle(self, confirmation: Confirmation) -> Settlement | None:
        by = confirmation.actor or f"user {confirmation.user_id}"
        try:
            plan: FixPlan | None = confirmation.plan
        except ValidationError:
            plan = None
        if plan is None:
            error = "the confirmation holds no readable plan"
            reason = Reason.of(Why.INTERRUPTED_UNREAD, by=by, where=confirmation.target, error=error)
            return await self._record(confirmation, None, None, reason)
        try:
            done, seen = await self.effect_seen(plan)
        except Refused as refusal:
            if refusal.reason.why is not Why.NOT_CONFIGURED:
                log.warning("confirmation #%s: interrupted fix not re-read (%s); next round", confirmation.id, refusal)
                return Settlement(confirmation.id, confirmation.action, None, refusal.reason, recorded=False)
            reason = Reason.of(Why.INTERRUPTED_UNREAD, by=by, where=plan.where, error=str(refusal.reason))
            return await self._record(confirmation, plan, None, reason)
        why = Why.INTERRUPTED_DONE if done else Why.INTERRUPTED_NOT_DONE
        reason = Reason.of(why, by=by, action=plan.action, where=plan.where, **seen)
        return await self._record(confirmation, plan, "done" if done else "not done", reason)

    async def effect_seen(self, plan: FixPlan) -> tuple[bool, dict[str, Any]]:
        """Whether both sides, read now, show the plan's effect, and what they show. Refused when the account
        cannot be read (or its orders, for a cancel)."""
        snapshot = await self.read(plan.account)
        key = PositionKey(plan.account, plan.market, plan.side)
        if isinstance(plan, CloseOrphan):
            position = self.exchange_position(snapshot, key)
            now = position.quantity if position is not None else Decimal(0)
            return now < plan.quantity, {"now": now}
        if isinstance(plan, AdoptOrphan):
            rows = tuple(row.id for row in snapshot.db_positions if row.key == key)
            return bool(rows), {"rows": rows}
        if isinstance(plan, CloseGhost):
            active = [pid for pid in plan.position_ids if await self._active(pid)]
            return not active, {"rows": tuple(active) or plan.position_ids}
        if isinstance(plan, SetDbQuantity):
            row = next((r for r in snapshot.db_positions if r.id == plan.row.id), None)
            now = row.quantity if row is not None else None
            return now == plan.exchange_quantity, {"rows": (plan.row.id,), "now": now}
        assert isinstance(plan, CancelOrders)
        if snapshot.orders_error:
            raise refuse(Why.UNCHECKED, account=plan.account, error=snapshot.orders_error)
        resting = {order.order_id for order in snapshot.orders}
        still = tuple(order_id for order_id in plan.order_ids if order_id in resting)
        return not still, {"orders": still or plan.order_ids}

    async def _active(self, position_id: str) -> bool:
        row = await self.repository.get(position_id)
        return row is not None and self.repository.is_active(row)

    async def _record(
        self, confirmation: Confirmation, plan: FixPlan | None, found: audit.Found | None, reason: Reason
    ) -> Settlement | None:
        """Close the confirmation, audit what was found, fix the finding when done and queue the edit of the
        question, in one transaction; None when someone settled it first."""
        by = confirmation.actor or f"user {confirmation.user_id}"
        finding_id = await self.finding_of(plan, confirmation.finding_id) if plan is not None else None
        async with self.audit_pool.acquire() as conn, conn.transaction():
            if not await ConfirmationStore.close_interrupted(conn, confirmation.id):
                return None
            await audit.record_interrupted(
                conn,
                actor=f"telegram {by}" if confirmation.actor else by,
                action=confirmation.action,
                target=confirmation.target,
                reason=str(reason),
                found=found,
                confirmation_id=confirmation.id,
            )
            if found == "done" and finding_id is not None:
                await FindingsStore.fix_on(conn, finding_id, by, str(reason), self.destinations)
            if confirmation.message_id is not None:
                body = {
                    "confirmation_id": confirmation.id,
                    "message_id": confirmation.message_id,
                    "question": confirmation.question,
                    "found": found,
                    "reason": str(reason),
                }
                address = Destination(Channel.TELEGRAM, str(confirmation.chat_id))
                await outbox.enqueue_many(conn, [address], OutboxKind.CONFIRMATION, body=body)
        log.warning("confirmation #%s (%s): interrupted fix settled: %s", confirmation.id, confirmation.action, reason)
        return Settlement(confirmation.id, confirmation.action, found, reason)
