"""Quantity mismatches: set the one row tracking a position to the exchange's size, only if both sides still show
the sizes the operator approved."""

from __future__ import annotations

from services import audit
from services.fixes.core import FixCore
from services.fixes.outcomes import FixOutcome, FixStatus, Reason, Why, refuse
from services.model import PositionKey
from services.plans import SetDbQuantity
from services.report import decimal_text


class SizeFixes(FixCore):
    async def set_quantity(self, plan: SetDbQuantity, actor: str, confirmation_id: int | None) -> FixOutcome:
        snapshot = await self.read(plan.account)
        key = PositionKey(plan.account, plan.market, plan.side)
        position = self.exchange_position(snapshot, key)
        rows = [row for row in snapshot.db_positions if row.key == key]
        target = f"position #{plan.row.id}"
        if position is None:
            raise refuse(Why.NO_LONGER_HOLDS, kind="quantity mismatch", where=plan.where)
        if position.quantity != plan.exchange_quantity:
            raise refuse(Why.CHANGED, what="exchange", now=position.quantity, approved=plan.exchange_quantity)
        if len(rows) != 1:
            raise refuse(Why.MANY_ROWS, rows=tuple(r.id for r in rows))
        if rows[0].id != plan.row.id:
            raise refuse(Why.ROW_MOVED, row=plan.row.id, where=f"{plan.where}; nothing changed")
        if rows[0].quantity != plan.row.quantity:
            raise refuse(
                Why.ROW_CHANGED, row=plan.row.id, what="DB size", now=rows[0].quantity, approved=plan.row.quantity
            )
        self.check_writable(plan.row.id)
        before = await self.repository.get(plan.row.id)
        if before is None or before.quantity != plan.row.quantity:
            raise refuse(Why.CHANGED_MEANWHILE, before.as_dict() if before else None, row=plan.row.id)
        async with self.repository.change(self.audit_pool) as change:
            after = await self.repository.set_quantity_if(change, before, plan.exchange_quantity)
            if after is None:
                raise refuse(Why.CHANGED_MEANWHILE, before.as_dict(), row=plan.row.id)
            await audit.record(
                change.audit,
                actor=actor,
                action=plan.action,
                target=target,
                outcome="done",
                reason=f"size set to the exchange's {decimal_text(plan.exchange_quantity)}",
                before=before.as_dict(),
                after=after.as_dict(),
                confirmation_id=confirmation_id,
            )
        reason = Reason.of(
            Why.RESIZED,
            row=plan.row.id,
            market=plan.market,
            side=plan.side,
            before=plan.row.quantity,
            after=plan.exchange_quantity,
        )
        return FixOutcome(plan.action, target, FixStatus.DONE, reason, (plan.row.id,), before, after)
