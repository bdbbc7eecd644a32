"""Binance USDⓈ-M trade/close history: what tells *why* a position vanished, in Binance's own JSON.

Mixed into :class:`~emulator.venues.binance.BinanceApi`. Pages of developers.binance.com (USDⓈ-M Futures) this
follows: "Account Trade List" (``GET /fapi/v1/userTrades``, weight 5: ``symbol`` mandatory, ``orderId``,
``fromId`` not with ``startTime``/``endTime``, at most 7 days between them, last 7 days by default, ``limit``
500 / 1000), "User's Force Orders" (``GET /fapi/v1/forceOrders``, weight 20 with ``symbol`` / 50 without,
``autoCloseType`` LIQUIDATION | ADL, without ``startTime`` the 7 days before ``endTime``, ``limit`` 50 / 100),
"Query Order" (``GET /fapi/v1/order``, 1), "All Orders" (``GET /fapi/v1/allOrders``, 5, ``orderId`` and
after, at most 7 days, ``limit`` 500 / 1000), "Query Algo Order" (``GET /fapi/v1/algoOrder``, 1, ``algoId`` or
``clientAlgoId``), "Query All Algo Orders" (``GET /fapi/v1/allAlgoOrders``, 5), the user-data-stream pages
"Event: Order Update" (special client order ids: ``autoclose-`` liquidation, ``adl_autoclose`` ADL,
``settlement_autoclose-`` settlement for delisting or delivery) and "Event: Algo Order Update" (algo statuses
NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, ...; ``ai`` the actual order id), and the error codes page
(-1023, -1127, -1128, -2013).

How each cause shows:

* API order (cause "order"): a MARKET order with the bot's ``clientOrderId``.
* manual (closed in the app): a MARKET order whose ``clientOrderId`` starts with ``web_``.
* stop_loss / take_profit / trailing_stop: a classic conditional order fills under its own id (``type``
  MARKET or LIMIT, ``origType`` STOP_MARKET, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET, STOP, TAKE_PROFIT); an
  Algo Service order places a new order (new ``orderId``, ``clientOrderId`` = its ``clientAlgoId``) and turns
  ``algoStatus`` FINISHED with ``actualOrderId`` = that order's id, ``actualPrice`` and ``triggerTime``.
* liquidation: LIMIT IOC order ``autoclose-<ms><seq>`` listed by ``forceOrders`` (LIQUIDATION);
  adl: LIMIT GTC order ``adl_autoclose`` listed by ``forceOrders`` (ADL);
  settlement / delivery: LIMIT GTC order ``settlement_autoclose-<ms><seq>``, not in ``forceOrders``.

Every fill is one ``userTrades`` row (``realizedPnl``, ``commission`` and the order's ``orderId``).
"""

from __future__ import annotations

import itertools
import secrets
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emulator.state.account import EmulatedAccount
from emulator.state.common import ZERO, fmt, now_ms, places
from emulator.state.history import WEEK_MS, Fill, value_of
from emulator.state.orders import ProtectiveOrder
from emulator.venues.base import Route, VenueError

if TYPE_CHECKING:
    from emulator.state.markets import MarketSpec

_TRADE_ID_BASE = 5_000_000_000
_FORCED = ("liquidation", "adl", "settlement", "delivery")
_FORCE_TYPES = {"LIQUIDATION": ("liquidation",), "ADL": ("adl",)}
_FORCE_KEYS = (
    "orderId",
    "symbol",
    "status",
    "clientOrderId",
    "price",
    "avgPrice",
    "origQty",
    "executedQty",
    "cumQuote",
    "timeInForce",
    "type",
    "reduceOnly",
    "closePosition",
    "side",
    "positionSide",
    "stopPrice",
    "workingType",
    "origType",
    "time",
    "updateTime",
)
_WORKING_TYPES = {"last": "CONTRACT_PRICE", "mark": "MARK_PRICE", "index": "CONTRACT_PRICE"}
_ID_CHARS = string.ascii_letters + string.digits


def _by_symbol(light: int, heavy: int) -> Callable[[dict[str, Any]], int]:
    return lambda params: light if params.get("symbol") else heavy


