"""Venue-neutral model of resting protective orders (stop-loss, take-profit, trailing stop).

Reconciliation has to tell "position with a stop" from "naked position", and venues report stops in very
different places: Binance as classic or Algo Service conditional orders, Bybit as conditional orders and as
fields of the position row. One model here, printed by each venue module in its own JSON, keeps the
emulated venues consistent with each other and lets tests state intent once.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from emulator.state.common import fmt

PROTECTIVE_TYPES = ("stop_market", "stop", "take_profit", "take_profit_market", "trailing_stop_market")
TRIGGER_SOURCES = ("last", "mark", "index")
ORDER_SIDES = ("buy", "sell")
POSITION_STOP_KINDS = ("stop_loss", "take_profit", "trailing_stop")
CLOSED_KEPT = 500  # Bybit keeps the 500 most recent closed orders for openOnly=1


@dataclass(frozen=True)
class ProtectiveOrder:
    """A resting conditional order; ``attached`` ones belong to a position and die with it.

    ``quantity`` is None when ``close_position`` is set (the whole position, whatever its size when the order
    triggers). ``position_side`` is the hedge-mode leg the order closes, None in one-way mode. ``service`` is
    Binance's home of the order ("classic" order book or "algo" Algo Service); ``stop_order_type`` is Bybit's
    ``stopOrderType``. ``trailing_distance`` is Bybit's price distance, ``callback_rate`` Binance's percent.
    """

    order_id: str
    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    type: str  # one of PROTECTIVE_TYPES
    trigger_price: Decimal | None
    quantity: Decimal | None
    close_position: bool
    reduce_only: bool
    position_side: str | None
    limit_price: Decimal | None = None
    callback_rate: Decimal | None = None
    trailing_distance: Decimal | None = None
    service: str | None = None
    stop_order_type: str | None = None
    trigger_by: str = "last"  # "last" | "mark" | "index"
    attached: bool = False
    status: str = "open"  # "open" | "cancelled" | "triggered"
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def kind(self) -> str:
        """ "stop", "take_profit" or "trailing"."""
        if self.type.startswith("trailing"):
            return "trailing"
        return "take_profit" if self.type.startswith("take_profit") else "stop"

    @property
    def is_market(self) -> bool:
        return self.type.endswith("_market")

    @property
    def protects(self) -> str:
        """The position side this order closes: its hedge leg, else the side opposite to the order's."""
        return self.position_side or ("long" if self.side == "sell" else "short")

    def to_dict(self) -> dict[str, Any]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else fmt(value)

        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "trigger_price": text(self.trigger_price),
            "quantity": text(self.quantity),
            "close_position": self.close_position,
            "reduce_only": self.reduce_only,
            "position_side": self.position_side,
            "limit_price": text(self.limit_price),
            "callback_rate": text(self.callback_rate),
            "trailing_distance": text(self.trailing_distance),
            "service": self.service,
            "stop_order_type": self.stop_order_type,
            "trigger_by": self.trigger_by,
            "attached": self.attached,
            "status": self.status,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


def check_protective(order: ProtectiveOrder, *, hedge_mode: bool) -> ProtectiveOrder:
    """Venue-neutral consistency checks; raises ValueError naming the first problem."""
    if order.side not in ORDER_SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', not {order.side!r}")
    if order.type not in PROTECTIVE_TYPES:
        raise ValueError(f"type must be one of {', '.join(PROTECTIVE_TYPES)}, not {order.type!r}")
    if order.trigger_by not in TRIGGER_SOURCES:
        raise ValueError(f"trigger_by must be one of {', '.join(TRIGGER_SOURCES)}")
    for name in ("trigger_price", "quantity", "limit_price", "callback_rate", "trailing_distance"):
        value = getattr(order, name)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive")
    if order.kind != "trailing" and order.trigger_price is None:
        raise ValueError(f"a {order.type} order needs trigger_price")
    if order.type in ("stop", "take_profit") and order.limit_price is None:
        raise ValueError(f"a {order.type} order needs limit_price (it becomes a limit order when triggered)")
    if order.is_market and order.limit_price is not None:
        raise ValueError(f"a {order.type} order takes no limit_price")
    if order.kind != "trailing" and (order.callback_rate is not None or order.trailing_distance is not None):
        raise ValueError("callback_rate and trailing_distance are for trailing_stop_market orders only")
    if order.close_position:
        if order.quantity is not None:
            raise ValueError("close_position and quantity exclude each other")
        if order.type not in ("stop_market", "take_profit_market") and not order.attached:
            raise ValueError("close_position needs a stop_market or take_profit_market order")
    elif order.quantity is None:
        raise ValueError("pass quantity, or close_position=True")
    if hedge_mode and order.position_side not in ("long", "short"):
        raise ValueError("a hedge-mode account needs position_side 'long' or 'short'")
    if not hedge_mode and order.position_side is not None:
        raise ValueError("a one-way account takes no position_side")
    return order


class ProtectiveBook:
    """One account's open protective orders plus the most recent closed (cancelled or triggered) ones."""

    def __init__(self) -> None:
        self._open: dict[str, ProtectiveOrder] = {}
        self._closed: deque[ProtectiveOrder] = deque(maxlen=CLOSED_KEPT)

    @property
    def open(self) -> list[ProtectiveOrder]:
        return list(self._open.values())

    @property
    def closed(self) -> list[ProtectiveOrder]:
        return list(self._closed)

    def add(self, order: ProtectiveOrder) -> ProtectiveOrder:
        if order.order_id in self._open:
            raise ValueError(f"order id {order.order_id!r} is already open")
        if order.client_order_id and self.find(client_order_id=order.client_order_id) is not None:
            raise ValueError(f"client order id {order.client_order_id!r} is already used by an open order")
        self._open[order.order_id] = order
        return order

    def find(self, *, order_id: str | None = None, client_order_id: str | None = None) -> ProtectiveOrder | None:
        if order_id is not None:
            return self._open.get(order_id)
        if not client_order_id:
            return None
        return next((o for o in self._open.values() if o.client_order_id == client_order_id), None)

    def cancel(self, order_id: str, now: int, status: str = "cancelled", **changes: Any) -> ProtectiveOrder:
        """Close an open order as ``status`` ("cancelled", or "triggered" when it fired), with ``changes``."""
        try:
            order = self._open.pop(order_id)
        except KeyError:
            raise KeyError(f"no open protective order {order_id!r}") from None
        closed = dataclasses.replace(order, status=status, updated_ms=now, **changes)
        self._closed.append(closed)
        return closed

    def cancel_where(self, predicate: Callable[[ProtectiveOrder], bool], now: int) -> list[ProtectiveOrder]:
        return [self.cancel(o.order_id, now) for o in list(self._open.values()) if predicate(o)]

    def snapshot(self) -> tuple[dict[str, ProtectiveOrder], list[ProtectiveOrder]]:
        return dict(self._open), list(self._closed)

    def restore(self, snapshot: tuple[dict[str, ProtectiveOrder], list[ProtectiveOrder]]) -> None:
        self._open = dict(snapshot[0])
        self._closed = deque(snapshot[1], maxlen=CLOSED_KEPT)
