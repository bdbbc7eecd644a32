"""Fixes: the detection path backwards, one way for every caller (a Confirm button, ``closeghost``,
``reconcile --fix``, auto-fix).

A fix carries a plan: the action and the exact values the operator was shown. Applying it re-reads both sides,
refuses if anything differs from the plan ("changed since you were asked"), then makes one guarded change and
its audit row in a single transaction, and closes the finding it fixed. Refusals are audited too; so is an
order whose answer was lost, as ``unknown`` until a re-read settles what happened, and a confirmed fix whose
process stopped mid-fix, as ``interrupted`` with what a re-read found. Outcomes are data (a status and a
``Reason``); the words are the presentation's.
"""

from __future__ import annotations

from services.fixes.ghosts import GHOST_EXIT_REASON, GhostFixes
from services.fixes.interrupted import InterruptedFixes, Settlement
from services.fixes.orders import OrderFixes
from services.fixes.orphans import OrphanFixes
from services.fixes.outcomes import FixOutcome, FixStatus, Reason, Why
from services.fixes.planning import ghost_plan, plan_for_finding
from services.fixes.sizes import SizeFixes
from services.plans import AdoptOrphan, CancelOrders, CloseGhost, CloseOrphan, FixPlan, SetDbQuantity


class FixService(GhostFixes, OrphanFixes, SizeFixes, OrderFixes, InterruptedFixes):
    """Every fix reconbot can apply, behind ``apply``."""

    async def dispatch(self, plan: FixPlan, actor: str, confirmation_id: int | None) -> FixOutcome:
        if isinstance(plan, CloseGhost):
            return await self.close_ghost(plan, actor, confirmation_id)
        if isinstance(plan, AdoptOrphan):
            return await self.adopt(plan, actor, confirmation_id)
        if isinstance(plan, CloseOrphan):
            return await self.close_orphan(plan, actor, confirmation_id)
        if isinstance(plan, CancelOrders):
            return await self.cancel_orders(plan, actor, confirmation_id)
        assert isinstance(plan, SetDbQuantity)
        return await self.set_quantity(plan, actor, confirmation_id)


__all__ = [
    "GHOST_EXIT_REASON",
    "FixOutcome",
    "FixService",
    "FixStatus",
    "Reason",
    "Settlement",
    "Why",
    "ghost_plan",
    "plan_for_finding",
]
