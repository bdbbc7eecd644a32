"""Bybit v5 (``/v5``, unified account) as the venue answers REST requests, for the real ccxt ``bybit``.

Every answer is a ``{"retCode", "retMsg", "result", "retExtInfo", "time"}`` envelope, errors mostly with HTTP
200; ``X-BAPI-SIGN`` = HMAC-SHA256 of timestamp + key + recv window + (query string | body).

Shapes and rules follow bybit-exchange.github.io/docs/v5: "Get Position Info" (``/v5/position/list``),
"Get Open & Closed Orders" (``/v5/order/realtime``: ``limit`` 1..50, default 20; linear needs ``symbol``,
``baseCoin`` or ``settleCoin``; ``orderFilter`` absent = all kinds; ``openOnly`` 0 open / 1 recent closed;
newest first; a triggered conditional order shows "Filled"), "Cancel Order" (``/v5/order/cancel``), enum
"stopOrderType", and "Rate Limit": per IP at most 600 requests in any 5 s (HTTP 403 "access too frequent",
lifted after about 10 minutes), per UID and endpoint ``X-Bapi-Limit`` / ``X-Bapi-Limit-Status`` (remaining
this second) / ``X-Bapi-Limit-Reset-Timestamp``.
Bybit counts requests, so every request weighs 1. The trade/close history endpoints (group "history":
``/v5/execution/list``, ``/v5/position/closed-pnl``) are in ``emulator/venues/bybit_history.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import unquote

from aiohttp import web

from emulator.state.account import EmulatedAccount
from emulator.state.common import ZERO, fmt, now_ms, places
from emulator.state.limits import Verdict
from emulator.state.markets import MarketSpec, catalogue, maint_ratio
from emulator.state.orders import ProtectiveOrder
from emulator.state.records import Position
from emulator.venues.base import Route, VenueApi, VenueError, check_steps, json_response, page, signature_ok
from emulator.venues.bybit_history import BybitHistory, create_type

_POSITION_PAGE_MAX = 200
_INSTRUMENTS_PAGE_MAX = 1000
_ORDERS_PAGE_MAX = 50
_CONDITIONAL = ("Stop", "StopLoss", "TakeProfit", "TrailingStop", "PartialStopLoss", "PartialTakeProfit")
_ORDER_FILTERS = ("Order", "StopOrder", "tpslOrder", "OcoOrder", "BidirectionalTpslOrder")
_PLACEABLE = ("Stop", "PartialStopLoss", "PartialTakeProfit", "tpslOrder")  # the rest come from positions
_POSITION_STOP_TYPES = {"stop_loss": "StopLoss", "take_profit": "TakeProfit", "trailing_stop": "TrailingStop"}
_TRIGGER_BY = {"last": "LastPrice", "mark": "MarkPrice", "index": "IndexPrice"}
_ENDPOINT_LIMITS = {  # per UID per second; others 50
    "/v5/order/create": 10,
    "/v5/order/cancel": 10,
    "/v5/execution/list": 10,
    "/v5/position/closed-pnl": 10,
}


class BybitApi(BybitHistory, VenueApi):
    name = "bybit"
    exchange_id = "bybit"
    aliases = ("bybit",)
    default_balances: ClassVar[Mapping[str, Decimal]] = {
        "USDT": Decimal(10000),
        "USDC": Decimal(10000),
        "BTC": Decimal(1),
        "ETH": Decimal(10),
        "XRP": Decimal(10000),
    }
    ip_window_s = 5.0
    ip_limit = (600, 1, 600.0)
    catalogue = catalogue(
        [
            ("BTCUSDT", "65000", "0.10", "0.001", "1190", "500", "5", 100),
            ("ETHUSDT", "3500", "0.01", "0.01", "7240", "3620", "5", 100),
            ("SOLUSDT", "150", "0.010", "0.1", "79770", "39885", "5", 100),
            ("XRPUSDT", "0.6", "0.0001", "1", "2470000", "1235000", "5", 75),
            ("DOGEUSDT", "0.15", "0.00001", "1", "12236000", "6118000", "5", 75),
            ("AVLUSDT", "0.25", "0.0001", "1", "1500000", "300000", "5", 25, {"onboard_ms": 1741072800000}),
            ("1000PEPEUSDT", "0.0125", "0.0000001", "100", "1300000000", "650000000", "5", 50),
            ("BTCPERP", "65000", "0.5", "0.001", "500", "100", "1", 100),
            ("ETHPERP", "3500", "0.05", "0.01", "5000", "1000", "1", 100),
            ("SOLPERP", "150", "0.01", "0.1", "50000", "10000", "1", 50),
            (
                "BTC-26DEC26",
                *("67000", "0.5", "0.001", "500", "100", "1", 50),
                {
                    **{"base": "BTC", "quote": "USDC", "settle": "USDC", "category": "linear"},
                    **{"contract_type": "future", "delivery_ms": 1798272000000, "onboard_ms": 1766736000000},
                },
            ),
            ("BTCUSD", "65000", "0.50", "1", "1000000", "300000", "0", 100),
            ("ETHUSD", "3500", "0.05", "1", "1000000", "300000", "0", 50),
            ("XRPUSD", "0.6", "0.0001", "1", "1000000", "300000", "0", 50),
        ]
    )

    def __init__(self, emulator: Any) -> None:
        super().__init__(emulator)
        self._instrument_cache: dict[str, tuple[int, list[dict[str, Any]]]] = {}

    def build_routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("GET", "/v5/market/time"): Route("markets", False, self.server_time),
            ("GET", "/v5/market/instruments-info"): Route("markets", False, self.instruments_info),
            ("GET", "/v5/position/list"): Route("positions", True, self.position_list),
            ("POST", "/v5/order/create"): Route("orders", True, self.create_order),
            ("GET", "/v5/order/realtime"): Route("open_orders", True, self.open_orders),
            ("POST", "/v5/order/cancel"): Route("orders", True, self.cancel_order),
            ("GET", "/v5/account/wallet-balance"): Route("account", True, self.wallet_balance),
            ("GET", "/v5/account/info"): Route("account", True, self.account_info),
            ("GET", "/v5/user/query-api"): Route("account", True, self.query_api),
            **self.history_routes(),
        }

    def group_of(self, path: str) -> str | None:
        prefixes = {"/v5/execution/": "history", "/v5/position/closed-pnl": "history", "/v5/market/": "markets"}
        prefixes.update({"/v5/position/": "positions", "/v5/order/realtime": "open_orders", "/v5/order/": "orders"})
        prefixes.update({"/v5/account/": "account", "/v5/user/": "account"})
        return next((group for prefix, group in prefixes.items() if path.startswith(prefix)), None)

    def parse_params(self, request: web.Request, body: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                params.update(decoded)
            else:
                params["__invalid_body__"] = body
        return params

    # responses ---------------------------------------------------------------------------------------------

    @staticmethod
    def envelope(code: int, message: str, result: Any) -> dict[str, Any]:
        return {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": now_ms()}

    def ok(self, payload: Any) -> web.Response:
        return json_response(self.envelope(0, "OK", payload))

    def error(self, exc: VenueError) -> web.Response:
        return json_response(self.envelope(exc.code, exc.message, {}), status=exc.status)

    def not_found(self) -> web.Response:
        return web.Response(status=404, text="404 page not found", content_type="text/plain")

    def rate_headers(self, account: EmulatedAccount, path: str, route: Route | None) -> dict[str, str]:
        if route is None or not route.private:
            return {}
        limit = _ENDPOINT_LIMITS.get(path, 50)
        used = sum(1 for r in account.requests_since(time.time() - 1) if r.path == path)
        return {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(max(limit - used, 0)),
            "X-Bapi-Limit-Reset-Timestamp": str(now_ms()),
        }

    def refused(self, verdict: Verdict, request: web.Request) -> web.Response:
        return web.Response(status=403, text="access too frequent", content_type="text/plain")

    def fault_response(self, kind: str, request: web.Request) -> web.Response:
        if kind == "http_500":
            page_text = (
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
                "Gateway</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
            )
            return web.Response(status=502, text=page_text, content_type="text/html")
        if kind == "rate_limit":
            return json_response(self.envelope(10006, "Too many visits!", {}))
        if kind == "empty_body":
            return web.Response(status=200, body=b"", content_type="application/json")
        if kind == "bad_key":
            return json_response(self.envelope(10003, "API key is invalid.", {}))
        if kind == "garbage_json":
            return web.Response(status=200, body=b'{"retCode":0,"result":{"list":[', content_type="application/json")
        if kind == "no_success_marker":
            return json_response({"retMsg": "OK", "result": {"list": []}})
        raise ValueError(kind)

    # authentication --------------------------------------------------------------------------------------

    def authenticate(self, account: EmulatedAccount, request: web.Request, body: str, params: dict[str, Any]) -> None:
        key = request.headers.get("X-BAPI-API-KEY", "")
        if not key or not hmac.compare_digest(key, account.api_key):
            raise VenueError(200, 10003, "API key is invalid.")
        stamp_text = request.headers.get("X-BAPI-TIMESTAMP", "")
        recv_text = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        signature = request.headers.get("X-BAPI-SIGN", "")
        try:
            stamp, recv_window = int(stamp_text), int(recv_text)
        except ValueError:
            message = f"empty value: apiTimestamp[{stamp_text}] apiKey[{key}] apiSignature[{signature}]"
            raise VenueError(200, 10001, message) from None
        now = now_ms()
        if not now - recv_window <= stamp < now + 1000:
            message = (
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{stamp}],server_timestamp[{now}],recv_window[{recv_window}]"
            )
            raise VenueError(200, 10002, message)
        prefix = f"{stamp_text}{key}{recv_text}"
        if request.method == "GET":
            raw = request.rel_url.raw_query_string
            payloads: tuple[str, ...] = (prefix + raw, prefix + unquote(raw))
        else:
            payloads = (prefix + body,)
        if not signature or not signature_ok(account.secret, payloads, signature):
            raise VenueError(200, 10004, f"error sign! origin_string[{payloads[0]}]")
        if "__invalid_body__" in params:
            raise VenueError(200, 10001, "Request parameter error.")

    # request helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _category(params: dict[str, Any], allowed: tuple[str, ...] = ("linear", "inverse")) -> str:
        category = params.get("category")
        if not category:
            raise VenueError(200, 10001, "params error: Category is invalid")
        if category not in allowed:
            raise VenueError(200, 10001, "Illegal category")
        return str(category)

    @staticmethod
    def _limit(params: dict[str, Any], default: int, cap: int) -> int:
        raw = params.get("limit")
        if raw in (None, ""):
            return min(default, cap)
        try:
            limit = int(raw)
        except (TypeError, ValueError):
            raise VenueError(200, 10001, "params error: limit invalid") from None
        if limit < 1:
            raise VenueError(200, 10001, "params error: limit invalid")
        return min(limit, cap)

    @staticmethod
    def _page(items: list[Any], params: dict[str, Any], limit: int, scope: str) -> tuple[list[Any], str]:
        try:
            return page(items, str(params.get("cursor") or ""), limit, scope)
        except ValueError:
            raise VenueError(200, 10001, "params error: cursor invalid") from None

    def _market(self, symbol: str, category: str) -> MarketSpec:
        market = self.markets.get(symbol)
        if market is None or market.category != category:
            raise VenueError(200, 10001, "Not supported symbols")
        return market

    # markets -----------------------------------------------------------------------------------------------

    def server_time(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        now_ns = time.time_ns()
        return {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}

    def _instruments(self, category: str) -> list[dict[str, Any]]:
        version = self.emu.market_version(self.name)
        cached = self._instrument_cache.get(category)
        if cached is None or cached[0] != version:
            rows = [self._instrument(m) for m in self.markets.values() if m.category == category]
            cached = self._instrument_cache[category] = (version, rows)
        return cached[1]

    @staticmethod
    def _instrument(m: MarketSpec) -> dict[str, Any]:
        pp, qp = places(m.tick_size), places(m.step_size)
        perpetual = m.contract_type == "perpetual"
        tick = fmt(m.tick_size, pp)
        lot = {"maxOrderQty": fmt(m.max_qty, qp), "minOrderQty": fmt(m.min_qty, qp), "qtyStep": fmt(m.step_size, qp)}
        lot.update(postOnlyMaxOrderQty=fmt(m.max_qty, qp), maxMktOrderQty=fmt(m.market_max_qty, qp))
        if m.linear:
            lot["minNotionalValue"] = fmt(m.min_notional)
        row: dict[str, Any] = {"symbol": m.id}
        row["contractType"] = ("Linear" if m.linear else "Inverse") + ("Perpetual" if perpetual else "Futures")
        row.update(status="Trading", baseCoin=m.base, quoteCoin=m.quote, launchTime=str(m.onboard_ms))
        row.update(deliveryTime="0" if perpetual else str(m.delivery_ms))
        row.update(deliveryFeeRate="" if perpetual else "0.0005", priceScale=str(pp))
        row["leverageFilter"] = {"minLeverage": "1", "maxLeverage": f"{m.max_leverage}.00", "leverageStep": "0.01"}
        row["priceFilter"] = {"minPrice": tick, "maxPrice": fmt(m.price * 30, pp), "tickSize": tick}
        row.update(lotSizeFilter=lot, unifiedMarginTrade=True, fundingInterval=480 if perpetual else 0)
        row.update(settleCoin=m.settle, copyTrading="both" if m.linear and m.quote == "USDT" else "none")
        row.update(upperFundingRate="0.005" if perpetual else "", lowerFundingRate="-0.005" if perpetual else "")
        row.update(isPreListing=False, preListingInfo=None, displayName="")
        row["riskParameters"] = {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"}
        return row

    def instruments_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        status = params.get("status") or "Trading"
        rows: list[dict[str, Any]] = []
        if category in ("linear", "inverse") and status == "Trading":
            rows = self._instruments(category)
        if params.get("symbol"):
            rows = [r for r in rows if r["symbol"] == params["symbol"]]
        if params.get("baseCoin"):
            rows = [r for r in rows if r["baseCoin"] == params["baseCoin"]]
        limit = self._limit(params, 500, min(account.instruments_page_size, _INSTRUMENTS_PAGE_MAX))
        scope = f"instruments/{category}/{status}/{params.get('symbol', '')}/{params.get('baseCoin', '')}"
        chunk, cursor = self._page(rows, params, limit, scope)
        return {"category": category, "list": chunk, "nextPageCursor": cursor}

    # positions ---------------------------------------------------------------------------------------------

    def _position_row(
        self, account: EmulatedAccount, market: MarketSpec, idx: int, position: Position | None
    ) -> dict[str, Any]:
        pp, qp = places(market.tick_size), places(market.step_size)
        mark = market.price if position is None else account.mark_price(position)
        created = str(position.opened_ms) if position else str(now_ms())
        updated = str(position.updated_ms) if position else created
        stops = {} if position is None else account.position_stops(position.symbol, position.side)
        take_profit, trailing = stops.get("take_profit"), stops.get("trailing_stop")
        row: dict[str, Any] = {
            "positionIdx": idx,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": market.id,
            "tradeMode": 0,
            "positionStatus": "Normal",
            "autoAddMargin": 0,
            "markPrice": fmt(mark, pp),
            "positionBalance": "0",
            "tpslMode": "Full",
            "takeProfit": "" if take_profit is None else fmt(take_profit.trigger_price or ZERO, pp),
            "trailingStop": "0" if trailing is None else fmt(trailing.trailing_distance or ZERO, pp),
            "curRealisedPnl": "0",
            "cumRealisedPnl": "0",
            "seq": int(updated) % 10_000_000_000,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "sessionAvgPrice": "",
            "createdTime": created,
            "updatedTime": updated,
        }
        if position is None or position.size == 0:
            row.update(side="" if idx == 0 else ("Buy" if idx == 1 else "Sell"), size=fmt(ZERO, qp), avgPrice="0")
            row.update(positionValue="0", adlRankIndicator=0, leverage=str(position.leverage if position else 10))
            row.update(liqPrice="", bustPrice="", positionMM="0", positionIM="0", unrealisedPnl="0", stopLoss="")
            return row
        sign = 1 if position.side == "long" else -1
        entry = position.entry_price
        inverse_leverage = Decimal(1) / position.leverage
        if market.linear:
            value = position.size * entry
            pnl = (mark - entry) * position.size * sign
            mmr = maint_ratio(market, value)
        else:
            value = position.size / entry
            pnl = position.size * (1 / entry - 1 / mark) * sign
            mmr = maint_ratio(market, position.size)
        liq = entry * (1 - sign * (inverse_leverage - mmr))
        bust = entry * (1 - sign * inverse_leverage)
        value_places = 8 if not market.linear else max(pp + qp, 2)
        row.update(side="Buy" if sign > 0 else "Sell", size=fmt(position.size, qp), avgPrice=fmt(entry))
        row.update(positionValue=fmt(value, value_places), adlRankIndicator=2, leverage=str(position.leverage))
        row.update(liqPrice=fmt(max(liq, market.tick_size), pp), bustPrice=fmt(max(bust, market.tick_size), pp))
        row.update(positionMM=fmt(value * mmr, 8), positionIM=fmt(value * inverse_leverage, 8))
        row.update(unrealisedPnl=fmt(pnl, 8 if not market.linear else 4))
        row["stopLoss"] = "" if position.stop_loss is None else fmt(position.stop_loss, pp)
        return row

    def position_list(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "option"))
        symbol = params.get("symbol") or None
        settle = params.get("settleCoin") or None
        limit = self._limit(params, 20, min(account.page_size, _POSITION_PAGE_MAX))
        rows: list[dict[str, Any]] = []
        if category == "option":
            return {"category": category, "list": [], "nextPageCursor": ""}
        if category == "linear" and symbol is None and settle is None:
            raise VenueError(200, 10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        if symbol is not None:
            market = self._market(symbol, category)
            for idx in (1, 2) if account.hedge_mode else (0,):
                if idx == 0:
                    position = account.one_way_entry(market.id)
                else:
                    position = account.positions.get((market.id, "long" if idx == 1 else "short"))
                rows.append(self._position_row(account, market, idx, position))
        else:
            for (pos_symbol, side), position in sorted(account.positions.items()):
                market = self.markets[pos_symbol]
                if market.category != category or (settle is not None and market.settle != settle):
                    continue
                idx = (1 if side == "long" else 2) if account.hedge_mode else 0
                rows.append(self._position_row(account, market, idx, position))
        chunk, cursor = self._page(rows, params, limit, f"positions/{category}/{symbol or ''}/{settle or ''}")
        return {"category": category, "list": chunk, "nextPageCursor": cursor}

    # orders ------------------------------------------------------------------------------------------------

    def create_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        if category not in ("linear", "inverse"):
            raise VenueError(200, 10001, "Illegal category")
        if not params.get("symbol"):
            raise VenueError(200, 10001, "params error: symbol invalid")
        market = self._market(str(params["symbol"]), category)
        side = params.get("side")
        if side not in ("Buy", "Sell"):
            raise VenueError(200, 10001, "params error: side invalid")
        if params.get("orderType") != "Market":
            raise VenueError(200, 10001, "params error: orderType invalid")
        try:
            qty = Decimal(str(params.get("qty", "")))
        except InvalidOperation:
            raise VenueError(200, 10001, "params error: qty invalid") from None
        if not qty.is_finite() or qty <= 0 or qty % market.step_size != 0:
            raise VenueError(200, 10001, "params error: qty invalid")
        if qty < market.min_qty:
            raise VenueError(200, 110094, "Order does not meet minimum order value.")
        if qty > market.market_max_qty:
            raise VenueError(200, 10001, "The number of contracts exceeds maximum limit allowed: too large")
        try:
            idx = int(params.get("positionIdx", 0))
        except (TypeError, ValueError):
            raise VenueError(200, 10001, "params error: positionIdx invalid") from None
        if idx not in (0, 1, 2) or (idx == 0) == account.hedge_mode:
            raise VenueError(200, 10001, "position idx not match position mode")
        reduce_only = params.get("reduceOnly") in (True, "true", "True", 1)
        link_id = str(params.get("orderLinkId") or uuid.uuid4().hex[:32])
        leg = None if idx == 0 else ("long" if idx == 1 else "short")
        outcome = account.execute(
            market,
            "buy" if side == "Buy" else "sell",
            qty,
            position_side=leg,
            reduce_only=reduce_only,
            client_order_id=link_id,
            order_id=str(uuid.uuid4()),
        )
        if outcome is None:
            raise VenueError(200, 110017, "Reduce-only rule not satisfied")
        return {"orderId": outcome[0].order_id, "orderLinkId": link_id}

    def _order_row(self, account: EmulatedAccount, order: ProtectiveOrder) -> dict[str, Any]:
        """A conditional order as /v5/order/realtime prints it (untriggered, or deactivated once cancelled)."""
        market = self.markets[order.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        position = account.positions.get((order.symbol, order.protects))
        qty = order.quantity if order.quantity is not None else (position.size if position else ZERO)
        is_open = order.status == "open"
        fill = account.fill_history.by_trigger(order.order_id) if order.status == "triggered" else None
        if fill is not None:
            qty = fill.order_qty
        stop_type = order.stop_order_type or "Stop"
        full = stop_type in _POSITION_STOP_TYPES.values()
        value = qty * (order.limit_price or order.trigger_price or ZERO)
        row: dict[str, Any] = {"orderId": order.order_id, "orderLinkId": order.client_order_id}
        row.update(parentOrderLinkId="", blockTradeId="", symbol=order.symbol)
        row.update(price=fmt(order.limit_price, pp) if order.limit_price is not None else "0", qty=fmt(qty, qp))
        row.update(side="Buy" if order.side == "buy" else "Sell", isLeverage="")
        row["positionIdx"] = (1 if order.protects == "long" else 2) if account.hedge_mode else 0
        row["orderStatus"] = "Untriggered" if is_open else ("Filled" if fill is not None else "Deactivated")
        row["createType"] = create_type(stop_type)
        row.update(cancelType="UNKNOWN" if is_open or fill else "CancelByUser", rejectReason="EC_NoError", avgPrice="")
        row.update(leavesQty=fmt(qty if is_open else ZERO, qp), leavesValue=fmt(value, 8) if is_open else "0")
        row.update(cumExecQty=fmt(ZERO, qp), cumExecValue="0", cumExecFee="0")
        if fill is not None:
            row.update(avgPrice=fmt(fill.price, pp), cumExecQty=fmt(fill.qty, qp), cumExecFee=fmt(fill.fee))
            row["cumExecValue"] = fmt(fill.qty * fill.price if market.linear else fill.qty / fill.price)
        row.update(timeInForce="IOC" if order.is_market else "GTC", orderType="Market" if order.is_market else "Limit")
        row.update(
            stopOrderType=stop_type, orderIv="", marketUnit="", triggerPrice=fmt(order.trigger_price or ZERO, pp)
        )
        row.update(takeProfit="0", stopLoss="0", ocoTriggerBy="", tpLimitPrice="0", slLimitPrice="0")
        row["tpslMode"] = "Partial" if stop_type.startswith("Partial") else ("Full" if full else "")
        row.update(tpTriggerBy="", slTriggerBy="")
        row["triggerDirection"] = 1 if (order.kind == "take_profit") == (order.side == "sell") else 2  # 1: rise
        row.update(triggerBy=_TRIGGER_BY[order.trigger_by], lastPriceOnCreated=fmt(market.price, pp))
        row.update(basePrice=fmt(market.price, pp), reduceOnly=order.reduce_only, closeOnTrigger=order.close_position)
        row.update(placeType="", smpType="None", smpGroup=0, smpOrderId="")
        row.update(createdTime=str(order.created_ms), updatedTime=str(order.updated_ms), cumFeeDetail={})
        return row

    def open_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        limit = self._limit(params, 20, _ORDERS_PAGE_MAX)
        symbol, base, settle = params.get("symbol") or None, params.get("baseCoin") or None, params.get("settleCoin")
        if category == "linear" and not (symbol or base or settle):
            message = "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin"
            raise VenueError(200, 10001, message)
        if symbol is not None and category in ("linear", "inverse"):
            self._market(symbol, category)
        order_filter = params.get("orderFilter") or None
        if order_filter is not None and order_filter not in _ORDER_FILTERS:
            raise VenueError(200, 10001, "params error: orderFilter invalid")
        try:
            open_only = int(params.get("openOnly") or 0)
        except (TypeError, ValueError):
            open_only = -1
        if open_only not in (0, 1, 2):
            raise VenueError(200, 10001, "params error: openOnly invalid")
        order_id, link_id = params.get("orderId") or None, params.get("orderLinkId") or None
        if order_id or link_id:  # openOnly is ignored when querying one order
            source = account.protective_orders + account.closed_protective_orders
        else:
            source = account.protective_orders if open_only == 0 else account.closed_protective_orders
        chosen = []
        for order in source:
            market = self.markets[order.symbol]
            stop_type = order.stop_order_type or "Stop"
            if market.category != category or (symbol and order.symbol != symbol):
                continue
            if (base and market.base != base) or (settle and market.settle != settle):
                continue
            if (order_id and order.order_id != order_id) or (link_id and order.client_order_id != link_id):
                continue
            if order_filter == "Order" or (order_filter == "StopOrder" and stop_type not in _CONDITIONAL):
                continue
            if order_filter not in (None, "Order", "StopOrder") and stop_type != order_filter:
                continue
            chosen.append(order)
        chosen.sort(key=lambda o: o.created_ms)
        chosen.reverse()  # newest first, later placed first among equal stamps
        scope = f"orders/{category}/{symbol}/{base}/{settle}/{order_filter}/{open_only}/{order_id}/{link_id}"
        chunk, cursor = self._page(chosen, params, limit, scope)
        return {"category": category, "list": [self._order_row(account, o) for o in chunk], "nextPageCursor": cursor}

    def cancel_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        if not params.get("symbol"):
            raise VenueError(200, 10001, "params error: symbol invalid")
        order_id, link_id = params.get("orderId") or None, params.get("orderLinkId") or None
        if not order_id and not link_id:
            raise VenueError(200, 10001, "params error: orderId or orderLinkId is required")
        order = account.find_protective_order(order_id=str(order_id)) if order_id else None
        if order is None and link_id:
            order = account.find_protective_order(client_order_id=str(link_id))
        market = self.markets.get(order.symbol) if order is not None else None
        if order is None or market is None or order.symbol != params["symbol"] or market.category != category:
            raise VenueError(200, 110001, "order not exists or too late to cancel")
        account.cancel_protective_order(order.order_id)
        return {"orderId": order.order_id, "orderLinkId": order.client_order_id}

    # account -----------------------------------------------------------------------------------------------

    def wallet_balance(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("accountType") != "UNIFIED":
            raise VenueError(200, 10001, "accountType only support UNIFIED.")
        wanted = set(str(params["coin"]).split(",")) if params.get("coin") else None
        pnl: dict[str, Decimal] = {}
        margin: dict[str, Decimal] = {}
        for position in account.positions.values():
            if position.size <= 0:
                continue
            market = self.markets[position.symbol]
            row = self._position_row(account, market, 0, position)
            pnl[market.settle] = pnl.get(market.settle, ZERO) + Decimal(row["unrealisedPnl"])
            margin[market.settle] = margin.get(market.settle, ZERO) + Decimal(row["positionIM"])
        coins = []
        total = ZERO
        for coin, wallet in sorted(account.balances.items()):
            if wanted is not None and coin not in wanted:
                continue
            upnl = pnl.get(coin, ZERO)
            equity = wallet + upnl
            usd_price = Decimal(1) if coin in ("USDT", "USDC") else self._usd_price(coin)
            total += equity * usd_price
            coin_row: dict[str, Any] = {"availableToBorrow": "", "bonus": "0", "accruedInterest": "0"}
            coin_row.update(availableToWithdraw="", totalOrderIM="0", equity=fmt(equity, 8), totalPositionMM="0")
            coin_row.update(usdValue=fmt(equity * usd_price, 8), unrealisedPnl=fmt(upnl, 8), collateralSwitch=True)
            coin_row.update(spotHedgingQty="0", borrowAmount="0", totalPositionIM=fmt(margin.get(coin, ZERO), 8))
            coin_row.update(walletBalance=fmt(wallet, 8), cumRealisedPnl="0", locked="0", marginCollateral=True)
            coins.append({**coin_row, "coin": coin})
        totals = dict.fromkeys(("totalEquity", "totalMarginBalance", "totalAvailableBalance", "totalWalletBalance"))
        entry = {key: fmt(total, 8) for key in totals}
        entry.update(accountIMRate="0", totalInitialMargin="0", accountType="UNIFIED", accountMMRate="0")
        entry.update(totalPerpUPL="0", accountLTV="0", totalMaintenanceMargin="0")
        return {"list": [{**entry, "coin": coins}]}

    def _usd_price(self, coin: str) -> Decimal:
        market = self.markets.get(f"{coin}USDT")
        return market.price if market is not None else ZERO

    def account_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "unifiedMarginStatus": 6,
            "marginMode": "REGULAR_MARGIN",
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
            "updatedTime": "1700000000000",
            "dcpStatus": "OFF",
            "timeWindow": 0,
            "smpGroup": 0,
        }

    def query_api(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        digest = int(hashlib.sha256(account.name.encode()).hexdigest()[:7], 16)
        permissions: dict[str, list[str]] = {"ContractTrade": ["Order", "Position"], "Spot": []}
        permissions.update(Wallet=["AccountTransfer"], Options=[], Derivatives=[], CopyTrading=[], BlockTrade=[])
        permissions.update(Exchange=[], NFT=[], Affiliate=[], Earn=[])
        info: dict[str, Any] = {"id": str(digest), "note": account.name, "apiKey": account.api_key, "readOnly": 0}
        info.update(secret="", permissions=permissions, ips=["*"], type=1, deadlineDay=-1, expiredAt="")
        info.update(createdAt="2024-01-01T00:00:00Z", unified=0, uta=1, userID=100000000 + digest, inviterID=0)
        info.update(vipLevel="No VIP", mktMakerLevel="0", affiliateID=0, rsaPublicKey="", isMaster=True)
        info.update(parentUid="0", kycLevel="LEVEL_DEFAULT", kycRegion="")
        return info

    # account rules ---------------------------------------------------------------------------------------

    def prepare_protective(self, account: EmulatedAccount, draft: ProtectiveOrder) -> ProtectiveOrder:
        if draft.service is not None:
            raise ValueError("service ('classic'/'algo') is Binance's; Bybit orders have none")
        if draft.callback_rate is not None:
            raise ValueError("Bybit trailing stops take a price distance: set_position_stops(trailing_stop=...)")
        stop_type = draft.stop_order_type or "Stop"
        allowed = _POSITION_STOP_TYPES.values() if draft.attached else _PLACEABLE
        if stop_type not in allowed:
            raise ValueError(f"stop_order_type {stop_type!r} is not one of {', '.join(allowed)}")
        if draft.kind == "trailing" and not draft.attached:
            raise ValueError("Bybit trailing stops belong to a position: set_position_stops(trailing_stop=...)")
        if stop_type.startswith("Partial") and draft.close_position:
            raise ValueError("a partial TP/SL needs a quantity, not close_position")
        check_steps(self.markets[draft.symbol], draft)
        return dataclasses.replace(draft, order_id=str(uuid.uuid4()), stop_order_type=stop_type)

    def position_stop(self, kind: str, value: Decimal, position: Position, mark: Decimal) -> dict[str, Any]:
        """Bybit's trading-stop TP/SL/trailing stop; ``trailing_stop`` is a distance from the price."""
        spec: dict[str, Any] = {"stop_order_type": _POSITION_STOP_TYPES[kind], "trigger_price": value}
        if kind == "stop_loss":
            return {**spec, "type": "stop_market"}
        if kind == "take_profit":
            return {**spec, "type": "take_profit_market"}
        trigger = mark - value if position.side == "long" else mark + value
        if trigger <= 0:
            raise ValueError(f"trailing_stop {value} is larger than the price {mark}")
        return {**spec, "type": "trailing_stop_market", "trailing_distance": value, "trigger_price": trigger}
