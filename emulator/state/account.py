"""Emulated venue accounts: the venue-neutral state venue modules read, change and print.

Positions, balances, fills, protective orders, faults, tampering and the log of requests received live here;
nothing here knows a venue's wire format. What differs per venue (default balances, id shapes, which
protective orders a venue can hold) comes from the account's :class:`VenueRules`, i.e. the venue module.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Protocol

from emulator.state.common import ZERO, dec, now_ms, opt_dec
from emulator.state.history import HistoryMixin
from emulator.state.markets import MarketSpec
from emulator.state.orders import POSITION_STOP_KINDS, ProtectiveBook, ProtectiveOrder, check_protective
from emulator.state.records import (
    ENDPOINT_GROUPS,
    SIDES,
    EmulatedOrder,
    Fault,
    Position,
    RecordedRequest,
    Tamper,
    check_fault,
    check_times,
    position_kwargs,
)
from emulator.state.streams import AccountStreams, notifies

if TYPE_CHECKING:
    from emulator.server import ExchangeEmulator

_STOP_KIND_OF = {"stop": "stop_loss", "take_profit": "take_profit", "trailing": "trailing_stop"}


class VenueRules(Protocol):
    """What an account needs to know about its venue; implemented by each venue module's API class."""

    name: str
    exchange_id: str
    default_balances: Mapping[str, Decimal]
    first_order_id: int
    allows_zero_entry: bool

    def has_path(self, path: str) -> bool: ...

    def prepare_protective(self, account: EmulatedAccount, draft: ProtectiveOrder) -> ProtectiveOrder: ...

    def position_stop(self, kind: str, value: Decimal, position: Position, mark: Decimal) -> dict[str, Any]: ...


