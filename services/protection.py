"""Whether a position is protected: the venue's resting stop orders (and a position's own stop) matched to the
position they would close. Pure: no I/O, so the detector, the alerts and the embedding API share one truth."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from services.model import PositionKey, Side


class OrderPurpose(StrEnum):
    """What a resting conditional order does when it triggers."""

    STOP = "stop"
    TRAILING_STOP = "trailing_stop"
    TAKE_PROFIT = "take_profit"

    @property
    def protects(self) -> bool:
        """Stops and trailing stops limit a loss; a take-profit does not."""
        return self is not OrderPurpose.TAKE_PROFIT


class Protection(StrEnum):
    STOP = "stop"  # stops cover the whole size (or the position carries its own stop)
    PARTIAL = "partial"  # stops cover part of the size
    NONE = "none"  # no stop at all
    UNKNOWN = "unknown"  # the orders could not be read


@dataclass(frozen=True, slots=True)
class ProtectiveOrder:
    """A resting reduce-only or close-position conditional order, as the venue reports it.

    ``closes`` is the side of the position it would reduce (the order itself sells to close a long, buys to close
    a short); ``quantity`` None means the whole position
    (``closePosition`` on Binance, ``closeOnTrigger`` / a full TP/SL on Bybit). ``source`` is where the venue
    keeps it (Binance ``classic`` order book or ``algo`` service; Bybit ``conditional``), which decides how it
    is cancelled; ``category`` is Bybit's (``linear``/``inverse``)."""

    account: str
    market: str
    symbol: str
    order_id: str
    purpose: OrderPurpose
    closes: Side
    trigger_price: Decimal | None
    quantity: Decimal | None
    source: str
    client_order_id: str = ""
    category: str | None = None
    created_at: datetime | None = None
    reduce_only: bool | None = None  # the venue's reduce-only / close-position flag; False: a hedge leg's order

    @property
    def key(self) -> PositionKey:
        return PositionKey(self.account, self.market, self.closes)

    @property
    def whole_position(self) -> bool:
        return self.quantity is None

    @property
    def short_id(self) -> str:
        return short_order_id(self.order_id)


@dataclass(frozen=True, slots=True)
class ProtectionState:
    """A position's protection: the level, the stop nearest to the mark, how much of the size stops cover, why it
    is unknown when it is, and the stop that cannot fire because liquidation comes first (when that is why the
    position is not fully protected)."""

    level: Protection
    stop_price: Decimal | None = None
    covered: Decimal | None = None
    reason: str | None = None
    beyond_liquidation: Decimal | None = None

    @property
    def known(self) -> bool:
        return self.level is not Protection.UNKNOWN


def short_order_id(order_id: str) -> str:
    """Enough of an order id to tell orders apart on a phone (venue ids run to 19 digits or a UUID)."""
    return order_id if len(order_id) <= 12 else f"…{order_id[-8:]}"


def fires_before_liquidation(trigger: Decimal | None, side: Side | None, liquidation: Decimal | None) -> bool:
    """Whether a stop can fire before the venue liquidates the position: a long's stop above the liquidation
    price, a short's below it. A stop at or beyond it never fires (the venue takes the position first). Without
    a trigger, a side or a liquidation price (none at low leverage) nothing can be told, so the stop counts."""
    if trigger is None or side is None or liquidation is None:
        return True
    return trigger > liquidation if side is Side.LONG else trigger < liquidation


def protection_of(
    quantity: Decimal,
    mark: Decimal | None,
    orders: Iterable[ProtectiveOrder],
    own_stop: Decimal | None = None,
    *,
    side: Side | None = None,
    liquidation: Decimal | None = None,
) -> ProtectionState:
    """A position's protection from the stops that would close it; ``orders`` are already this position's.

    Only a stop that can fire before liquidation protects. A stop for the whole position, or the position's own
    stop, is full protection; otherwise the sizes of the stops add up. The stop shown is the trigger nearest the
    mark: the one that fires first. When a stop beyond the liquidation price is why the position is not fully
    protected, the state names it (the nearest to liquidation)."""
    stops = [o for o in orders if o.purpose.protects]
    triggers = [o.trigger_price for o in stops if o.trigger_price is not None]
    dead = [t for t in (*triggers, own_stop) if t is not None and not fires_before_liquidation(t, side, liquidation)]
    stops = [o for o in stops if fires_before_liquidation(o.trigger_price, side, liquidation)]
    if own_stop is not None and own_stop in dead:
        own_stop = None
    state = _covering(quantity, mark, stops, own_stop)
    if dead and state.level is not Protection.STOP:
        assert liquidation is not None
        return replace(state, beyond_liquidation=min(dead, key=lambda p: abs(liquidation - p)))
    return state


def _covering(
    quantity: Decimal, mark: Decimal | None, stops: list[ProtectiveOrder], own_stop: Decimal | None
) -> ProtectionState:
    triggers = [o.trigger_price for o in stops if o.trigger_price is not None]
    if own_stop is not None:
        triggers.append(own_stop)
    nearest = min(triggers, key=lambda p: abs((mark or p) - p)) if triggers else None
    if own_stop is not None or any(o.whole_position for o in stops):
        return ProtectionState(Protection.STOP, nearest, quantity)
    covered = sum((o.quantity or Decimal(0) for o in stops), Decimal(0))
    if covered <= 0:
        return ProtectionState(Protection.NONE)
    if covered >= quantity:
        return ProtectionState(Protection.STOP, nearest, quantity)
    return ProtectionState(Protection.PARTIAL, nearest, covered)


def unknown(reason: str) -> ProtectionState:
    return ProtectionState(Protection.UNKNOWN, reason=reason)
