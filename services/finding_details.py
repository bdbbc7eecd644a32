"""What a finding's alert shows, frozen when the drift was detected: the sizes, prices and DB rows the operator
sees, and so what a fix button will apply. Stored as JSON with the finding; read back as a typed value."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from services.amounts import Exact
from services.causes import CloseCause, CloseKind
from services.kinds import unknown_symbol_text
from services.model import DbPosition, ExchangePosition, Finding, FindingKind, FindingState, Side
from services.money import distance_pct, exposure_of, value_of
from services.protection import OrderPurpose, Protection, ProtectiveOrder, short_order_id
from services.severity import Severity


class RowShown(BaseModel):
    """One DB row as the alert showed it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    symbol: str
    quantity: Exact
    opened_at: datetime | None = None
    listed: bool = True


class OrderShown(BaseModel):
    """One resting order as the alert showed it (a stray order's, or a position's stops)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    order_id: str
    purpose: OrderPurpose
    closes: Side
    trigger_price: Exact | None = None
    quantity: Exact | None = None  # None: the whole position
    source: str
    category: str | None = None
    created_at: datetime | None = None

    @classmethod
    def of(cls, order: ProtectiveOrder) -> OrderShown:
        return cls(
            order_id=order.order_id,
            purpose=order.purpose,
            closes=order.closes,
            trigger_price=order.trigger_price,
            quantity=order.quantity,
            source=order.source,
            category=order.category,
            created_at=order.created_at,
        )

    @property
    def short_id(self) -> str:
        return short_order_id(self.order_id)


class CauseShown(BaseModel):
    """Why the position closed, as the alert said it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: CloseKind
    closed_at: datetime | None = None
    exit_price: Exact | None = None
    realized_pnl: Exact | None = None
    currency: str | None = None
    order_id: str | None = None
    closed_quantity: Exact | None = None
    note: str | None = None

    @classmethod
    def of(cls, cause: CloseCause) -> CauseShown:
        return cls.model_validate(dataclasses.asdict(cause))


class Baseline(BaseModel):
    """What a finding's alerts showed when reconbot last alerted it or a trader last snoozed, acknowledged or
    reopened it: growth is measured from here, so a snooze covers what was shown, not what came later."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: FindingState  # open: as alerted
    size: Exact | None = None  # the size at stake (services.regrowth.size_at_stake)
    exposure_usd: Exact | None = None
    severity: Severity | None = None


class Growth(BaseModel):
    """A growth that rang again: from the baseline to what the check that saw it found."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    before: Baseline
    size: Exact | None = None
    value: Exact | None = None  # the size at stake's worth, in ``currency``
    currency: str | None = None
    exposure_usd: Exact | None = None
    severity: Severity | None = None


