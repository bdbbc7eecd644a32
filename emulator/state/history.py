"""Venue-neutral trade history: every fill an account makes, and why it happened.

Reconciliation has to tell *why* a position vanished: the bot's own order, a person closing it in the venue's
app, a stop-loss / take-profit / trailing stop that triggered, a liquidation, auto-deleveraging (ADL), or a
settlement / delivery of the contract. Each venue prints that in its own places (Binance ``userTrades``,
``forceOrders``, ``order`` / ``allOrders`` and the Algo Service; Bybit ``execution/list`` and ``closed-pnl``);
here it is one record, :class:`Fill`, with a ``cause``, kept by :class:`FillHistory`.

:class:`HistoryMixin` gives :class:`~emulator.state.account.EmulatedAccount` the API that makes history happen
(``close_position``, ``trigger_protective_order``) and reads it back (``fills``, ``history``). Ids and
client order ids a venue assigns to fills it makes itself come from the venue module (:class:`HistoryRules`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast

from emulator.state.common import ZERO, dec, fmt, now_ms, opt_dec
from emulator.state.markets import MarketSpec
from emulator.state.orders import ProtectiveOrder
from emulator.state.records import SIDES, Position
from emulator.state.streams import notifies

if TYPE_CHECKING:
    from emulator.state.account import EmulatedAccount

# "order": an order placed through the API (the bot's own); the rest are what close_position() accepts
CAUSES = (
    "order",
    "manual",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "liquidation",
    "adl",
    "settlement",
    "delivery",
)
CLOSE_CAUSES = CAUSES[1:]
# protective causes close through the conditional order of that kind that protects the position
PROTECTIVE_KIND = {"stop_loss": "stop", "take_profit": "take_profit", "trailing_stop": "trailing"}
CAUSE_OF_KIND = {kind: cause for cause, kind in PROTECTIVE_KIND.items()}
WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Fill:
    """One execution of one order (the emulator fills every order at once, in one fill).

    ``position_side`` is the position the fill changed ("long"/"short"), ``leg`` the hedge-mode leg (None in
    one-way mode). ``closed_size`` is the part of ``qty`` that reduced a position, whose average entry price
    was ``entry_price`` and which had ``remaining`` left afterwards; ``realized_pnl`` is that reduction's
    profit (before fees, as the emulator books it into the balance). ``trigger`` is the conditional order that
    triggered into this fill, as it was when it triggered. ``order_price`` is the order's own price (a
    liquidation order's limit price; the fill price for market orders).
    """

    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    qty: Decimal
    price: Decimal
    realized_pnl: Decimal
    fee: Decimal
    fee_asset: str
    time_ms: int
    position_side: str  # "long" | "short"
    leg: str | None
    cause: str  # one of CAUSES
    closed_size: Decimal = ZERO
    entry_price: Decimal = ZERO
    remaining: Decimal = ZERO
    order_qty: Decimal = ZERO
    order_price: Decimal = ZERO
    order_type: str = "market"  # "market" | "limit"
    reduce_only: bool = False
    close_position: bool = False
    mark_price: Decimal = ZERO
    leverage: int = 10
    seq: int = 0
    trigger: ProtectiveOrder | None = None

    @property
    def closes(self) -> bool:
        """Whether the fill reduced a position."""
        return self.closed_size > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "qty": fmt(self.qty),
            "price": fmt(self.price),
            "realized_pnl": fmt(self.realized_pnl),
            "fee": fmt(self.fee),
            "fee_asset": self.fee_asset,
            "time_ms": self.time_ms,
            "position_side": self.position_side,
            "leg": self.leg,
            "cause": self.cause,
            "closed_size": fmt(self.closed_size),
            "entry_price": fmt(self.entry_price),
            "remaining": fmt(self.remaining),
            "order_qty": fmt(self.order_qty),
            "order_price": fmt(self.order_price),
            "order_type": self.order_type,
            "reduce_only": self.reduce_only,
            "close_position": self.close_position,
            "mark_price": fmt(self.mark_price),
            "leverage": self.leverage,
            "trigger": None if self.trigger is None else self.trigger.to_dict(),
        }


class HistoryRules(Protocol):
    """What the venue module decides about fills the venue makes itself."""

    def trade_id(self, account: EmulatedAccount, number: int) -> str:
        """The id of the account's ``number``-th fill."""
        ...

    def history_ids(
        self, account: EmulatedAccount, *, cause: str, trigger: ProtectiveOrder | None, at_ms: int
    ) -> tuple[str, str]:
        """(order id, client order id) of the order behind a fill the venue made (liquidation, trigger...)."""
        ...


