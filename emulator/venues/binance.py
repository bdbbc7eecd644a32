"""Binance USDⓈ-M futures (``/fapi``) as the venue answers REST requests, for the real ccxt ``binanceusdm``.

Bare JSON objects and arrays on success; ``{"code", "msg"}`` with an HTTP status on errors; HMAC-SHA256 (hex)
of query string + body in ``signature``, the key in ``X-MBX-APIKEY``, ``timestamp`` within ``recvWindow``.

Request weights (``Route.weight``) and limits follow developers.binance.com, USDⓈ-M Futures REST API pages
"Position Information V3", "Current All Open Orders", "Current All Algo Open Orders", "Cancel Order",
"Cancel Algo Order", "New Order", "Exchange Information", "Notional and Leverage Brackets", "Futures Account
Balance V3", "Account Information V3", "Get Current Position Mode", and General Info "Limits" (2400 weight per
IP per minute, 429 then 418 with ``Retry-After``). Conditional orders live in the classic order book
(``/fapi/v1/openOrders``) or, since Binance moved them there, in the Algo Service (``/fapi/v1/openAlgoOrders``,
"New Algo Order" page); both are served. The trade/close history endpoints (group "history": userTrades,
forceOrders, order, allOrders, algoOrder, allAlgoOrders) are in ``emulator/venues/binance_history.py``.
"""

from __future__ import annotations

import dataclasses
import hmac
import itertools
import secrets
import string
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from emulator.state.account import EmulatedAccount
from emulator.state.common import ZERO, fmt, fmt_point, now_ms, places
from emulator.state.limits import Verdict
from emulator.state.markets import MarketSpec, catalogue, leverage_brackets, maint_ratio
from emulator.state.orders import ProtectiveOrder
from emulator.state.records import Position
from emulator.venues.base import (
    Route,
    VenueApi,
    VenueError,
    check_steps,
    json_response,
    signature_ok,
    strip_param,
)
from emulator.venues.binance_history import BinanceHistory

_PERPETUAL_DELIVERY_MS = 4133404800000
_ID_CHARS = string.ascii_letters + string.digits
_WORKING_TYPES = {"last": "CONTRACT_PRICE", "mark": "MARK_PRICE"}
_ORDER_TYPES = ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
_PERCENT_PRICE_FILTER = {
    "filterType": "PERCENT_PRICE",
    "multiplierUp": "1.0500",
    "multiplierDown": "0.9500",
    "multiplierDecimal": "4",
}
_MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
_LISTEN_KEY = "/fapi/v1/listenKey"


def _by_symbol(light: int, heavy: int) -> Any:
    """Weight ``light`` with a ``symbol`` parameter, ``heavy`` without."""
    return lambda params: light if params.get("symbol") else heavy


def _random_id() -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(22))