class FindingDetails(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    exchange_quantity: Exact | None = None
    db_quantity: Exact | None = None
    difference: Exact | None = None
    entry_price: Exact | None = None
    mark_price: Exact | None = None
    unrealized_pnl: Exact | None = None
    leverage: Exact | None = None
    stop_loss: Exact | None = None
    protection: Protection | None = None
    protected_quantity: Exact | None = None
    protection_note: str | None = None  # why protection is unknown
    stop_distance_pct: Exact | None = None
    db_stop_loss: Exact | None = None  # what the trading bot believes, where the DB keeps it
    db_has_stop_loss: bool | None = None
    orders: tuple[OrderShown, ...] = ()
    # money: what the position is worth and how close it is to liquidation
    notional: Exact | None = None
    currency: str | None = None
    exposure_usd: Exact | None = None  # for severity and ordering; None when it cannot be told in USD
    margin: Exact | None = None
    liquidation_price: Exact | None = None
    liquidation_distance_pct: Exact | None = None
    price_tick: Exact | None = None
    contract_size: Exact | None = None
    venue_opened_at: datetime | None = None  # when the venue says the position opened (Bybit createdTime)
    db_value: Exact | None = None  # the DB size's worth at the mark (or the rows' entry price)
    severity: Severity | None = None  # set when filed, from alerts.severity
    cause: CauseShown | None = None  # why a ghost vanished (or a size shrank), from the venue's history
    baseline: Baseline | None = None  # what was last shown to the traders: growth is measured from it
    growth: Growth | None = None  # the last growth that rang again
    missed_at: datetime | None = None  # a check of its account no longer saw it; cleared when one sees it again
    hedged: bool = False
    category: str | None = None
    note: str | None = None
    db_position_ids: tuple[str, ...] = ()
    db_rows: tuple[RowShown, ...] = ()

    @classmethod
    def of(cls, finding: Finding) -> FindingDetails:
        position = finding.exchange_position
        rows = finding.db_positions
        entry = position.entry_price if position and position.entry_price is not None else None
        if entry is None:
            entry = next((row.entry_price for row in rows if row.entry_price is not None), None)
        state = position.protection if position else None
        exposure = exposure_of(position) if position else None
        reference = position.mark_price if position and position.mark_price else entry
        note = None
        if finding.kind is FindingKind.UNKNOWN_SYMBOL:
            note = unknown_symbol_text(finding.db_position_ids, finding.key.market, finding.exchange)
        return cls(
            exchange_quantity=finding.exchange_quantity,
            db_quantity=finding.db_quantity,
            difference=finding.difference,
            entry_price=entry,
            mark_price=position.mark_price if position else None,
            unrealized_pnl=position.unrealized_pnl if position else None,
            leverage=position.leverage if position else None,
            stop_loss=position.stop_loss if position else None,
            protection=state.level if state else None,
            protected_quantity=state.covered if state else None,
            protection_note=state.reason if state else None,
            stop_distance_pct=distance_pct(state.stop_price, position.mark_price) if state and position else None,
            db_stop_loss=next((r.stop_loss for r in rows if r.stop_loss is not None), None),
            db_has_stop_loss=_db_believes_stop(rows),
            orders=tuple(OrderShown.of(order) for order in finding.orders),
            cause=CauseShown.of(finding.cause) if finding.cause else None,
            notional=exposure.notional if exposure else None,
            currency=exposure.currency if exposure else _settle_of(finding),
            exposure_usd=exposure.usd if exposure else _db_usd(finding, entry),
            margin=position.margin if position else None,
            liquidation_price=position.liquidation_price if position else None,
            liquidation_distance_pct=distance_pct(position.liquidation_price, position.mark_price)
            if position
            else None,
            price_tick=position.price_tick if position else None,
            contract_size=position.contract_size if position else None,
            venue_opened_at=position.opened_at if position else None,
            db_value=value_of(finding.db_quantity, reference, position.contract_size if position else None)
            if finding.db_quantity is not None
            else None,
            hedged=bool(position and position.hedged),
            category=position.category if position else None,
            note=note,
            db_position_ids=finding.db_position_ids,
            db_rows=tuple(
                RowShown(id=r.id, symbol=r.symbol, quantity=r.quantity, opened_at=r.opened_at, listed=r.market_listed)
                for r in rows
            ),
        )

    @property
    def protection_known(self) -> bool:
        return self.protection is not None and self.protection is not Protection.UNKNOWN

    @property
    def opened_at(self) -> datetime | None:
        """When the oldest DB row was opened, if known."""
        return min((r.opened_at for r in self.db_rows if r.opened_at is not None), default=None)


def _db_believes_stop(rows: tuple[DbPosition, ...]) -> bool | None:
    """Whether the trading bot's rows say a stop was placed: a flag column, else a stop price column."""
    flags = [r.has_stop_loss for r in rows if r.has_stop_loss is not None]
    if flags:
        return any(flags)
    prices = [r.stop_loss for r in rows]
    return True if any(p is not None for p in prices) else None


def _settle_of(finding: Finding) -> str | None:
    """The settle currency of a finding without an exchange position, from its market id's quote."""
    market = finding.key.market
    return next((quote for quote in ("USDT", "USDC") if market.endswith(quote)), None)


def _db_usd(finding: Finding, entry: Decimal | None) -> Decimal | None:
    """A ghost's worth in USD: the DB size at its entry price, for stablecoin-settled markets."""
    if finding.db_quantity is None or _settle_of(finding) is None:
        return None
    return value_of(finding.db_quantity, entry)


def _liquidation_distance(position: ExchangePosition | None) -> Decimal | None:
    return distance_pct(position.liquidation_price, position.mark_price) if position else None