class FillHistory:
    """One account's fills, plus the taker fee rate charged on them (default 0: no fees)."""

    def __init__(self) -> None:
        self._fills: list[Fill] = []
        self._numbers = itertools.count(1)
        self.fee_rate = ZERO

    def next_number(self) -> int:
        """The next number of this account's fill sequence (Binance trade ids, Bybit ``seq``)."""
        return next(self._numbers)

    def add(self, fill: Fill) -> Fill:
        self._fills.append(fill)
        return fill

    @property
    def fills(self) -> list[Fill]:
        """Every fill, oldest first (fills placed in the past sort by their time)."""
        return sorted(self._fills, key=lambda f: (f.time_ms, f.seq))

    def by_trigger(self, order_id: str) -> Fill | None:
        """The fill a conditional order triggered into."""
        return next((f for f in self._fills if f.trigger is not None and f.trigger.order_id == order_id), None)


def realised_pnl(market: MarketSpec, position: Position, qty: Decimal, price: Decimal) -> Decimal:
    """Profit of closing ``qty`` of ``position`` at ``price`` (as ``EmulatedAccount._reduce`` books it)."""
    direction = 1 if position.side == "long" else -1
    if market.linear:
        return (price - position.entry_price) * qty * direction
    if position.entry_price > 0:
        return qty * (1 / position.entry_price - 1 / price) * direction
    return ZERO


def value_of(market: MarketSpec, qty: Decimal, price: Decimal) -> Decimal:
    """Notional of ``qty`` at ``price``: quote currency for linear markets, base coin for inverse ones."""
    if market.linear:
        return qty * price
    return qty / price if price > 0 else ZERO


def bankruptcy_price(market: MarketSpec, position: Position) -> Decimal:
    """The price at which the position's margin is gone (where a liquidation takes it over), on the tick grid."""
    sign = 1 if position.side == "long" else -1
    price = position.entry_price * (1 - sign * Decimal(1) / position.leverage)
    price = (price / market.tick_size).quantize(Decimal(1), rounding=ROUND_HALF_UP) * market.tick_size
    return max(price, market.tick_size)


