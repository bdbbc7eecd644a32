"""Plans from what the operator saw: the alert's frozen details for a button, the check's rows for
``reconcile --fix``."""

from __future__ import annotations

from services.causes import CloseKind
from services.finding_details import CauseShown
from services.findings import StoredFinding
from services.model import Finding, FindingKind
from services.plans import (
    AdoptOrphan,
    CancelOrders,
    CauseSeen,
    CloseGhost,
    CloseOrphan,
    FixAction,
    FixPlan,
    OrderSeen,
    RowSeen,
    SetDbQuantity,
    Shown,
)
from services.protection import Protection


def plan_for_finding(finding: StoredFinding, action: FixAction) -> FixPlan | None:
    """The plan a button on this finding's alert stands for, with the values that alert showed."""
    d = finding.details
    base = {"account": finding.account, "market": finding.market, "side": finding.side}
    rows = tuple(RowSeen(id=r.id, symbol=r.symbol, quantity=r.quantity) for r in d.db_rows)
    if action is FixAction.CLOSE_GHOST and finding.kind is FindingKind.GHOST and rows:
        return CloseGhost(**base, rows=rows, cause=cause_seen(d.cause))
    if finding.kind is FindingKind.ORPHAN and d.exchange_quantity is not None:
        shown = Shown(
            notional=d.notional,
            unrealized_pnl=d.unrealized_pnl,
            currency=d.currency,
            protection=d.protection,
            stop_loss=d.stop_loss if d.protection in (Protection.STOP, Protection.PARTIAL) else None,
            protected_quantity=d.protected_quantity,
            stop_beyond_liquidation=d.stop_beyond_liquidation,
            liquidation_price=d.liquidation_price,
        )
        if action is FixAction.ADOPT_ORPHAN:
            return AdoptOrphan(**base, quantity=d.exchange_quantity, entry_price=d.entry_price, shown=shown)
        if action is FixAction.CLOSE_ORPHAN:
            return CloseOrphan(**base, quantity=d.exchange_quantity, hedged=d.hedged, shown=shown)
    if action is FixAction.CANCEL_ORDERS and finding.kind is FindingKind.STRAY_ORDER and d.orders:
        fields = set(OrderSeen.model_fields)
        seen = tuple(OrderSeen.model_validate(o.model_dump(include=fields)) for o in d.orders)
        return CancelOrders(**base, orders=seen)
    if (
        action is FixAction.SET_DB_QUANTITY
        and finding.kind is FindingKind.QUANTITY_MISMATCH
        and len(rows) == 1
        and d.exchange_quantity is not None
    ):
        return SetDbQuantity(**base, row=rows[0], exchange_quantity=d.exchange_quantity)
    return None


def ghost_plan(finding: Finding) -> CloseGhost:
    """Close the rows of a ghost found by a check, at the sizes that check read, with the cause it found."""
    rows = tuple(RowSeen(id=p.id, symbol=p.symbol, quantity=p.quantity) for p in finding.db_positions)
    key = finding.key
    cause = cause_seen(CauseShown.of(finding.cause) if finding.cause else None)
    return CloseGhost(account=key.account, market=key.market, side=key.side, rows=rows, cause=cause)


def cause_seen(cause: CauseShown | None) -> CauseSeen | None:
    """The part of a shown cause a fix writes; an unknown cause writes nothing but the seed's own reason."""
    if cause is None or cause.kind is CloseKind.UNKNOWN:
        return None
    return CauseSeen(
        kind=cause.kind, closed_at=cause.closed_at, exit_price=cause.exit_price, realized_pnl=cause.realized_pnl
    )