class BinanceApi(BinanceHistory, VenueApi):
    name = "binance"
    exchange_id = "binanceusdm"
    aliases = ("binance", "binanceusdm")
    default_balances: ClassVar[Mapping[str, Decimal]] = {"USDT": Decimal(10000), "USDC": Decimal(10000)}
    first_order_id = 8_389_765_000_000_000_001
    allows_zero_entry = True  # Binance reports entryPrice "0.0" for some non-empty positions
    ip_window_s = 60.0
    ip_limit = (2400, 3, 120.0)
    catalogue = catalogue(
        [
            ("BTCUSDT", "65000", "0.10", "0.001", "1000", "120", "100", 125),
            ("ETHUSDT", "3500", "0.01", "0.001", "10000", "2000", "20", 125),
            ("SOLUSDT", "150", "0.0100", "1", "1000000", "5000", "5", 100),
            ("XRPUSDT", "0.6", "0.0001", "0.1", "10000000", "2000000", "5", 75),
            ("DOGEUSDT", "0.15", "0.00001", "1", "50000000", "30000000", "5", 75),
            ("BNBUSDT", "600", "0.010", "0.01", "100000", "2000", "5", 75),
            ("AVLUSDT", "0.25", "0.0001", "1", "8000000", "800000", "5", 20, {"onboard_ms": 1741072800000}),
            ("1000PEPEUSDT", "0.0125", "0.0000001", "1", "800000000", "80000000", "5", 50),
            ("BTCUSDC", "65000", "0.1", "0.001", "1000", "50", "5", 125),
            ("ETHUSDC", "3500", "0.01", "0.001", "10000", "1000", "5", 100),
            (
                "BTCUSDT_261225",
                *("67000", "0.1", "0.001", "500", "20", "5", 50),
                {"contract_type": "future", "delivery_ms": 1798185600000, "onboard_ms": 1774598400000},
            ),
        ]
    )

    def __init__(self, emulator: Any) -> None:
        super().__init__(emulator)
        self._exchange_info_cache: tuple[int, list[dict[str, Any]]] | None = None
        self._algo_ids = itertools.count(2_000_000_000_000_001)

    def build_routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("GET", "/fapi/v1/ping"): Route("markets", False, lambda a, p: {}),
            ("GET", "/fapi/v1/time"): Route("markets", False, lambda a, p: {"serverTime": now_ms()}),
            ("GET", "/fapi/v1/exchangeInfo"): Route("markets", False, self.exchange_info),
            ("GET", "/fapi/v1/leverageBracket"): Route("positions", True, self.leverage_bracket),
            ("GET", "/fapi/v3/positionRisk"): Route("positions", True, self.position_risk_v3, 5),
            ("GET", "/fapi/v2/positionRisk"): Route("positions", True, self.position_risk_v2, 5),
            ("GET", "/fapi/v1/positionSide/dual"): Route(
                "positions", True, lambda a, p: {"dualSidePosition": a.hedge_mode}, 30
            ),
            ("POST", "/fapi/v1/order"): Route("orders", True, self.create_order, 0),
            ("DELETE", "/fapi/v1/order"): Route("orders", True, self.cancel_order),
            ("GET", "/fapi/v1/openOrders"): Route("open_orders", True, self.open_orders, _by_symbol(1, 40)),
            ("GET", "/fapi/v1/openAlgoOrders"): Route("open_orders", True, self.open_algo_orders, _by_symbol(1, 40)),
            ("DELETE", "/fapi/v1/algoOrder"): Route("orders", True, self.cancel_algo_order),
            ("GET", "/fapi/v2/balance"): Route("account", True, self.balance, 5),
            ("GET", "/fapi/v3/balance"): Route("account", True, self.balance, 5),
            ("GET", "/fapi/v2/account"): Route("account", True, self.account_info, 5),
            ("GET", "/fapi/v3/account"): Route("account", True, self.account_info, 5),
            **self.history_routes(),
            # user data stream: API key only (see authenticate); the listenKey lives in emulator/streams
            ("POST", _LISTEN_KEY): Route("account", True, lambda a, p: self.emu.streams.listen_key(a, "POST")),
            ("PUT", _LISTEN_KEY): Route("account", True, lambda a, p: self.emu.streams.listen_key(a, "PUT")),
            ("DELETE", _LISTEN_KEY): Route("account", True, lambda a, p: self.emu.streams.listen_key(a, "DELETE")),
        }

    def group_of(self, path: str) -> str | None:
        if path.startswith(("/fapi/v1/exchangeInfo", "/fapi/v1/time", "/fapi/v1/ping")):
            return "markets"
        if "positionRisk" in path or "leverageBracket" in path or "positionSide" in path:
            return "positions"
        if path.endswith(("/userTrades", "/forceOrders", "/allOrders", "/allAlgoOrders")):
            return "history"
        if path.endswith(("/openOrders", "/openAlgoOrders")):
            return "open_orders"
        if "/order" in path.lower() or "Orders" in path or "Trades" in path:
            return "orders"
        if path.endswith(("/balance", "/account")):
            return "account"
        return None

    def parse_params(self, request: web.Request, body: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if body:
            params.update(parse_qsl(body, keep_blank_values=True))
        return params

    # responses ---------------------------------------------------------------------------------------------

    def ok(self, payload: Any) -> web.Response:
        return json_response(payload)

    def error(self, exc: VenueError) -> web.Response:
        return json_response({"code": exc.code, "msg": exc.message}, status=exc.status)

    def not_found(self) -> web.Response:
        return web.Response(
            status=404, text="<html><body><h2>404 Not found</h2></body></html>", content_type="text/html"
        )

    def rate_headers(self, account: EmulatedAccount, path: str, route: Route | None) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT-1M": str(self.emu.weight_used(self.name, 60))}

    def refused(self, verdict: Verdict, request: web.Request) -> web.Response:
        retry = {"Retry-After": str(verdict.retry_after_s)}
        if verdict.status == "banned":
            message = (
                f"Way too much request weight used; IP banned until {verdict.banned_until_ms}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
            return json_response({"code": -1003, "msg": message}, status=418, headers=retry)
        window = "1 MINUTE" if verdict.window_s == 60 else f"{verdict.window_s:g} SECOND"
        message = (
            f"Too much request weight used; current limit is {verdict.limit} request weight per {window}. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )
        return json_response({"code": -1003, "msg": message}, status=429, headers=retry)

    def fault_response(self, kind: str, request: web.Request) -> web.Response:
        if kind == "http_500":
            message = "Internal error; unable to process your request. Please try again."
            return json_response({"code": -1001, "msg": message}, status=500)
        if kind == "rate_limit":
            message = (
                "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. "
                "Please use the websocket for live updates to avoid polling the API."
            )
            return json_response({"code": -1003, "msg": message}, status=429, headers={"Retry-After": "1"})
        if kind == "empty_body":
            return web.Response(status=200, body=b"", content_type="application/json")
        if kind == "bad_key":
            message = f"Invalid API-key, IP, or permissions for action, request ip: {request.remote or '127.0.0.1'}"
            return json_response({"code": -2015, "msg": message}, status=401)
        if kind == "garbage_json":
            return web.Response(
                status=200, body=b'[{"symbol":"BTCUSDT","positionAmt":"0.0', content_type="application/json"
            )
        if kind == "no_success_marker":
            return json_response({"data": []})
        raise ValueError(kind)

    # authentication --------------------------------------------------------------------------------------

    def authenticate(self, account: EmulatedAccount, request: web.Request, body: str, params: dict[str, Any]) -> None:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            raise VenueError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, account.api_key):
            message = f"Invalid API-key, IP, or permissions for action, request ip: {request.remote or '127.0.0.1'}"
            raise VenueError(401, -2015, message)
        if request.path.endswith(_LISTEN_KEY):
            return  # USER_STREAM endpoints take the API key only, no signature
        try:
            stamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise VenueError(400, -1102, _MANDATORY.format("timestamp")) from None
        try:
            recv_window = int(params.get("recvWindow", 5000))
        except ValueError:
            raise VenueError(400, -1100, "Illegal characters found in parameter 'recvWindow'.") from None
        now = now_ms()
        if stamp < now - recv_window or stamp > now + 1000:
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        query, query_sig = strip_param(request.rel_url.raw_query_string, "signature")
        form, body_sig = strip_param(body, "signature")
        signature = query_sig or body_sig
        if not signature:
            raise VenueError(400, -1102, _MANDATORY.format("signature"))
        payload = query + form
        if not signature_ok(account.secret, (payload, unquote(payload)), signature):
            raise VenueError(400, -1022, "Signature for this request is not valid.")

    # markets -----------------------------------------------------------------------------------------------

    def _market(self, symbol: str | None) -> MarketSpec:
        if not symbol:
            raise VenueError(400, -1102, _MANDATORY.format("symbol"))
        market = self.markets.get(symbol)
        if market is None:
            raise VenueError(400, -1121, "Invalid symbol.")
        return market

    def exchange_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        version = self.emu.market_version(self.name)
        if self._exchange_info_cache is None or self._exchange_info_cache[0] != version:
            self._exchange_info_cache = (version, [self._symbol_info(m) for m in self.markets.values()])
        settles = sorted({m.settle for m in self.markets.values()} | {"USDT", "USDC"})
        return {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in settles],
            "symbols": self._exchange_info_cache[1],
        }

    @staticmethod
    def _symbol_info(m: MarketSpec) -> dict[str, Any]:
        pp, qp = places(m.tick_size), places(m.step_size)
        perpetual = m.contract_type == "perpetual"
        lot = {"minQty": fmt(m.min_qty, qp), "stepSize": fmt(m.step_size, qp)}
        tick = fmt(m.tick_size, pp)
        info: dict[str, Any] = {"symbol": m.id, "pair": m.base + m.quote}
        info.update(contractType="PERPETUAL" if perpetual else "CURRENT_QUARTER")
        info.update(deliveryDate=_PERPETUAL_DELIVERY_MS if perpetual else m.delivery_ms, onboardDate=m.onboard_ms)
        info.update(status="TRADING", maintMarginPercent="2.5000", requiredMarginPercent="5.0000")
        info.update(baseAsset=m.base, quoteAsset=m.quote, marginAsset=m.settle, pricePrecision=pp)
        info.update(quantityPrecision=qp, baseAssetPrecision=8, quotePrecision=8, underlyingType="COIN")
        info.update(underlyingSubType=[], triggerProtect="0.0500", liquidationFee="0.012500")
        info.update(marketTakeBound="0.05", maxMoveOrderLimit=10000)
        info["filters"] = [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": fmt(m.price * 20, pp), "tickSize": tick},
            {"filterType": "LOT_SIZE", "maxQty": fmt(m.max_qty, qp), **lot},
            {"filterType": "MARKET_LOT_SIZE", "maxQty": fmt(m.market_max_qty, qp), **lot},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": fmt(m.min_notional)},
            _PERCENT_PRICE_FILTER,
        ]
        info["orderTypes"] = list(_ORDER_TYPES)
        info.update(timeInForce=["GTC", "IOC", "FOK", "GTX", "GTD"], permissionSets=["GRID", "COPY"])
        return info

    def leverage_bracket(self, account: EmulatedAccount, params: dict[str, Any]) -> Any:
        if params.get("symbol"):
            market = self._market(params["symbol"])
            return {"symbol": market.id, "notionalCoef": 1.0, "brackets": leverage_brackets(market)}
        return [{"symbol": m.id, "notionalCoef": 1.0, "brackets": leverage_brackets(m)} for m in self.markets.values()]

    # positions ---------------------------------------------------------------------------------------------

    def _figures(self, account: EmulatedAccount, market: MarketSpec, position: Position | None) -> dict[str, Any]:
        qp = places(market.step_size)
        if position is None or position.size == 0:
            mark = position.mark_price if position and position.mark_price else market.price
            return {
                "positionAmt": fmt(ZERO, qp),
                "entryPrice": "0.0",
                "breakEvenPrice": "0.0",
                "markPrice": fmt(mark, 8),
                "unRealizedProfit": "0.00000000",
                "liquidationPrice": "0",
                "notional": "0",
                "initialMargin": "0",
                "maintMargin": "0",
                "leverage": "20",
                "updateTime": 0 if position is None else position.updated_ms,
            }
        sign = 1 if position.side == "long" else -1
        mark = account.mark_price(position)
        notional = position.size * mark * sign
        pnl = (mark - position.entry_price) * position.size * sign
        mmr = maint_ratio(market, abs(notional))
        inverse_leverage = Decimal(1) / position.leverage
        liq = position.entry_price * (1 - sign * (inverse_leverage - mmr))
        entry = position.entry_price
        return {
            "positionAmt": fmt(position.size * sign, qp),
            "entryPrice": fmt_point(position.entry_price),
            "breakEvenPrice": fmt(position.entry_price * (1 + sign * Decimal("0.0004")), 8) if entry else "0.0",
            "markPrice": fmt(mark, 8),
            "unRealizedProfit": fmt(pnl, 8),
            "liquidationPrice": fmt(max(liq, ZERO), 8),
            "notional": fmt(notional, 8),
            "initialMargin": fmt(abs(notional) * inverse_leverage, 8),
            "maintMargin": fmt(abs(notional) * mmr, 8),
            "leverage": str(position.leverage),
            "updateTime": position.updated_ms,
        }

    def _leg(self, account: EmulatedAccount, side: str | None) -> str:
        if side is None or not account.hedge_mode:
            return "BOTH"
        return side.upper()

    def position_risk_v3(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """v3 lists held (or explicitly zero) positions only."""
        symbol = params.get("symbol")
        if symbol:
            self._market(symbol)
        result = []
        for (pos_symbol, side), position in sorted(account.positions.items()):
            if symbol and pos_symbol != symbol:
                continue
            market = self.markets[pos_symbol]
            f = self._figures(account, market, position)
            row = {"symbol": market.id, "positionSide": self._leg(account, side)}
            for key in ("positionAmt", "entryPrice", "breakEvenPrice", "markPrice", "unRealizedProfit"):
                row[key] = f[key]
            row.update(liquidationPrice=f["liquidationPrice"], isolatedMargin="0", notional=f["notional"])
            row.update(marginAsset=market.settle, isolatedWallet="0", initialMargin=f["initialMargin"])
            row.update(maintMargin=f["maintMargin"], positionInitialMargin=f["initialMargin"])
            row.update(openOrderInitialMargin="0", adl=1 if f["notional"] != "0" else 0)
            row.update(bidNotional="0", askNotional="0", updateTime=f["updateTime"])
            result.append(row)
        return result

    def position_risk_v2(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """v2 lists every symbol: held positions plus zero rows for all other markets (and legs)."""
        symbol = params.get("symbol")
        markets = [self._market(symbol)] if symbol else list(self.markets.values())
        legs = ("LONG", "SHORT") if account.hedge_mode else ("BOTH",)
        result = []
        for market in markets:
            for leg in legs:
                if leg == "BOTH":
                    position = account.one_way_entry(market.id)
                else:
                    position = account.positions.get((market.id, leg.lower()))
                f = self._figures(account, market, position)
                row = {"symbol": market.id}
                for key in ("positionAmt", "entryPrice", "breakEvenPrice", "markPrice", "unRealizedProfit"):
                    row[key] = f[key]
                row.update(liquidationPrice=f["liquidationPrice"], leverage=f["leverage"], maxNotionalValue="1000000")
                row.update(marginType="cross", isolatedMargin="0.00000000", isAutoAddMargin="false")
                row.update(positionSide=leg, notional=f["notional"], isolatedWallet="0")
                row.update(updateTime=f["updateTime"], isolated=False, adlQuantile=0)
                result.append(row)
        return result

    # orders ------------------------------------------------------------------------------------------------

    def create_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        market = self._market(params.get("symbol"))
        side = str(params.get("side", "")).upper()
        if side not in ("BUY", "SELL"):
            raise VenueError(400, -1102, _MANDATORY.format("side"))
        order_type = str(params.get("type", "")).upper()
        if order_type in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"):
            message = "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
            raise VenueError(400, -4120, message)
        if order_type != "MARKET":
            raise VenueError(400, -1116, "Invalid orderType.")
        leg_param = str(params.get("positionSide", "BOTH")).upper()
        if leg_param not in ("BOTH", "LONG", "SHORT"):
            raise VenueError(400, -4006, "Invalid position side.")
        if account.hedge_mode:
            if "reduceOnly" in params:
                raise VenueError(400, -1106, "Parameter 'reduceonly' sent when not required.")
            if leg_param == "BOTH":
                raise VenueError(400, -4061, "Order's position side does not match user's setting.")
        elif leg_param != "BOTH":
            raise VenueError(400, -4061, "Order's position side does not match user's setting.")
        reduce_only = str(params.get("reduceOnly", "false")).lower() == "true"
        try:
            qty = Decimal(str(params.get("quantity", "")))
        except InvalidOperation:
            raise VenueError(400, -1102, _MANDATORY.format("quantity")) from None
        if not qty.is_finite() or qty <= 0:
            raise VenueError(400, -4003, "Quantity less than or equal to zero.")
        if qty % market.step_size != 0:
            raise VenueError(400, -1111, "Precision is over the maximum defined for this asset.")
        if qty < market.min_qty:
            raise VenueError(400, -4004, "Quantity less than min quantity.")
        if qty > market.market_max_qty:
            raise VenueError(400, -4005, "Quantity greater than max quantity.")
        leg = None if leg_param == "BOTH" else leg_param.lower()
        client_id = str(params.get("newClientOrderId") or _random_id())
        outcome = account.execute(
            market, side.lower(), qty, position_side=leg, reduce_only=reduce_only, client_order_id=client_id
        )
        if outcome is None:
            raise VenueError(400, -2022, "ReduceOnly Order is rejected.")
        order, executed = outcome
        pp, qp = places(market.tick_size), places(market.step_size)
        row = self._book_row(market, int(order.order_id), client_id, "FILLED", "MARKET", side, leg_param)
        row.update(avgPrice=fmt(order.price, pp), origQty=fmt(qty, qp), executedQty=fmt(executed, qp))
        row.update(cumQty=fmt(executed, qp), cumQuote=fmt(executed * order.price, 8), reduceOnly=reduce_only)
        row.update(price=fmt(ZERO, pp), stopPrice=fmt(ZERO, pp), updateTime=order.timestamp_ms)
        del row["time"]
        return row

    def _resting(self, account: EmulatedAccount, service: str, symbol: str | None) -> list[ProtectiveOrder]:
        if symbol:
            self._market(symbol)
        return [o for o in account.protective_orders if o.service == service and symbol in (None, "", o.symbol)]

    @staticmethod
    def _book_row(
        market: MarketSpec, order_id: int, client_id: str, status: str, kind: str, side: str, leg: str
    ) -> dict[str, Any]:
        """The fields every classic-order-book order row has, with an order's own values left at zero."""
        row: dict[str, Any] = {"orderId": order_id, "symbol": market.id, "status": status, "clientOrderId": client_id}
        row.update(price="0", avgPrice="0.00000", origQty="0", executedQty="0", cumQuote="0", timeInForce="GTC")
        row.update(type=kind, reduceOnly=False, closePosition=False, side=side, positionSide=leg, stopPrice="0")
        row.update(workingType="CONTRACT_PRICE", priceProtect=False, origType=kind, priceMatch="NONE")
        row.update(selfTradePreventionMode="EXPIRE_MAKER", goodTillDate=0, time=0, updateTime=0)
        return row

    def _order_row(self, account: EmulatedAccount, order: ProtectiveOrder, status: str = "NEW") -> dict[str, Any]:
        """A classic-order-book conditional order as /fapi/v1/openOrders and DELETE /fapi/v1/order print it."""
        market = self.markets[order.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        leg = self._leg(account, order.position_side)
        kind, side = order.type.upper(), order.side.upper()
        row = self._book_row(market, int(order.order_id), order.client_order_id, status, kind, side, leg)
        if order.limit_price is not None:
            row["price"] = fmt(order.limit_price, pp)
        if order.quantity is not None:
            row["origQty"] = fmt(order.quantity, qp)
        row.update(reduceOnly=order.reduce_only, closePosition=order.close_position)
        row.update(stopPrice=fmt(order.trigger_price or ZERO, pp), workingType=_WORKING_TYPES[order.trigger_by])
        row.update(time=order.created_ms, updateTime=order.updated_ms)
        if order.kind == "trailing":
            row.update(activatePrice=fmt(order.trigger_price or ZERO, pp), priceRate=fmt(order.callback_rate or ZERO))
        return row

    def _algo_row(self, account: EmulatedAccount, order: ProtectiveOrder) -> dict[str, Any]:
        """A conditional order of the Algo Service as /fapi/v1/openAlgoOrders prints it."""
        market = self.markets[order.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        row: dict[str, Any] = {"algoId": int(order.order_id), "clientAlgoId": order.client_order_id}
        row.update(algoType="CONDITIONAL", orderType=order.type.upper(), symbol=order.symbol)
        row.update(side=order.side.upper(), positionSide=self._leg(account, order.position_side), timeInForce="GTC")
        row["quantity"] = fmt(order.quantity, qp) if order.quantity is not None else "0"
        status = self.algo_status(account, order)
        row.update(algoStatus=status["algoStatus"], actualOrderId=status["actualOrderId"])
        row["actualPrice"] = status["actualPrice"]
        row.update(triggerPrice=fmt(order.trigger_price or ZERO, pp), price=fmt(order.limit_price or ZERO, pp))
        row.update(icebergQuantity=None, tpTriggerPrice="0.000", tpPrice="0.000", slTriggerPrice="0.000")
        row.update(slPrice="0.000", tpOrderType="", selfTradePreventionMode="EXPIRE_MAKER")
        row.update(workingType=_WORKING_TYPES[order.trigger_by], priceMatch="NONE")
        row.update(closePosition=order.close_position, priceProtect=order.attached, reduceOnly=order.reduce_only)
        row.update(createTime=order.created_ms, updateTime=order.updated_ms, triggerTime=status["triggerTime"])
        row["goodTillDate"] = 0
        if order.kind == "trailing":
            row.update(activatePrice=row["triggerPrice"], callbackRate=fmt(order.callback_rate or ZERO))
        return row

    def open_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Resting classic-book orders (market orders fill at once, so only conditional ones rest)."""
        return [self._order_row(account, o) for o in self._resting(account, "classic", params.get("symbol"))]

    def open_algo_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        orders = self._resting(account, "algo", params.get("symbol"))
        if params.get("algoType") not in (None, "", "CONDITIONAL"):
            orders = []
        if params.get("algoId"):
            orders = [o for o in orders if o.order_id == str(params["algoId"])]
        return [self._algo_row(account, o) for o in orders]

    def cancel_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        market = self._market(params.get("symbol"))
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if not order_id and not client_id:
            message = "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!"
            raise VenueError(400, -1102, message)
        order = account.find_protective_order(order_id=str(order_id)) if order_id else None
        if order is None and client_id:
            order = account.find_protective_order(client_order_id=str(client_id))
        if order is None or order.service != "classic" or order.symbol != market.id:
            raise VenueError(400, -2011, "Unknown order sent.")
        row = self._order_row(account, account.cancel_protective_order(order.order_id), "CANCELED")
        return {**row, "cumQty": "0"}

    def cancel_algo_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        lowered = {key.lower(): value for key, value in params.items()}
        algo_id, client_id = lowered.get("algoid"), lowered.get("clientalgoid")
        if not algo_id and not client_id:
            raise VenueError(400, -1102, "Param 'algoId' or 'clientAlgoId' must be sent, but both were empty/null!")
        order = account.find_protective_order(order_id=str(algo_id)) if algo_id else None
        if order is None and client_id:
            order = account.find_protective_order(client_order_id=str(client_id))
        if order is None or order.service != "algo" or params.get("symbol") not in (None, "", order.symbol):
            raise VenueError(400, -2011, "Unknown order sent.")
        account.cancel_protective_order(order.order_id)
        return {"algoId": int(order.order_id), "clientAlgoId": order.client_order_id, "code": "200", "msg": "success"}

    # account -----------------------------------------------------------------------------------------------

    def _asset_rows(self, account: EmulatedAccount) -> list[dict[str, Any]]:
        pnl: dict[str, Decimal] = {}
        margin: dict[str, Decimal] = {}
        for position in account.positions.values():
            if position.size <= 0:
                continue
            settle = self.markets[position.symbol].settle
            sign = 1 if position.side == "long" else -1
            mark = account.mark_price(position)
            pnl[settle] = pnl.get(settle, ZERO) + (mark - position.entry_price) * position.size * sign
            margin[settle] = margin.get(settle, ZERO) + position.size * mark / position.leverage
        stamp = now_ms()
        return [
            {
                "asset": asset,
                "wallet": wallet,
                "upnl": pnl.get(asset, ZERO),
                "used": margin.get(asset, ZERO),
                "available": wallet + pnl.get(asset, ZERO) - margin.get(asset, ZERO),
                "updateTime": stamp,
            }
            for asset, wallet in sorted(account.balances.items())
        ]

    def balance(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for r in self._asset_rows(account):
            wallet, available = fmt(r["wallet"], 8), fmt(r["available"], 8)
            row = {"accountAlias": "SgsR", "asset": r["asset"], "balance": wallet, "crossWalletBalance": wallet}
            row.update(crossUnPnl=fmt(r["upnl"], 8), availableBalance=available, maxWithdrawAmount=available)
            rows.append({**row, "marginAvailable": True, "updateTime": r["updateTime"]})
        return rows

    def account_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        rows = self._asset_rows(account)
        assets = []
        for r in rows:
            wallet, upnl, used, available = (fmt(r[key], 8) for key in ("wallet", "upnl", "used", "available"))
            asset = {"asset": r["asset"], "walletBalance": wallet, "unrealizedProfit": upnl}
            asset.update(marginBalance=fmt(r["wallet"] + r["upnl"], 8), maintMargin="0.00000000")
            asset.update(initialMargin=used, positionInitialMargin=used, openOrderInitialMargin="0.00000000")
            asset.update(crossWalletBalance=wallet, crossUnPnl=upnl, availableBalance=available)
            assets.append({**asset, "maxWithdrawAmount": available, "updateTime": r["updateTime"]})
        positions = []
        for row in self.position_risk_v3(account, {}):
            position = {key: row[key] for key in ("symbol", "positionSide", "positionAmt", "notional")}
            position.update(unrealizedProfit=row["unRealizedProfit"], isolatedMargin="0", isolatedWallet="0")
            position.update(initialMargin=row["initialMargin"], maintMargin=row["maintMargin"])
            positions.append({**position, "updateTime": row["updateTime"]})
        usd = [r for r in rows if r["asset"] in ("USDT", "USDC")]
        wallet, upnl, used = (sum((r[k] for r in usd), ZERO) for k in ("wallet", "upnl", "used"))
        info = {"totalInitialMargin": fmt(used, 8), "totalMaintMargin": "0.00000000"}
        info.update(totalWalletBalance=fmt(wallet, 8), totalUnrealizedProfit=fmt(upnl, 8))
        info.update(totalMarginBalance=fmt(wallet + upnl, 8), totalPositionInitialMargin=fmt(used, 8))
        info.update(totalOpenOrderInitialMargin="0.00000000", totalCrossWalletBalance=fmt(wallet, 8))
        info.update(totalCrossUnPnl=fmt(upnl, 8), availableBalance=fmt(wallet + upnl - used, 8))
        info.update(maxWithdrawAmount=fmt(wallet + upnl - used, 8))
        return {**info, "assets": assets, "positions": positions}

    # account rules ---------------------------------------------------------------------------------------

    def prepare_protective(self, account: EmulatedAccount, draft: ProtectiveOrder) -> ProtectiveOrder:
        service = draft.service or "algo"
        if service not in ("classic", "algo"):
            raise ValueError("Binance conditional orders live in service 'classic' or 'algo'")
        if draft.stop_order_type is not None:
            raise ValueError("stop_order_type is Bybit's; Binance orders have none")
        if draft.trigger_by not in _WORKING_TYPES:
            raise ValueError("Binance triggers on the last (CONTRACT_PRICE) or mark (MARK_PRICE) price")
        market = self.markets[draft.symbol]
        trigger = draft.trigger_price
        if draft.kind == "trailing":
            if draft.callback_rate is None or not Decimal("0.1") <= draft.callback_rate <= 10:
                raise ValueError("a Binance trailing stop needs callback_rate between 0.1 and 10 (percent)")
            if draft.trailing_distance is not None:
                raise ValueError("Binance trailing stops take callback_rate, not trailing_distance")
            trigger = trigger or market.price  # activation price: the latest price when not given
        check_steps(market, draft)
        order_id = str(account.next_order_id()) if service == "classic" else str(next(self._algo_ids))
        client_id = draft.client_order_id or _random_id()
        return dataclasses.replace(
            draft, order_id=order_id, client_order_id=client_id, service=service, trigger_price=trigger
        )

    def position_stop(self, kind: str, value: Decimal, position: Position, mark: Decimal) -> dict[str, Any]:
        """Binance's position TP/SL are closePosition algo orders triggered by the mark price."""
        if kind == "trailing_stop":
            raise ValueError("Binance has no position trailing stop; place a trailing_stop_market order instead")
        kind_type = "stop_market" if kind == "stop_loss" else "take_profit_market"
        return {"type": kind_type, "trigger_price": value, "service": "algo", "trigger_by": "mark"}
