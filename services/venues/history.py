"""What both venues' history reads share: the window they look back over, and how the fills of the last order
that reduced a position add up to one close (its time, average price, quantity and realized PnL)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.causes import CloseCause, CloseKind
from services.model import Side

# Both venues serve at most the last 7 days of trades per request; a position opened earlier is looked up in
# the last 7 days (a close older than that is history no longer served in one request).
HISTORY_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ClosingFill:
    """One fill that reduced the position, as the venue lists it."""

    order_id: str
    at: datetime
    quantity: Decimal
    price: Decimal
    realized_pnl: Decimal | None = None


@dataclass(frozen=True, slots=True)
class LastClose:
    """The fills of the last order that reduced the position, added up."""

    order_id: str
    closed_at: datetime
    exit_price: Decimal
    quantity: Decimal
    realized_pnl: Decimal | None

    def cause(self, kind: CloseKind, currency: str | None, note: str | None = None) -> CloseCause:
        return CloseCause(
            kind,
            closed_at=self.closed_at,
            exit_price=self.exit_price,
            realized_pnl=self.realized_pnl,
            currency=currency,
            order_id=self.order_id,
            closed_quantity=self.quantity,
            note=note,
        )


def window_start(since: datetime | None, now: datetime | None = None) -> datetime:
    """The earliest fill that can explain the close: the row's opening time, at most the venue's window back."""
    floor = (now or datetime.now(UTC)) - HISTORY_WINDOW
    return floor if since is None or since < floor else since


def last_close(fills: Iterable[ClosingFill]) -> LastClose | None:
    """The latest order among ``fills`` with every fill it made: quantity-weighted price, summed PnL."""
    fills = list(fills)
    if not fills:
        return None
    latest = max(fills, key=lambda fill: fill.at)
    own = [fill for fill in fills if fill.order_id == latest.order_id]
    quantity = sum((fill.quantity for fill in own), Decimal(0))
    value = sum((fill.quantity * fill.price for fill in own), Decimal(0))
    pnls = [fill.realized_pnl for fill in own if fill.realized_pnl is not None]
    return LastClose(
        order_id=latest.order_id,
        closed_at=max(fill.at for fill in own),
        exit_price=(value / quantity).normalize() if quantity else latest.price,
        quantity=quantity,
        realized_pnl=sum(pnls, Decimal(0)) if pnls else None,
    )


def nothing_found(market: str, side: Side, start: datetime) -> CloseCause:
    return CloseCause.unknown(
        f"no trade closing {market} {side.upper()} in the venue's history since {start:%Y-%m-%d %H:%M} UTC"
    )


def by_pnl(pnl: Decimal | None) -> CloseKind:
    """A conditional order that names neither a stop nor a take-profit: a loss stopped it, a gain took profit."""
    if pnl is None:
        return CloseKind.MANUAL_OR_OTHER
    return CloseKind.STOP_LOSS if pnl < 0 else CloseKind.TAKE_PROFIT
