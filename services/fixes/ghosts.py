"""Closing ghosts: a row is closed only if it is still active, of the size the operator saw, its symbol a market
of its venue, and its position absent from the exchange at this very read."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from services import audit
from services.causes import exit_reason
from services.detector import is_young
from services.finding_details import CauseShown
from services.fixes.core import FixCore, target_of
from services.fixes.outcomes import FixOutcome, FixStatus, Reason, Refused, Why, refuse
from services.fixes.planning import cause_seen
from services.kinds import unknown_symbol_text
from services.model import PositionKey, Side
from services.plans import CloseGhost, FixAction, RowSeen
from services.positions import PositionRow
from services.snapshot import AccountSnapshot, market_of
from services.venues import Gateway

log = logging.getLogger(__name__)

GHOST_EXIT_REASON = exit_reason(None)  # the seed's words, for a ghost whose cause is unknown


class GhostFixes(FixCore):
    async def plan_close_ghost(self, position_id: str, actor: str) -> CloseGhost | FixOutcome:
        """The plan ``closeghost ID`` asks about, after re-reading the row and its exchange; or the audited
        refusal, so a position that is open is refused before anyone is asked to confirm."""
        row = await self.repository.get(position_id)
        if row is None:
            reason = Reason.of(Why.NOT_FOUND, row=position_id)
            return FixOutcome(FixAction.CLOSE_GHOST, f"position #{position_id}", FixStatus.REFUSED, reason)
        gateway = self.owner(row)
        try:
            self.check_writable(row.id)  # a read-only table is refused before anything is read or asked
            await self.load_markets(gateway)
            self.check_row(row, gateway, None)
            assert gateway is not None and row.side is not None and row.quantity is not None and row.symbol
            market, _ = market_of(gateway, self.repository, row.symbol)
            snapshot = await self.read(gateway.name)
            self.check_absent(snapshot, PositionKey(gateway.name, market, row.side), f"position #{row.id}")
        except Refused as refusal:
            stub = CloseGhost(
                account=gateway.name if gateway else "?",
                market=row.symbol or "?",
                side=row.side or Side.LONG,
                rows=(RowSeen(id=row.id, symbol=row.symbol or "?", quantity=row.quantity or Decimal(0)),),
            )
            before = refusal.before or row.as_dict()
            return await self.refused(stub, actor, f"position #{row.id}", refusal.reason, before, None)
        seen = RowSeen(id=row.id, symbol=row.symbol, quantity=row.quantity)
        cause = await gateway.close_cause(market, row.side, row.opened_at)
        shown = cause_seen(CauseShown.of(cause))
        return CloseGhost(account=gateway.name, market=market, side=row.side, rows=(seen,), cause=shown)

    def check_row(self, row: PositionRow | None, gateway: Gateway | None, seen: RowSeen | None) -> None:
        pid = seen.id if seen else (row.id if row else "?")
        if row is None:
            raise refuse(Why.NOT_FOUND, row=pid)
        before = row.as_dict()
        if not self.repository.is_active(row):
            raise refuse(Why.NOT_ACTIVE, before, row=pid, status=row.status)
        if gateway is None:
            raise refuse(Why.UNWATCHED, before, row=pid, exchange=row.exchange)
        if row.problem or row.side is None or row.quantity is None or not row.symbol:
            raise refuse(Why.UNREADABLE, before, row=pid, problem=row.problem)
        _market, listed = market_of(gateway, self.repository, row.symbol)
        if not listed:
            raise refuse(
                Why.UNKNOWN_SYMBOL, before, note=unknown_symbol_text([row.id], row.symbol, gateway.exchange_id)
            )
        if seen is not None and row.quantity != seen.quantity:
            raise refuse(Why.ROW_CHANGED, row=row.id, what="DB size", now=row.quantity, approved=seen.quantity)
        grace = self.monitor.rules.grace
        if is_young(row.opened_at, self.monitor.now(), grace):
            raise refuse(Why.YOUNG, before, row=pid, grace=grace.total_seconds())

    def check_absent(self, snapshot: AccountSnapshot, key: PositionKey, target: str) -> None:
        position = self.exchange_position(snapshot, key)
        if position is not None:
            raise refuse(
                Why.OPEN_ON_EXCHANGE,
                target=target,
                account=key.account,
                market=position.market,
                side=position.side,
                quantity=position.quantity,
            )

    async def close_ghost(self, plan: CloseGhost, actor: str, confirmation_id: int | None) -> FixOutcome:
        gateway = self.gateway(plan.account)
        await self.load_markets(gateway)
        rows = {seen.id: await self.repository.get(seen.id) for seen in plan.rows}
        for seen in plan.rows:
            row = rows[seen.id]
            self.check_row(row, self.owner(row) if row else None, seen)
            assert row is not None and row.symbol is not None
            if market_of(gateway, self.repository, row.symbol)[0] != plan.market or row.side is not plan.side:
                raise refuse(Why.ROW_MOVED, row.as_dict(), row=row.id, where=plan.where)
        snapshot = await self.read(plan.account)
        self.check_absent(snapshot, PositionKey(plan.account, plan.market, plan.side), target_of(plan))
        self.check_writable(plan.rows[0].id)
        afters: list[PositionRow] = []
        reason_written = exit_reason(plan.cause.kind if plan.cause else None)
        async with self.repository.change(self.audit_pool) as change:
            for seen in plan.rows:
                before = rows[seen.id]
                assert before is not None
                after = await self.repository.close_if_active(
                    change, seen.id, reason_written, expected=before, **_real_close(plan, seen)
                )
                if after is None:
                    raise await self.changed_meanwhile(seen.id, before)
                afters.append(after)
                await audit.record(
                    change.audit,
                    actor=actor,
                    action=plan.action,
                    target=f"position #{seen.id}",
                    outcome="done",
                    reason=reason_written,
                    before=before.as_dict(),
                    after=after.as_dict(),
                    confirmation_id=confirmation_id,
                )
        log.info("close_ghost %s done by %s", plan.position_ids, actor)
        reason = Reason.of(
            Why.CLOSED,
            rows=plan.position_ids,
            market=plan.market,
            side=plan.side,
            quantity=plan.quantity,
            how=str(plan.cause.kind) if plan.cause else "",
        )
        return FixOutcome(plan.action, target_of(plan), FixStatus.DONE, reason, plan.position_ids, after=afters)

    async def changed_meanwhile(self, position_id: str, before: PositionRow) -> Refused:
        """Why a guarded write found nothing to change: the trading bot closed or resized the row first."""
        now = await self.repository.get(position_id)
        if now is None or not self.repository.is_active(now):
            return refuse(Why.CLOSED_MEANWHILE, before.as_dict(), row=position_id)
        return refuse(Why.RESIZED_MEANWHILE, before.as_dict(), row=position_id, size=now.quantity)


def _real_close(plan: CloseGhost, seen: RowSeen) -> dict[str, Any]:
    """The venue's close, written where the table keeps it: when, at what price, and each row's share of the
    realized PnL (by size, when several rows tracked the position)."""
    cause = plan.cause
    if cause is None:
        return {}
    pnl = cause.realized_pnl
    if pnl is not None and len(plan.rows) > 1 and plan.quantity:
        pnl = (pnl * seen.quantity / plan.quantity).quantize(Decimal("0.00000001"))
    return {"closed_at": cause.closed_at, "exit_price": cause.exit_price, "realized_pnl": pnl}