class HistoryMixin:
    """Trade history of an :class:`~emulator.state.account.EmulatedAccount` (fills, causes, forced closes)."""

    # provided by EmulatedAccount
    if TYPE_CHECKING:
        _positions: dict[tuple[str, str], Position]
        hedge_mode: bool
        venue: str
        balances: dict[str, Decimal]

    @property
    def _history(self) -> FillHistory:
        history = self.__dict__.get("_fill_history")
        if history is None:
            history = self.__dict__["_fill_history"] = FillHistory()
        return history

    @property
    def fill_history(self) -> FillHistory:
        return self._history

    @property
    def fills(self) -> list[Fill]:
        """Every fill of this account, oldest first."""
        return self._history.fills

    @property
    def fee_rate(self) -> Decimal:
        """Taker fee rate charged on every fill and taken from the balance (default 0)."""
        return self._history.fee_rate

    @fee_rate.setter
    def fee_rate(self, value: Decimal | int | str) -> None:
        rate = dec(value, "fee_rate")
        if not 0 <= rate < 1:
            raise ValueError("fee_rate must be in [0, 1)")
        self._history.fee_rate = rate

    def history(
        self,
        symbol: str | None = None,
        *,
        cause: str | Iterable[str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[Fill]:
        """Fills of ``symbol`` (all when None) with ``cause`` (one or several), in ``[since_ms, until_ms]``."""
        causes = {cause} if isinstance(cause, str) else (None if cause is None else set(cause))
        if causes is not None and not causes <= set(CAUSES):
            raise ValueError(f"unknown cause; use one of {', '.join(CAUSES)}")
        return [
            f
            for f in self._history.fills
            if (symbol is None or f.symbol == symbol)
            and (causes is None or f.cause in causes)
            and (since_ms is None or f.time_ms >= since_ms)
            and (until_ms is None or f.time_ms <= until_ms)
        ]

    # making history ----------------------------------------------------------------------------------------

    @notifies("ORDER")
    def close_position(
        self,
        symbol: str,
        side: str,
        *,
        cause: str,
        price: Decimal | int | str | None = None,
        qty: Decimal | int | str | None = None,
        at_ms: int | None = None,
    ) -> list[Fill]:
        """Reduce or remove the (symbol, side) position the way the venue records ``cause``.

        ``cause``: "manual" (closed by a person in the venue's app), "stop_loss", "take_profit",
        "trailing_stop" (the open conditional order of that kind protecting the position triggers; the
        position-attached one first: see :meth:`trigger_protective_order`), "liquidation", "adl",
        "settlement" or "delivery". ``price`` defaults to the mark price (a liquidation: the bankruptcy price;
        a protective order: its limit or trigger price), ``qty`` to the whole position (a protective order: what
        it covers), ``at_ms`` to now (a past time puts the fill in the past). Realised PnL (minus fees) goes
        to the balance, as for API orders.
        """
        account = self._account()
        if cause not in CLOSE_CAUSES:
            raise ValueError(f"cause must be one of {', '.join(CLOSE_CAUSES)}, not {cause!r}")
        if side not in SIDES:
            raise ValueError(f"side must be 'long' or 'short', not {side!r}")
        position = self._positions.get((symbol, side))
        if position is None or position.size <= 0:
            raise ValueError(f"{account.name} holds no {side} {symbol} position to close")
        amount = self._amount(position, qty)
        if cause in PROTECTIVE_KIND:
            order = self._protecting(symbol, side, PROTECTIVE_KIND[cause])
            if order is None:
                raise ValueError(
                    f"no open {cause.replace('_', '-')} order protects {side} {symbol}; place one first "
                    "(set_position_stops / place_protective_order)"
                )
            return self.trigger_protective_order(order.order_id, price=price, qty=amount, at_ms=at_ms)
        market = account._emulator.market(account.venue, symbol)
        fill_price = opt_dec(price, "price")
        if fill_price is None:
            fill_price = bankruptcy_price(market, position) if cause == "liquidation" else account.mark_price(position)
        if fill_price <= 0:
            raise ValueError("price must be positive")
        at = now_ms() if at_ms is None else int(at_ms)
        order_type = "market" if cause == "manual" else "limit"
        return [self._close(market, position, amount, fill_price, at, cause, None, order_type)]

    @notifies("ORDER")
    def trigger_protective_order(
        self,
        order_id: str,
        *,
        price: Decimal | int | str | None = None,
        qty: Decimal | int | str | None = None,
        at_ms: int | None = None,
    ) -> list[Fill]:
        """A resting reduce-only (or close-position) conditional order triggers and fills at once.

        It fills at ``price`` (default: its limit price, else its trigger price) for the whole position it
        protects (close-position orders) or its quantity, at most the position (``qty`` fills less), and
        leaves the open orders as "triggered". The fill's cause follows the order's kind: stop_loss,
        take_profit or trailing_stop. KeyError when no such order is open, ValueError when the position it
        protects is not held.
        """
        account = self._account()
        order = account.find_protective_order(order_id=str(order_id))
        if order is None:
            raise KeyError(f"no open protective order {order_id!r}")
        if not (order.reduce_only or order.close_position):
            raise ValueError("only reduce-only or close-position conditional orders can be triggered")
        position = self._positions.get((order.symbol, order.protects))
        if position is None or position.size <= 0:
            raise ValueError(f"{account.name} holds no {order.protects} {order.symbol} position for it to close")
        amount = position.size if order.close_position or order.quantity is None else min(order.quantity, position.size)
        if qty is not None:
            amount = min(amount, self._amount(position, qty))
        fill_price = opt_dec(price, "price")
        if fill_price is None:
            fill_price = order.limit_price or order.trigger_price or account.mark_price(position)
        if fill_price <= 0:
            raise ValueError("price must be positive")
        at = now_ms() if at_ms is None else int(at_ms)
        # an order that fired in the past existed by then
        triggered = account._book.cancel(order.order_id, at, "triggered", created_ms=min(order.created_ms, at))
        market = account._emulator.market(account.venue, order.symbol)
        order_type = "market" if order.is_market else "limit"
        cause = CAUSE_OF_KIND[order.kind]
        fill = self._close(market, position, amount, fill_price, at, cause, triggered, order_type)
        if triggered.attached:
            account._sync_stop(order.symbol, order.protects)
        return [fill]

    # internals --------------------------------------------------------------------------------------------

    def _account(self) -> EmulatedAccount:
        return cast("EmulatedAccount", self)

    def _history_rules(self) -> HistoryRules:
        return cast(HistoryRules, self._account()._rules)

    @staticmethod
    def _amount(position: Position, qty: Decimal | int | str | None) -> Decimal:
        if qty is None:
            return position.size
        amount = dec(qty, "qty")
        if amount <= 0 or amount > position.size:
            raise ValueError(f"qty must be positive and at most the position size {fmt(position.size)}")
        return amount

    def _protecting(self, symbol: str, side: str, kind: str) -> ProtectiveOrder | None:
        """The open conditional order of ``kind`` closing (symbol, side): position-attached first, then oldest."""
        candidates = [
            o
            for o in self._account().protective_orders
            if o.symbol == symbol and o.protects == side and o.kind == kind and (o.reduce_only or o.close_position)
        ]
        candidates.sort(key=lambda o: not o.attached)
        return candidates[0] if candidates else None

    def _close(
        self,
        market: MarketSpec,
        position: Position,
        qty: Decimal,
        price: Decimal,
        at: int,
        cause: str,
        trigger: ProtectiveOrder | None,
        order_type: str,
    ) -> Fill:
        account = self._account()
        mark = account.mark_price(position) if trigger is None else trigger.trigger_price or price
        pnl = realised_pnl(market, position, qty, price)
        account._reduce(market, position, qty, price, at)
        order_id, client_id = self._history_rules().history_ids(account, cause=cause, trigger=trigger, at_ms=at)
        side = "sell" if position.side == "long" else "buy"
        order_qty = qty
        if trigger is not None and not trigger.close_position and trigger.quantity is not None:
            order_qty = trigger.quantity
        return self._record(
            market,
            order_id=order_id,
            client_order_id=client_id,
            side=side,
            qty=qty,
            price=price,
            at=at,
            position=position,
            closed=qty,
            remaining=position.size - qty,
            pnl=pnl,
            cause=cause,
            order_qty=order_qty,
            order_price=(trigger.limit_price or price) if trigger is not None else price,
            order_type=order_type,
            reduce_only=True if trigger is None else trigger.reduce_only,
            close_position=False if trigger is None else trigger.close_position,
            mark=mark,
            trigger=trigger,
        )

    def _record_api_fill(self, market: MarketSpec, order: Any, before: dict[tuple[str, str], Position]) -> Fill:
        """Record the fill of an API market order (``EmulatedAccount.execute``), given the positions before it."""
        buy = order.side == "buy"
        leg = order.position_side if self.hedge_mode else None
        reduced: Position | None = None
        if self.hedge_mode:
            candidate = before.get((market.id, order.position_side))
            if candidate is not None and candidate.size > 0 and (order.position_side == "long") != buy:
                reduced = candidate
        else:
            for side in SIDES:
                candidate = before.get((market.id, side))
                if candidate is not None and candidate.size > 0 and (side == "long") != buy:
                    reduced = candidate
        closed = min(order.qty, reduced.size) if reduced is not None else ZERO
        pnl = realised_pnl(market, reduced, closed, order.price) if reduced is not None else ZERO
        after = self._positions.get((market.id, reduced.side)) if reduced is not None else None
        holder = reduced or self._positions.get((market.id, order.position_side))
        return self._record(
            market,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            side=order.side,
            qty=order.qty,
            price=order.price,
            at=order.timestamp_ms,
            position=holder,
            closed=closed,
            remaining=after.size if after is not None else ZERO,
            pnl=pnl,
            cause="order",
            order_qty=order.qty,
            order_price=order.price,
            order_type="market",
            reduce_only=order.reduce_only,
            close_position=False,
            mark=order.price,
            trigger=None,
            position_side=order.position_side,
            leg=leg,
        )

    def _record(
        self,
        market: MarketSpec,
        *,
        order_id: str,
        client_order_id: str,
        side: str,
        qty: Decimal,
        price: Decimal,
        at: int,
        position: Position | None,
        closed: Decimal,
        remaining: Decimal,
        pnl: Decimal,
        cause: str,
        order_qty: Decimal,
        order_price: Decimal,
        order_type: str,
        reduce_only: bool,
        close_position: bool,
        mark: Decimal,
        trigger: ProtectiveOrder | None,
        position_side: str | None = None,
        leg: str | None = None,
    ) -> Fill:
        history = self._history
        fee = value_of(market, qty, price) * history.fee_rate
        if fee:
            self.balances[market.settle] = self.balances.get(market.settle, ZERO) - fee
        held_side = position_side or (position.side if position is not None else "long")
        if leg is None and self.hedge_mode:
            leg = held_side
        fill = Fill(
            trade_id="",
            order_id=order_id,
            client_order_id=client_order_id,
            symbol=market.id,
            side=side,
            qty=qty,
            price=price,
            realized_pnl=pnl,
            fee=fee,
            fee_asset=market.settle,
            time_ms=at,
            position_side=held_side,
            leg=leg,
            cause=cause,
            closed_size=closed,
            entry_price=position.entry_price if position is not None and closed > 0 else ZERO,
            remaining=remaining,
            order_qty=order_qty,
            order_price=order_price,
            order_type=order_type,
            reduce_only=reduce_only,
            close_position=close_position,
            mark_price=mark,
            leverage=position.leverage if position is not None else 10,
            trigger=trigger,
        )
        number = history.next_number()
        trade_id = self._history_rules().trade_id(self._account(), number)
        return history.add(dataclasses.replace(fill, trade_id=trade_id, seq=number))
