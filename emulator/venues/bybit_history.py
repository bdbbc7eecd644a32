"""Bybit v5 trade/close history: what tells *why* a position vanished, in Bybit's own JSON.

Mixed into :class:`~emulator.venues.bybit.BybitApi`. Pages of bybit-exchange.github.io/docs/v5 this follows:
"Get Trade History" (``GET /v5/execution/list``: ``category`` required; ``symbol``, ``orderId`` >
``orderLinkId`` > ``symbol`` > ``baseCoin`` priority, ``settleCoin``, ``execType``; without times the last 7
days, only ``startTime`` the 7 days after it, only ``endTime`` the 7 days before it, both at most 7 days apart;
``limit`` 1..100, default 50; ``cursor`` / ``nextPageCursor``; newest ``execTime`` first), "Get Closed PnL"
(``GET /v5/position/closed-pnl``: same time and paging rules, one record per closing order, newest first;
its ``execType`` is one of Trade, BustTrade, SessionSettlePnL, Settle, MovePosition), the "Enums" page
(execType, createType, stopOrderType) and "Rate Limit" (both endpoints 10 requests per second per UID).

How each cause shows (``execType`` / ``createType`` / ``stopOrderType``):

* API order: Trade / CreateByUser / UNKNOWN; manual close in the app: Trade / CreateByClosing / UNKNOWN.
* stop_loss / take_profit / trailing_stop: the conditional order fills under its own ``orderId`` and
  ``orderLinkId``: Trade / CreateByStopLoss, CreateByTakeProfit, CreateByTrailingStop, CreateByPartialStopLoss,
  CreateByPartialTakeProfit (CreateByUser for ``Stop`` / ``tpslOrder`` orders) / its ``stopOrderType``.
* liquidation of the whole position: BustTrade / CreateByTakeOver_PassThrough (at the bankruptcy price by
  default); of part of it (laddered): Trade / CreateByLiq.
* adl: AdlTrade / CreateByAdl_PassThrough; delivery: Delivery / CreateBySettle; settlement: Settle /
  CreateBySettle.

closed-pnl prints only its documented ``execType`` values: AdlTrade shows as Trade and Delivery as Settle there
(the execution list tells them apart).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from emulator.state.account import EmulatedAccount
from emulator.state.common import ZERO, fmt, now_ms, places
from emulator.state.history import WEEK_MS, Fill, value_of
from emulator.state.orders import ProtectiveOrder
from emulator.venues.base import Route, VenueError

if TYPE_CHECKING:
    from emulator.state.markets import MarketSpec

EXEC_TYPES = (
    "Trade",
    "AdlTrade",
    "Funding",
    "BustTrade",
    "Delivery",
    "Settle",
    "BlockTrade",
    "MovePosition",
    "FutureSpread",
)
_CLOSED_PNL_EXEC_TYPE = {"AdlTrade": "Trade", "Delivery": "Settle"}
_PAGE_MAX = 100


def create_type(stop_order_type: str) -> str:
    """``createType`` of a conditional order: the user's own for Stop / tpslOrder, else its position TP/SL kind."""
    return "CreateByUser" if stop_order_type in ("Stop", "tpslOrder") else f"CreateBy{stop_order_type}"


def _money(value: Decimal) -> str:
    return fmt(value.quantize(Decimal("1e-8")))