class EmulatedAccount(HistoryMixin, AccountStreams):
    """One venue account: positions, balances, orders, faults, tampering and the log of requests it received.

    Its trade history (fills and their causes, forced closes) comes from :class:`HistoryMixin`; every change is
    published to its private streams through :class:`AccountStreams`.
    """

    def __init__(
        self, emulator: ExchangeEmulator, name: str, venue: str, api_key: str, secret: str, hedge_mode: bool
    ) -> None:
        self._emulator = emulator
        self._rules: VenueRules = emulator.venue_api(venue)
        self.name = name
        self.venue = venue
        self.api_key = api_key
        self.secret = secret
        self.hedge_mode = bool(hedge_mode)
        self.page_size = 200
        self.instruments_page_size = 1000
        self.balances: dict[str, Decimal] = dict(self._rules.default_balances)
        self._positions: dict[tuple[str, str], Position] = {}
        self._faults: list[Fault] = []
        self._tampers: list[Tamper] = []
        self._requests: list[RecordedRequest] = []
        self._orders: list[EmulatedOrder] = []
        self._book = ProtectiveBook()
        self._order_seq = itertools.count(self._rules.first_order_id)
        self._init_streams()

    def __repr__(self) -> str:
        return f"EmulatedAccount(name={self.name!r}, venue={self.venue!r}, hedge_mode={self.hedge_mode})"

    @property
    def exchange_id(self) -> str:
        """The ccxt exchange id of this account's venue ("binanceusdm" or "bybit")."""
        return self._rules.exchange_id

    @property
    def base_url(self) -> str:
        return f"{self._emulator.base_url}/{self.name}"

    def next_order_id(self) -> int:
        """The next number of this account's order-id sequence (fills and classic orders share it)."""
        return next(self._order_seq)

    # positions -------------------------------------------------------------------------------------------

    @property
    def positions(self) -> dict[tuple[str, str], Position]:
        return dict(self._positions)

    @notifies("ADJUSTMENT")
    def set_position(
        self,
        symbol: str,
        side: str,
        size: Decimal | int | str,
        *,
        entry_price: Decimal | int | str | None = None,
        mark_price: Decimal | int | str | None = None,
        leverage: int = 10,
        stop_loss: Decimal | int | str | None = None,
        opened_ms: int | None = None,
    ) -> Position:
        """Create or replace the position (symbol, side) and its attached stops; size 0 yields a zero row.

        ``stop_loss`` attaches the venue's position stop-loss (see :meth:`set_position_stops`).
        ``entry_price=0`` is accepted where the venue reports it (Binance: ``entryPrice`` "0.0").
        """
        market = self._emulator.market(self.venue, symbol)
        if side not in SIDES:
            raise ValueError(f"side must be 'long' or 'short', not {side!r}")
        size_d = dec(size, "size")
        if size_d < 0:
            raise ValueError("size must not be negative; use side='short' for short positions")
        other = (symbol, "short" if side == "long" else "long")
        if not self.hedge_mode and other in self._positions and self._positions[other].size > 0 and size_d > 0:
            raise ValueError(f"{self.name} is in one-way mode and already holds {other[1]} {symbol}; remove it first")
        if isinstance(leverage, bool) or not isinstance(leverage, int) or not 1 <= leverage <= 200:
            raise ValueError("leverage must be an integer between 1 and 200")
        entry = market.price if entry_price is None else dec(entry_price, "entry_price")
        mark = opt_dec(mark_price, "mark_price")
        stop = opt_dec(stop_loss, "stop_loss")
        zero_entry_ok = self._rules.allows_zero_entry and entry == 0 and entry_price is not None
        if (entry <= 0 and not zero_entry_ok) or (mark is not None and mark <= 0) or (stop is not None and stop <= 0):
            raise ValueError("prices must be positive" + ("" if self._rules.allows_zero_entry else f" on {self.venue}"))
        stamp = now_ms() if opened_ms is None else int(opened_ms)
        if not self.hedge_mode:
            self._drop_position(other)
        self._drop_position((symbol, side))
        position = Position(symbol, side, size_d, entry, mark, leverage, stop, stamp, stamp)
        self._positions[(symbol, side)] = position
        if stop is not None and size_d > 0:
            self.set_position_stops(symbol, side, stop_loss=stop)
        return self._positions[(symbol, side)]

    @notifies("ADJUSTMENT")
    def remove_position(self, symbol: str, side: str) -> None:
        self._drop_position((symbol, side))

    @notifies("ADJUSTMENT")
    def clear_positions(self) -> None:
        for key in list(self._positions):
            self._drop_position(key)

    @notifies("ADJUSTMENT")
    def replace_positions(self, positions: Iterable[Mapping[str, Any]]) -> None:
        """Replace every position with ``positions`` (dicts as in scenarios); all or nothing."""
        previous, book = dict(self._positions), self._book.snapshot()
        try:
            self.clear_positions()
            for entry in positions:
                self.set_position(**position_kwargs(entry))
        except Exception:
            self._positions = previous
            self._book.restore(book)
            raise

    @notifies("ADJUSTMENT")
    def set_balance(self, asset: str, amount: Decimal | int | str) -> None:
        self.balances[asset] = dec(amount, "amount")

    def mark_price(self, position: Position) -> Decimal:
        """The position's own mark price, else its market's default price."""
        if position.mark_price is not None:
            return position.mark_price
        return self._emulator.market(self.venue, position.symbol).price

    def held(self, symbol: str) -> Position | None:
        """The non-empty position in ``symbol`` (one-way mode holds at most one)."""
        for side in SIDES:
            position = self._positions.get((symbol, side))
            if position is not None and position.size > 0:
                return position
        return None

    def one_way_entry(self, symbol: str) -> Position | None:
        """The one-way entry of ``symbol``: the held position, else an explicit zero-size one."""
        held = self.held(symbol)
        if held is not None:
            return held
        return self._positions.get((symbol, "long")) or self._positions.get((symbol, "short"))

    @notifies("ORDER")
    def _drop_position(self, key: tuple[str, str]) -> None:
        if self._positions.pop(key, None) is not None:
            self._book.cancel_where(lambda o: o.attached and (o.symbol, o.protects) == key, now_ms())

    # protective orders ---------------------------------------------------------------------------------

    @property
    def protective_orders(self) -> list[ProtectiveOrder]:
        """Open protective orders, oldest first."""
        return self._book.open

    @property
    def closed_protective_orders(self) -> list[ProtectiveOrder]:
        """Recently cancelled protective orders (the venues keep the last 500)."""
        return self._book.closed

    @notifies("ORDER")
    def place_protective_order(
        self,
        symbol: str,
        side: str,
        type: str,
        *,
        trigger_price: Decimal | int | str | None,
        quantity: Decimal | int | str | None = None,
        close_position: bool = False,
        reduce_only: bool = True,
        position_side: str | None = None,
        limit_price: Decimal | int | str | None = None,
        callback_rate: Decimal | int | str | None = None,
        service: str | None = None,
        stop_order_type: str | None = None,
        client_order_id: str | None = None,
        trigger_by: str = "last",
    ) -> ProtectiveOrder:
        """Rest a conditional order; the venue module checks what its venue allows and assigns ids.

        ``type``: stop_market, stop, take_profit, take_profit_market or trailing_stop_market (``trigger_price``
        is then the optional activation price). ``service``: Binance "classic" or "algo" (default "algo").
        ``stop_order_type``: Bybit's, default "Stop". Trigger direction is not checked against the price.
        """
        market = self._emulator.market(self.venue, symbol)
        now = now_ms()
        draft = ProtectiveOrder(
            order_id="",
            client_order_id=client_order_id or "",
            symbol=market.id,
            side=side,
            type=type,
            trigger_price=opt_dec(trigger_price, "trigger_price"),
            quantity=opt_dec(quantity, "quantity"),
            close_position=bool(close_position),
            reduce_only=bool(reduce_only) or bool(close_position),
            position_side=position_side,
            limit_price=opt_dec(limit_price, "limit_price"),
            callback_rate=opt_dec(callback_rate, "callback_rate"),
            service=service,
            stop_order_type=stop_order_type,
            trigger_by=trigger_by,
            created_ms=now,
            updated_ms=now,
        )
        order = self._rules.prepare_protective(self, check_protective(draft, hedge_mode=self.hedge_mode))
        return self._book.add(order)

    @notifies("ORDER")
    def cancel_protective_order(self, order_id: str) -> ProtectiveOrder:
        """Cancel an open protective order by id; returns it as cancelled (KeyError when not open)."""
        order = self._book.cancel(str(order_id), now_ms())
        if order.attached:
            self._sync_stop(order.symbol, order.protects)
        return order

    def find_protective_order(
        self, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> ProtectiveOrder | None:
        return self._book.find(order_id=order_id, client_order_id=client_order_id)

    @notifies("ORDER")
    def set_position_stops(
        self,
        symbol: str,
        side: str,
        stop_loss: Decimal | int | str | None = None,
        take_profit: Decimal | int | str | None = None,
        trailing_stop: Decimal | int | str | None = None,
    ) -> list[ProtectiveOrder]:
        """Replace the position-attached TP/SL of a held position (a leg passed as None is removed).

        Bybit shows them as the position's ``stopLoss``/``takeProfit``/``trailingStop`` (a price distance)
        and as StopLoss/TakeProfit/TrailingStop conditional orders; Binance as closePosition STOP_MARKET /
        TAKE_PROFIT_MARKET algo orders (it has no position trailing stop).
        """
        position = self._positions.get((symbol, side))
        if position is None or position.size <= 0:
            raise ValueError(f"{self.name} holds no {side} {symbol} position to attach stops to")
        values = dict(zip(POSITION_STOP_KINDS, (stop_loss, take_profit, trailing_stop), strict=True))
        now = now_ms()
        book = self._book.snapshot()
        self._book.cancel_where(lambda o: o.attached and (o.symbol, o.protects) == (symbol, side), now)
        placed = []
        try:
            for kind, raw in values.items():
                if raw is None:
                    continue
                value = dec(raw, kind)
                if value <= 0:
                    raise ValueError(f"{kind} must be positive")
                spec = self._rules.position_stop(kind, value, position, self.mark_price(position))
                draft = ProtectiveOrder(
                    order_id="",
                    client_order_id="",
                    symbol=symbol,
                    side="sell" if side == "long" else "buy",
                    quantity=None,
                    close_position=True,
                    reduce_only=True,
                    position_side=side if self.hedge_mode else None,
                    attached=True,
                    created_ms=now,
                    updated_ms=now,
                    **spec,
                )
                order = self._rules.prepare_protective(self, check_protective(draft, hedge_mode=self.hedge_mode))
                placed.append(self._book.add(order))
        except Exception:
            self._book.restore(book)
            raise
        self._sync_stop(symbol, side)
        return placed

    def position_stops(self, symbol: str, side: str) -> dict[str, ProtectiveOrder]:
        """The attached stops of a position by kind: "stop_loss", "take_profit", "trailing_stop"."""
        return {
            _STOP_KIND_OF[o.kind]: o for o in self._book.open if o.attached and (o.symbol, o.protects) == (symbol, side)
        }

    def _sync_stop(self, symbol: str, side: str) -> None:
        position = self._positions.get((symbol, side))
        if position is not None:
            stop = self.position_stops(symbol, side).get("stop_loss")
            price = None if stop is None else stop.trigger_price
            if position.stop_loss != price:
                self._positions[(symbol, side)] = dataclasses.replace(position, stop_loss=price)

    # faults and tampering ----------------------------------------------------------------------------------

    def fail(self, kind: str, endpoint: str = "any", times: int | None = None) -> Fault:
        """Make matching requests fail with ``kind`` (``times=None``: until :meth:`clear_faults`)."""
        fault = check_fault(kind, endpoint, times)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        return [dataclasses.replace(f) for f in self._faults]

    def take_fault(self, group: str | None) -> Fault | None:
        for fault in self._faults:
            if fault.endpoint == "any" or fault.endpoint == group:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def tamper(
        self, path: str, transform: Callable[[Any], Any], *, times: int | None = None, method: str | None = None
    ) -> None:
        """Serve ``transform(payload)`` instead of ``payload`` on successful answers of venue ``path``.

        Binance payloads are whole bodies, Bybit payloads the ``result`` object (the envelope is added
        afterwards). Several tamperings of one path apply in the order they were added; a fault wins over
        tampering. ``method`` limits it to one HTTP method.
        """
        if not callable(transform):
            raise ValueError("transform must be callable")
        if not self._rules.has_path(path):
            raise ValueError(f"{self.venue} serves no path {path!r}")
        check_times(times)
        self._tampers.append(Tamper(path, transform, times, method.upper() if method else None))

    def clear_tampering(self) -> None:
        self._tampers.clear()

    @property
    def tampering(self) -> list[Tamper]:
        return [dataclasses.replace(t) for t in self._tampers]

    def apply_tampering(self, method: str, path: str, payload: Any) -> Any:
        for tamper in list(self._tampers):
            if tamper.path != path or tamper.method not in (None, method):
                continue
            if tamper.times is not None:
                tamper.times -= 1
                if tamper.times <= 0:
                    self._tampers.remove(tamper)
            payload = tamper.transform(payload)
        return payload

    # requests and fills ------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._requests)

    def record(self, request: RecordedRequest) -> None:
        self._requests.append(request)

    def request_count(self, endpoint: str | None = None) -> int:
        if endpoint is None or endpoint == "any":
            return len(self._requests)
        if endpoint not in ENDPOINT_GROUPS:
            raise ValueError(f"unknown endpoint group {endpoint!r}; use one of {', '.join(ENDPOINT_GROUPS)}")
        return sum(1 for r in self._requests if r.endpoint == endpoint)

    def requests_since(self, since: float) -> list[RecordedRequest]:
        """Requests received at or after the ``time.time()`` stamp ``since`` (scans back from the newest)."""
        recent = list(itertools.takewhile(lambda r: r.timestamp >= since, reversed(self._requests)))
        return recent[::-1]

    def weight_used(self, since: float | None = None) -> int:
        """Venue weight of the requests this account sent (since the ``time.time()`` stamp ``since``)."""
        return sum(r.weight for r in (self._requests if since is None else self.requests_since(since)))

    def clear_requests(self) -> None:
        self._requests.clear()

    @property
    def orders(self) -> list[EmulatedOrder]:
        """Orders the venue filled, oldest first."""
        return list(self._orders)

    @notifies("ORDER")
    def execute(
        self,
        market: MarketSpec,
        side: str,
        qty: Decimal,
        *,
        position_side: str | None,
        reduce_only: bool,
        client_order_id: str,
        order_id: str | None = None,
    ) -> tuple[EmulatedOrder, Decimal] | None:
        """Fill a market order; returns (order, executed qty) or None when a reduce rule rejects it.

        ``position_side`` is the hedge-mode leg ("long"/"short"); None means one-way mode.
        """
        now = now_ms()
        before = dict(self._positions)
        buy = side == "buy"
        if position_side is None:
            held = self.held(market.id)
            opposite = "short" if buy else "long"
            held_side = opposite
            if reduce_only:
                if held is None or held.side != opposite:
                    return None
                executed = min(qty, held.size)
                price = self.mark_price(held)
                self._reduce(market, held, executed, price, now)
            elif held is not None and held.side == opposite:
                price = self.mark_price(held)
                closing = min(qty, held.size)
                self._reduce(market, held, closing, price, now)
                executed = qty
                if qty > closing:
                    held_side = "long" if buy else "short"
                    self._increase(market, held_side, qty - closing, price, now)
            else:
                held_side = "long" if buy else "short"
                self._drop_position((market.id, opposite))
                price = self._price_for(market, held_side)
                self._increase(market, held_side, qty, price, now)
                executed = qty
        else:
            held_side = position_side
            current = self._positions.get((market.id, position_side))
            if (position_side == "long") != buy:
                if current is None or current.size <= 0:
                    return None
                executed = min(qty, current.size)
                price = self.mark_price(current)
                self._reduce(market, current, executed, price, now)
            else:
                if reduce_only:
                    return None
                price = self._price_for(market, position_side)
                self._increase(market, position_side, qty, price, now)
                executed = qty
        oid = order_id or str(self.next_order_id())
        order = EmulatedOrder(oid, client_order_id, market.id, side, executed, price, reduce_only, held_side, now)
        self._orders.append(order)
        self._record_api_fill(market, order, before)
        return order, executed

    def _price_for(self, market: MarketSpec, side: str) -> Decimal:
        current = self._positions.get((market.id, side))
        return self.mark_price(current) if current is not None else market.price

    @notifies("ORDER")
    def _increase(self, market: MarketSpec, side: str, qty: Decimal, price: Decimal, now: int) -> None:
        current = self._positions.get((market.id, side))
        if current is None or current.size <= 0:
            leverage = current.leverage if current is not None else 10
            self._positions[(market.id, side)] = Position(market.id, side, qty, price, None, leverage, None, now, now)
            return
        size = current.size + qty
        if current.entry_price <= 0:
            entry = price
        elif market.linear:
            entry = (current.entry_price * current.size + price * qty) / size
        else:
            entry = size / (current.size / current.entry_price + qty / price)
        entry = entry.quantize(market.tick_size / 1000, rounding=ROUND_HALF_UP).normalize()
        self._positions[(market.id, side)] = dataclasses.replace(current, size=size, entry_price=entry, updated_ms=now)

    @notifies("ORDER")
    def _reduce(self, market: MarketSpec, position: Position, qty: Decimal, price: Decimal, now: int) -> None:
        direction = 1 if position.side == "long" else -1
        if market.linear:
            realised = (price - position.entry_price) * qty * direction
        elif position.entry_price > 0:
            realised = qty * (1 / position.entry_price - 1 / price) * direction
        else:
            realised = ZERO
        self.balances[market.settle] = self.balances.get(market.settle, ZERO) + realised
        remaining = position.size - qty
        key = (position.symbol, position.side)
        if remaining <= 0:
            self._drop_position(key)
        else:
            self._positions[key] = dataclasses.replace(position, size=remaining, updated_ms=now)
