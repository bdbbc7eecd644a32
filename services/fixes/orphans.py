"""Orphans: adopt one into the DB, or close it on the exchange with a reduce-only order. Both re-read the
exchange first and refuse if the position is gone, tracked meanwhile, or of another size than the operator saw."""

from __future__ import annotations

import asyncio
import logging
import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from services import audit
from services.database import DatabaseError, first_line
from services.fixes.core import SETTLE_PAUSE_S, SETTLE_READS, FixCore, target_of
from services.fixes.outcomes import FixOutcome, FixStatus, Reason, Why, refuse
from services.model import ExchangePosition, PositionKey
from services.plans import AdoptOrphan, CloseOrphan
from services.report import decimal_text
from services.venues import AnswerLost, VenueError

log = logging.getLogger(__name__)


def position_dict(position: ExchangePosition) -> dict[str, Any]:
    """An exchange position as the audit trail stores it."""
    return {
        "account": position.account,
        "market": position.market,
        "side": position.side.value,
        "quantity": decimal_text(position.quantity),
        "entry_price": decimal_text(position.entry_price),
        "hedged": position.hedged,
    }


class OrphanFixes(FixCore):
    async def current_orphan(self, plan: AdoptOrphan | CloseOrphan) -> ExchangePosition:
        snapshot = await self.read(plan.account)
        key = PositionKey(plan.account, plan.market, plan.side)
        position = self.exchange_position(snapshot, key)
        if position is None or any(row.key == key for row in snapshot.db_positions):
            raise refuse(Why.NO_LONGER_HOLDS, kind="orphan", where=plan.where)
        if position.quantity != plan.quantity:
            raise refuse(Why.CHANGED, what="exchange", now=position.quantity, approved=plan.quantity)
        return position

    async def adopt(self, plan: AdoptOrphan, actor: str, confirmation_id: int | None) -> FixOutcome:
        position = await self.current_orphan(plan)
        account = self.gateway(plan.account).account
        self.check_writable(None)
        try:
            async with self.repository.change(self.audit_pool) as change:
                row = await self.repository.insert_if_untracked(
                    change,
                    exchange=account.db_exchange or "",
                    account=account.db_account,
                    symbol=position.market,
                    side=position.side,
                    quantity=plan.quantity,
                    entry_price=position.entry_price,
                )
                if row is not None:
                    await audit.record(
                        change.audit,
                        actor=actor,
                        action=plan.action,
                        target=f"position #{row.id}",
                        outcome="done",
                        reason=f"adopted {plan.where}",
                        before=position_dict(position),
                        after=row.as_dict(),
                        confirmation_id=confirmation_id,
                    )
        except (asyncpg.PostgresError, DatabaseError) as exc:
            raise refuse(Why.TABLE_REFUSED, error=f"{type(exc).__name__}: {first_line(exc)}") from None
        if row is None:
            raise refuse(Why.ALREADY_TRACKED, where=plan.where)
        reason = Reason.of(Why.ADOPTED, where=plan.where, quantity=plan.quantity, row=row.id)
        return FixOutcome(plan.action, f"position #{row.id}", FixStatus.DONE, reason, (row.id,), after=row)

    async def close_orphan(self, plan: CloseOrphan, actor: str, confirmation_id: int | None) -> FixOutcome:
        gateway = self.gateway(plan.account)
        if not gateway.account.allow_exchange_orders:
            raise refuse(Why.ORDERS_NOT_ALLOWED, account=plan.account)
        position = await self.current_orphan(plan)
        client_order_id = f"reconbot-{uuid.uuid4().hex[:20]}"
        before = {**position_dict(position), "client_order_id": client_order_id}
        try:
            ack = await gateway.close_position(position, client_order_id)
        except AnswerLost as lost:
            return await self.settle_lost_order(plan, actor, confirmation_id, before, lost.reason)
        except VenueError as exc:
            raise refuse(Why.ORDER_REFUSED, before, error=exc.reason) from None
        async with self.audit_pool.acquire() as conn:
            await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=target_of(plan),
                outcome="done",
                reason=f"reduce-only market order {ack.order_id}",
                before=before,
                after={"order_id": ack.order_id, "status": ack.status, "filled": decimal_text(ack.filled)},
                confirmation_id=confirmation_id,
            )
        reason = Reason.of(Why.ORDER_SENT, where=plan.where, quantity=plan.quantity, order_id=ack.order_id)
        return FixOutcome(plan.action, target_of(plan), FixStatus.DONE, reason)

    async def settle_lost_order(
        self, plan: CloseOrphan, actor: str, confirmation_id: int | None, before: dict[str, Any], error: str
    ) -> FixOutcome:
        """The order's answer never came: audit ``unknown`` at once, then re-read the position to learn what
        happened, and record that."""
        target = target_of(plan)
        async with self.audit_pool.acquire() as conn:
            entry = await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=target,
                outcome="unknown",
                reason=str(Reason.of(Why.ANSWER_LOST, error=error)),
                before=before,
                confirmation_id=confirmation_id,
            )
        key = PositionKey(plan.account, plan.market, plan.side)
        for attempt in range(SETTLE_READS):
            await asyncio.sleep(SETTLE_PAUSE_S * attempt)
            snapshot = (await self.monitor.reader.read([plan.account]))[plan.account]
            if not snapshot.checked:
                continue
            position = self.exchange_position(snapshot, key)
            remaining = position.quantity if position else Decimal(0)
            if remaining < plan.quantity:
                state = "closed" if position is None else f"reduced to {decimal_text(remaining)}"
                read = Reason.of(Why.RE_READ, error=error, where=plan.where, state=state)
                await audit.settle(self.audit_pool, entry, "done", str(read))
                return FixOutcome(
                    plan.action, target, FixStatus.DONE, Reason.of(Why.SETTLED_DONE, target=target, read=read)
                )
            if attempt == SETTLE_READS - 1:
                reason = Reason.of(Why.SETTLED_NOT_EXECUTED, error=error, where=plan.where, remaining=remaining)
                await audit.settle(self.audit_pool, entry, "refused", str(reason))
                return FixOutcome(plan.action, target, FixStatus.REFUSED, reason)
        reason = Reason.of(Why.SETTLED_UNKNOWN, error=error, account=plan.account)
        return FixOutcome(plan.action, target, FixStatus.UNKNOWN, reason)