class BybitHistory:
    """History endpoints and history rules of :class:`~emulator.venues.bybit.BybitApi`."""

    if TYPE_CHECKING:
        markets: dict[str, MarketSpec]

        @staticmethod
        def _category(params: dict[str, Any], allowed: tuple[str, ...] = ...) -> str: ...

        @staticmethod
        def _limit(params: dict[str, Any], default: int, cap: int) -> int: ...

        @staticmethod
        def _page(items: list[Any], params: dict[str, Any], limit: int, scope: str) -> tuple[list[Any], str]: ...

        def _market(self, symbol: str, category: str) -> MarketSpec: ...

    def history_routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("GET", "/v5/execution/list"): Route("history", True, self.execution_list),
            ("GET", "/v5/position/closed-pnl"): Route("history", True, self.closed_pnl),
        }

    # history rules (emulator.state.history.HistoryRules) ---------------------------------------------------

    def trade_id(self, account: EmulatedAccount, number: int) -> str:
        return str(uuid.uuid4())

    def history_ids(
        self, account: EmulatedAccount, *, cause: str, trigger: ProtectiveOrder | None, at_ms: int
    ) -> tuple[str, str]:
        if trigger is not None:  # a conditional order keeps its ids when it triggers
            return trigger.order_id, trigger.client_order_id
        return str(uuid.uuid4()), ""

    # helpers -----------------------------------------------------------------------------------------------

    @staticmethod
    def _window(params: dict[str, Any]) -> tuple[int, int]:
        def read(name: str) -> int | None:
            raw = params.get(name)
            if raw in (None, ""):
                return None
            try:
                return int(str(raw))
            except ValueError:
                raise VenueError(200, 10001, f"params error: {name} invalid") from None

        start, end = read("startTime"), read("endTime")
        if start is not None and end is not None:
            if start > end:
                raise VenueError(200, 10001, "params error: startTime must be less than endTime")
            if end - start > WEEK_MS:
                raise VenueError(
                    200, 10001, "params error: the time range between startTime and endTime exceeds 7 days"
                )
            return start, end
        if start is not None:
            return start, start + WEEK_MS
        if end is not None:
            return end - WEEK_MS, end
        now = now_ms()
        return now - WEEK_MS, now

    @staticmethod
    def exec_kind(fill: Fill) -> tuple[str, str, str, str]:
        """(execType, createType, stopOrderType, orderType) of a fill."""
        trigger = fill.trigger
        if trigger is not None:
            stop_type = trigger.stop_order_type or "Stop"
            return "Trade", create_type(stop_type), stop_type, "Market" if trigger.is_market else "Limit"
        if fill.cause == "liquidation":
            if fill.remaining > 0:
                return "Trade", "CreateByLiq", "UNKNOWN", "Limit"
            return "BustTrade", "CreateByTakeOver_PassThrough", "UNKNOWN", "Limit"
        kinds = {
            "order": ("Trade", "CreateByUser", "UNKNOWN", "Market"),
            "manual": ("Trade", "CreateByClosing", "UNKNOWN", "Market"),
            "adl": ("AdlTrade", "CreateByAdl_PassThrough", "UNKNOWN", "Limit"),
            "settlement": ("Settle", "CreateBySettle", "UNKNOWN", "Market"),
            "delivery": ("Delivery", "CreateBySettle", "UNKNOWN", "Market"),
        }
        return kinds[fill.cause]

    def _fills(self, account: EmulatedAccount, category: str, start: int, end: int) -> list[Fill]:
        fills = [
            f
            for f in account.history(since_ms=start, until_ms=end)
            if f.symbol in self.markets and self.markets[f.symbol].category == category
        ]
        fills.sort(key=lambda f: (f.time_ms, f.seq), reverse=True)  # newest first
        return fills

    def _execution_row(self, account: EmulatedAccount, fill: Fill) -> dict[str, Any]:
        market = self.markets[fill.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        exec_type, create, stop_type, order_type = self.exec_kind(fill)
        row: dict[str, Any] = {"symbol": fill.symbol, "orderType": order_type, "underlyingPrice": ""}
        row.update(orderLinkId=fill.client_order_id, side="Buy" if fill.side == "buy" else "Sell", indexPrice="")
        row.update(orderId=fill.order_id, stopOrderType=stop_type, leavesQty="0", execTime=str(fill.time_ms))
        row.update(feeCurrency="", isMaker=False, execFee=_money(fill.fee), feeRate=fmt(account.fee_rate))
        row.update(execId=fill.trade_id, tradeIv="", blockTradeId="", markPrice=fmt(fill.mark_price, pp))
        row.update(execPrice=fmt(fill.price, pp), markIv="", orderQty=fmt(fill.order_qty, qp))
        row.update(orderPrice=fmt(fill.order_price, pp), execValue=_money(value_of(market, fill.qty, fill.price)))
        row.update(execType=exec_type, execQty=fmt(fill.qty, qp), createType=create)
        row.update(closedSize=fmt(fill.closed_size, qp) if fill.closes else "0", extraFees="", seq=fill.seq)
        return row

    def _closed_pnl_row(self, account: EmulatedAccount, fill: Fill) -> dict[str, Any]:
        market = self.markets[fill.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        exec_type, _, _, order_type = self.exec_kind(fill)
        entry_value = value_of(market, fill.closed_size, fill.entry_price) if fill.entry_price > 0 else ZERO
        exit_value = value_of(market, fill.closed_size, fill.price)
        open_fee = entry_value * account.fee_rate
        closed_pnl = fill.realized_pnl - open_fee - fill.fee
        row: dict[str, Any] = {"symbol": fill.symbol, "orderType": order_type, "leverage": str(fill.leverage)}
        row.update(updatedTime=str(fill.time_ms), side="Buy" if fill.side == "buy" else "Sell", orderId=fill.order_id)
        row.update(closedPnl=_money(closed_pnl), openFee=_money(open_fee), closeFee=_money(fill.fee))
        row.update(avgEntryPrice=fmt(fill.entry_price), qty=fmt(fill.order_qty, qp), cumEntryValue=_money(entry_value))
        row.update(createdTime=str(fill.time_ms), orderPrice=fmt(fill.order_price, pp))
        row.update(closedSize=fmt(fill.closed_size, qp), avgExitPrice=fmt(fill.price))
        row.update(execType=_CLOSED_PNL_EXEC_TYPE.get(exec_type, exec_type), fillCount="1")
        row["cumExitValue"] = _money(exit_value)
        return row

    # endpoints ---------------------------------------------------------------------------------------------

    def execution_list(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        exec_type = params.get("execType") or None
        if exec_type is not None and exec_type not in EXEC_TYPES:
            raise VenueError(200, 10001, "params error: execType invalid")
        limit = self._limit(params, 50, _PAGE_MAX)
        start, end = self._window(params)
        order_id, link_id = params.get("orderId") or None, params.get("orderLinkId") or None
        symbol, base, settle = params.get("symbol") or None, params.get("baseCoin") or None, params.get("settleCoin")
        if symbol is not None and category in ("linear", "inverse") and not (order_id or link_id):
            self._market(symbol, category)
        fills = self._fills(account, category, start, end)
        if order_id is not None:  # orderId > orderLinkId > symbol > baseCoin: the first one given decides
            fills = [f for f in fills if f.order_id == order_id]
        elif link_id is not None:
            fills = [f for f in fills if f.client_order_id == link_id]
        else:
            fills = [
                f
                for f in fills
                if (symbol is None or f.symbol == symbol)
                and (base is None or self.markets[f.symbol].base == base)
                and (not settle or self.markets[f.symbol].settle == settle)
            ]
        if exec_type is not None:
            fills = [f for f in fills if self.exec_kind(f)[0] == exec_type]
        scope = "executions/" + "/".join(
            str(params.get(key) or "")
            for key in ("category", "symbol", "baseCoin", "settleCoin", "orderId", "orderLinkId", "execType")
        )
        scope += f"/{params.get('startTime') or ''}/{params.get('endTime') or ''}"
        chunk, cursor = self._page(fills, params, limit, scope)
        return {
            "nextPageCursor": cursor,
            "category": category,
            "list": [self._execution_row(account, f) for f in chunk],
        }

    def closed_pnl(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "option"))
        symbol = params.get("symbol") or None
        limit = self._limit(params, 50, _PAGE_MAX)
        start, end = self._window(params)
        if symbol is not None and category != "option":
            self._market(symbol, category)
        fills = [f for f in self._fills(account, category, start, end) if f.closes and symbol in (None, f.symbol)]
        scope = f"closed-pnl/{category}/{symbol or ''}/{params.get('startTime') or ''}/{params.get('endTime') or ''}"
        chunk, cursor = self._page(fills, params, limit, scope)
        return {
            "nextPageCursor": cursor,
            "category": category,
            "list": [self._closed_pnl_row(account, f) for f in chunk],
        }
