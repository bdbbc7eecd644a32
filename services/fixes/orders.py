"""Stray orders: cancel exactly the resting orders the operator saw, and only while the account still holds no
position on that market and side (an order that now protects a position is not stray any more)."""

from __future__ import annotations

import asyncio
import logging

from services import audit
from services.fixes.core import SETTLE_PAUSE_S, SETTLE_READS, FixCore, target_of
from services.fixes.outcomes import FixOutcome, FixStatus, Reason, Why, refuse
from services.model import PositionKey
from services.plans import CancelOrders, OrderSeen
from services.protection import ProtectiveOrder
from services.venues import AnswerLost, VenueError

log = logging.getLogger(__name__)


def order_dict(order: ProtectiveOrder) -> dict[str, object]:
    """An order as the audit trail stores it."""
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "market": order.market,
        "closes": order.closes.value,
        "purpose": order.purpose.value,
        "trigger_price": None if order.trigger_price is None else str(order.trigger_price),
        "quantity": None if order.quantity is None else str(order.quantity),
        "source": order.source,
    }


class OrderFixes(FixCore):
    async def resting_orders(self, plan: CancelOrders) -> list[ProtectiveOrder]:
        """The plan's orders as they rest now; orders already gone need nothing, an order that changed refuses."""
        snapshot = await self.read(plan.account)
        if snapshot.orders_error:
            raise refuse(Why.UNCHECKED, account=plan.account, error=snapshot.orders_error)
        key = PositionKey(plan.account, plan.market, plan.side)
        if self.exchange_position(snapshot, key) is not None:
            raise refuse(Why.NO_LONGER_HOLDS, kind="stray order", where=plan.where)
        resting = {o.order_id: o for o in snapshot.orders if o.key == key}
        present = [(seen, resting[seen.order_id]) for seen in plan.orders if seen.order_id in resting]
        if not present:
            raise refuse(Why.NO_LONGER_HOLDS, kind="stray order", where=plan.where)
        for seen, order in present:
            _check_same(seen, order)
        return [order for _seen, order in present]

    async def cancel_orders(self, plan: CancelOrders, actor: str, confirmation_id: int | None) -> FixOutcome:
        gateway = self.gateway(plan.account)
        if not gateway.account.allow_exchange_orders:
            raise refuse(Why.ORDERS_NOT_ALLOWED, account=plan.account)
        orders = await self.resting_orders(plan)
        cancelled: list[str] = []
        for order in orders:
            try:
                await gateway.cancel_order(order)
            except AnswerLost as lost:
                if not await self._settle_lost_cancel(plan, order, actor, confirmation_id, lost.reason):
                    return self._stopped(
                        plan, cancelled, order, f"{lost.reason}; it still rests or could not be re-read"
                    )
                cancelled.append(order.order_id)
                continue
            except VenueError as exc:
                await self._audit_order(plan, order, actor, "refused", f"not cancelled: {exc.reason}", confirmation_id)
                return self._stopped(plan, cancelled, order, exc.reason)
            await self._audit_order(plan, order, actor, "done", "cancelled", confirmation_id)
            cancelled.append(order.order_id)
        log.info("cancel_orders %s on %s done by %s", cancelled, plan.where, actor)
        reason = Reason.of(Why.ORDERS_CANCELLED, where=plan.where, orders=tuple(cancelled))
        return FixOutcome(plan.action, target_of(plan), FixStatus.DONE, reason)

    def _stopped(self, plan: CancelOrders, cancelled: list[str], order: ProtectiveOrder, error: str) -> FixOutcome:
        """A cancel the venue refused or lost: the orders before it are cancelled, it and the rest are not."""
        reason = Reason.of(
            Why.ORDER_NOT_CANCELLED, where=plan.where, order=order.order_id, error=error, cancelled=tuple(cancelled)
        )
        return FixOutcome(plan.action, target_of(plan), FixStatus.REFUSED, reason)

    async def _audit_order(
        self,
        plan: CancelOrders,
        order: ProtectiveOrder,
        actor: str,
        outcome: str,
        reason: str,
        confirmation_id: int | None,
    ) -> int:
        async with self.audit_pool.acquire() as conn:
            return await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=f"order #{order.order_id} on {plan.where}",
                outcome=outcome,
                reason=reason,
                before=order_dict(order),
                confirmation_id=confirmation_id,
            )

    async def _settle_lost_cancel(
        self, plan: CancelOrders, order: ProtectiveOrder, actor: str, confirmation_id: int | None, error: str
    ) -> bool:
        """The cancel's answer never came: audit ``unknown``, then re-read the orders to learn whether it rests."""
        entry = await self._audit_order(
            plan, order, actor, "unknown", f"{error}; re-reading the orders to find out", confirmation_id
        )
        gateway = self.gateway(plan.account)
        for attempt in range(SETTLE_READS):
            await asyncio.sleep(SETTLE_PAUSE_S * attempt)
            try:
                resting = await gateway.protective_orders()
            except VenueError:
                continue
            gone = all(o.order_id != order.order_id for o in resting)
            await audit.settle(
                self.audit_pool,
                entry,
                "done" if gone else "refused",
                f"{error}; the re-read shows the order " + ("gone: cancelled" if gone else "still resting"),
            )
            return gone
        return False


def _check_same(seen: OrderSeen, order: ProtectiveOrder) -> None:
    if order.trigger_price != seen.trigger_price:
        what = f"order #{order.short_id} trigger"
        raise refuse(Why.CHANGED, what=what, now=order.trigger_price, approved=seen.trigger_price)
    if order.quantity != seen.quantity:
        what = f"order #{order.short_id} size"
        raise refuse(Why.CHANGED, what=what, now=order.quantity, approved=seen.quantity)