def _int_param(params: dict[str, Any], name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(str(raw))
    except ValueError:
        message = f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        raise VenueError(400, -1100, message) from None


def _limit(params: dict[str, Any], default: int, cap: int) -> int:
    limit = _int_param(params, "limit")
    if limit is None:
        return default
    if limit < 1:
        raise VenueError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return min(limit, cap)


def _week(params: dict[str, Any]) -> tuple[int, int, bool]:
    """(start, end, start given) of a query limited to 7 days, as userTrades / allOrders / allAlgoOrders take."""
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    now = now_ms()
    if start is not None and end is not None:
        if start > end:
            raise VenueError(400, -1023, "Start time is greater than end time.")
        if end - start > WEEK_MS:
            raise VenueError(400, -1127, "More than 168 hours between startTime and endTime.")
        return start, end, True
    if start is not None:
        return start, start + WEEK_MS, True
    if end is not None:
        return end - WEEK_MS, end, False
    return now - WEEK_MS, now, False


def _pick(items: list[Any], limit: int, from_start: bool) -> list[Any]:
    """The first ``limit`` items when the query names a start, else the most recent ``limit``; oldest first."""
    return items[:limit] if from_start else items[-limit:]


class BinanceHistory:
    """History endpoints and history rules of :class:`~emulator.venues.binance.BinanceApi`."""

    if TYPE_CHECKING:
        markets: dict[str, MarketSpec]

        def _market(self, symbol: str | None) -> MarketSpec: ...

        def _leg(self, account: EmulatedAccount, side: str | None) -> str: ...

        def _order_row(
            self, account: EmulatedAccount, order: ProtectiveOrder, status: str = "NEW"
        ) -> dict[str, Any]: ...

        def _algo_row(self, account: EmulatedAccount, order: ProtectiveOrder) -> dict[str, Any]: ...

        @staticmethod
        def _book_row(
            market: MarketSpec, order_id: int, client_id: str, status: str, kind: str, side: str, leg: str
        ) -> dict[str, Any]: ...

    _autoclose_seq = itertools.count(1)

    def history_routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("GET", "/fapi/v1/userTrades"): Route("history", True, self.user_trades, 5),
            ("GET", "/fapi/v1/forceOrders"): Route("history", True, self.force_orders, _by_symbol(20, 50)),
            ("GET", "/fapi/v1/order"): Route("history", True, self.query_order, 1),
            ("GET", "/fapi/v1/allOrders"): Route("history", True, self.all_orders, 5),
            ("GET", "/fapi/v1/algoOrder"): Route("history", True, self.query_algo_order, 1),
            ("GET", "/fapi/v1/allAlgoOrders"): Route("history", True, self.all_algo_orders, 5),
        }

    # history rules (emulator.state.history.HistoryRules) ---------------------------------------------------

    def trade_id(self, account: EmulatedAccount, number: int) -> str:
        return str(_TRADE_ID_BASE + number)

    def history_ids(
        self, account: EmulatedAccount, *, cause: str, trigger: ProtectiveOrder | None, at_ms: int
    ) -> tuple[str, str]:
        if trigger is not None:
            if trigger.service == "classic":
                return trigger.order_id, trigger.client_order_id
            return str(account.next_order_id()), trigger.client_order_id  # the order the Algo Service placed
        order_id = str(account.next_order_id())
        seq = next(self._autoclose_seq) % 1_000_000
        if cause == "liquidation":
            return order_id, f"autoclose-{at_ms}{seq:06d}"
        if cause == "adl":
            return order_id, "adl_autoclose"
        if cause in ("settlement", "delivery"):
            return order_id, f"settlement_autoclose-{at_ms}{seq:06d}"
        return order_id, "web_" + "".join(secrets.choice(_ID_CHARS) for _ in range(20))

    # rows --------------------------------------------------------------------------------------------------

    def _trade_row(self, account: EmulatedAccount, fill: Fill) -> dict[str, Any]:
        market = self.markets[fill.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        row: dict[str, Any] = {"buyer": fill.side == "buy", "commission": fmt(fill.fee, 8)}
        row.update(commissionAsset=fill.fee_asset, id=int(fill.trade_id), maker=False, orderId=int(fill.order_id))
        row.update(price=fmt(fill.price, pp), qty=fmt(fill.qty, qp))
        row.update(quoteQty=fmt(value_of(market, fill.qty, fill.price), 8), realizedPnl=fmt(fill.realized_pnl, 8))
        row.update(side=fill.side.upper(), positionSide=self._fill_leg(fill), symbol=fill.symbol, time=fill.time_ms)
        return row

    @staticmethod
    def _fill_leg(fill: Fill) -> str:
        return "BOTH" if fill.leg is None else fill.leg.upper()

    def _fill_order_row(self, account: EmulatedAccount, fill: Fill) -> dict[str, Any]:
        """The order behind a fill, as Query Order / All Orders print it (status FILLED)."""
        market = self.markets[fill.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        trigger = fill.trigger
        kind = orig = "MARKET"
        time_in_force = "GTC"
        if fill.cause in _FORCED:
            kind = orig = "LIMIT"
            time_in_force = "IOC" if fill.cause == "liquidation" else "GTC"
        elif trigger is not None:
            kind, orig = ("MARKET" if trigger.is_market else "LIMIT"), trigger.type.upper()
        leg = self._fill_leg(fill)
        row = self._book_row(market, int(fill.order_id), fill.client_order_id, "FILLED", kind, fill.side.upper(), leg)
        row.update(origType=orig, timeInForce=time_in_force)
        row.update(price=fmt(fill.order_price if kind == "LIMIT" else ZERO, pp), avgPrice=fmt(fill.price, pp))
        row.update(origQty=fmt(fill.order_qty, qp), executedQty=fmt(fill.qty, qp))
        row.update(cumQuote=fmt(value_of(market, fill.qty, fill.price), 8))
        row.update(reduceOnly=fill.reduce_only and fill.cause not in _FORCED, closePosition=fill.close_position)
        row.update(time=fill.time_ms, updateTime=fill.time_ms)
        if trigger is not None:
            row.update(stopPrice=fmt(trigger.trigger_price or ZERO, pp), workingType=_WORKING_TYPES[trigger.trigger_by])
            row["priceProtect"] = trigger.attached
            if trigger.service == "classic":  # the conditional order itself filled: it was placed earlier
                row["time"] = min(trigger.created_ms, fill.time_ms)
            if trigger.kind == "trailing":
                row.update(activatePrice=fmt(trigger.trigger_price or ZERO, pp))
                row.update(priceRate=fmt(trigger.callback_rate or ZERO))
        return row

    def _orders_of(self, account: EmulatedAccount, symbol: str) -> list[tuple[int, int, dict[str, Any]]]:
        """(orderId, time, row) of every classic-book order of ``symbol``: filled ones and conditional ones."""
        rows = [(int(f.order_id), f.time_ms, self._fill_order_row(account, f)) for f in account.history(symbol)]
        resting = [(o, "NEW") for o in account.protective_orders] + [
            (o, "CANCELED") for o in account.closed_protective_orders if o.status == "cancelled"
        ]
        for order, status in resting:
            if order.service == "classic" and order.symbol == symbol:
                rows.append((int(order.order_id), order.created_ms, self._order_row(account, order, status)))
        return sorted(rows, key=lambda item: (item[1], item[0]))

    # endpoints ---------------------------------------------------------------------------------------------

    def user_trades(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The account's fills in ``symbol`` (mandatory), oldest first."""
        market = self._market(params.get("symbol"))
        limit = _limit(params, 500, 1000)
        from_id, order_id = _int_param(params, "fromId"), _int_param(params, "orderId")
        fills = account.history(market.id)
        if order_id is not None:
            fills = [f for f in fills if f.order_id == str(order_id)]
        if from_id is not None:
            if params.get("startTime") or params.get("endTime"):
                raise VenueError(400, -1128, "Combination of optional parameters invalid.")
            chosen = sorted((f for f in fills if int(f.trade_id) >= from_id), key=lambda f: int(f.trade_id))[:limit]
        elif order_id is not None:
            chosen = fills[:limit]
        else:
            start, end, from_start = _week(params)
            chosen = _pick([f for f in fills if start <= f.time_ms <= end], limit, from_start)
        return [self._trade_row(account, f) for f in chosen]

    def force_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Liquidation and ADL orders (``autoCloseType`` picks one), oldest first."""
        market = self._market(params["symbol"]) if params.get("symbol") else None
        close_type = params.get("autoCloseType") or None
        if close_type is not None and close_type not in _FORCE_TYPES:
            raise VenueError(400, -1130, "Data sent for parameter 'autoCloseType' is not valid.")
        causes = _FORCE_TYPES[close_type] if close_type else ("liquidation", "adl")
        limit = _limit(params, 50, 100)
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if start is not None and end is not None and start > end:
            raise VenueError(400, -1023, "Start time is greater than end time.")
        if start is None:
            end = now_ms() if end is None else end
            start = end - WEEK_MS
        fills = account.history(None if market is None else market.id, cause=causes, since_ms=start, until_ms=end)
        rows = []
        for fill in _pick(fills, limit, params.get("startTime") not in (None, "")):
            row = self._fill_order_row(account, fill)
            rows.append({key: row[key] for key in _FORCE_KEYS})
        return rows

    def query_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        market = self._market(params.get("symbol"))
        order_id, client_id = _int_param(params, "orderId"), params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            message = "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            raise VenueError(400, -1102, message)
        for oid, _, row in reversed(self._orders_of(account, market.id)):
            if (order_id is not None and oid == order_id) or (order_id is None and row["clientOrderId"] == client_id):
                return row
        raise VenueError(400, -2013, "Order does not exist.")

    def all_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        market = self._market(params.get("symbol"))
        limit = _limit(params, 500, 1000)
        order_id = _int_param(params, "orderId")
        orders = self._orders_of(account, market.id)
        if order_id is not None and not (params.get("startTime") or params.get("endTime")):
            return [row for _, _, row in sorted(o for o in orders if o[0] >= order_id)[:limit]]
        start, end, from_start = _week(params)
        chosen = [o for o in orders if start <= o[1] <= end and (order_id is None or o[0] >= order_id)]
        return [row for _, _, row in _pick(chosen, limit, from_start)]

    def _algo_orders(self, account: EmulatedAccount) -> list[ProtectiveOrder]:
        orders = account.protective_orders + account.closed_protective_orders
        return [o for o in orders if o.service == "algo"]

    def query_algo_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        lowered = {key.lower(): value for key, value in params.items()}
        algo_id, client_id = lowered.get("algoid") or None, lowered.get("clientalgoid") or None
        if algo_id is None and client_id is None:
            raise VenueError(400, -1102, "Param 'algoId' or 'clientAlgoId' must be sent, but both were empty/null!")
        for order in reversed(self._algo_orders(account)):
            if (algo_id is not None and order.order_id == str(algo_id)) or (
                algo_id is None and order.client_order_id == client_id
            ):
                return self._algo_row(account, order)
        raise VenueError(400, -2013, "Order does not exist.")

    def all_algo_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        market = self._market(params.get("symbol"))
        limit = _limit(params, 500, 1000)
        algo_id = _int_param(params, "algoId")
        page = _int_param(params, "page") or 1
        if page < 1:
            raise VenueError(400, -1130, "Data sent for parameter 'page' is not valid.")
        orders = sorted(
            (o for o in self._algo_orders(account) if o.symbol == market.id), key=lambda o: (o.created_ms, o.order_id)
        )
        if algo_id is not None:
            chosen = sorted((o for o in orders if int(o.order_id) >= algo_id), key=lambda o: int(o.order_id))
            chosen = chosen[(page - 1) * limit : page * limit]
        else:
            start, end, from_start = _week(params)
            inside = [o for o in orders if start <= o.created_ms <= end]
            chosen = inside[(page - 1) * limit : page * limit] if from_start or page > 1 else inside[-limit:]
        return [self._algo_row(account, o) for o in chosen]

    def algo_status(self, account: EmulatedAccount, order: ProtectiveOrder) -> dict[str, Any]:
        """``algoStatus``, ``actualOrderId``, ``actualPrice`` and ``triggerTime`` of an algo order."""
        if order.status == "cancelled":
            return {"algoStatus": "CANCELED", "actualOrderId": "", "actualPrice": "0.00000", "triggerTime": 0}
        fill = account.fill_history.by_trigger(order.order_id) if order.status == "triggered" else None
        if fill is None:
            return {"algoStatus": "NEW", "actualOrderId": "", "actualPrice": "0.00000", "triggerTime": 0}
        pp = places(self.markets[order.symbol].tick_size)
        return {
            "algoStatus": "FINISHED",
            "actualOrderId": fill.order_id,
            "actualPrice": fmt(fill.price, pp),
            "triggerTime": fill.time_ms,
        }
