"""Binance USDⓈ-M futures: positions from ``GET /fapi/v3/positionRisk``, read row by row; protective orders
from both places Binance keeps conditional orders, the classic order book (``GET /fapi/v1/openOrders``) and the
Algo Service (``GET /fapi/v1/openAlgoOrders``), each read for all symbols at once (weight 40 apiece).

ccxt's ``fetch_positions`` drops every row whose ``entryPrice`` is 0, which Binance sends for some open
positions, and takes a row's side from the sign of ``notional``; reconbot reads the raw rows itself so an open
position can never vanish, and a row whose fields contradict each other makes the account unchecked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import ccxt.pro as ccxt_pro
from ccxt.base.errors import BadResponse, NetworkError

from services.causes import CloseCause, CloseKind
from services.model import ExchangePosition, Side
from services.protection import OrderPurpose, ProtectiveOrder
from services.venues.base import Gateway, ReadProgress
from services.venues.budget import BINANCE_WEIGHTS, Budgeted
from services.venues.clients import client_config, configure, require_json_body
from services.venues.errors import BadAnswer, VenueError
from services.venues.history import ClosingFill, last_close, nothing_found, window_start
from services.venues.rows import Row, SourcedRow, as_list, position_closed_by
from services.venues.stream_client import GuardedStream

POSITIONS_PATH = "/fapi/v3/positionRisk"
OPEN_ORDERS_PATH = "/fapi/v1/openOrders"
OPEN_ALGO_ORDERS_PATH = "/fapi/v1/openAlgoOrders"
USER_TRADES_PATH = "/fapi/v1/userTrades"
USER_TRADES_LIMIT = 1000  # without a start time: the most recent 1000 of the last 7 days
# Client order ids Binance gives the orders it places itself (user-data stream, "Event: Order Update").
_FORCED_PREFIXES = (
    ("autoclose-", CloseKind.LIQUIDATION),
    ("adl_autoclose", CloseKind.ADL),
    ("settlement_autoclose-", CloseKind.SETTLEMENT),
)
_CLOSE_KINDS = {
    "STOP": CloseKind.STOP_LOSS,
    "STOP_MARKET": CloseKind.STOP_LOSS,
    "TRAILING_STOP_MARKET": CloseKind.STOP_LOSS,
    "TAKE_PROFIT": CloseKind.TAKE_PROFIT,
    "TAKE_PROFIT_MARKET": CloseKind.TAKE_PROFIT,
}
CLASSIC, ALGO = "classic", "algo"
_PURPOSES = {
    "STOP": OrderPurpose.STOP,
    "STOP_MARKET": OrderPurpose.STOP,
    "TAKE_PROFIT": OrderPurpose.TAKE_PROFIT,
    "TAKE_PROFIT_MARKET": OrderPurpose.TAKE_PROFIT,
    "TRAILING_STOP_MARKET": OrderPurpose.TRAILING_STOP,
}
_CLOSES = {"SELL": Side.LONG, "BUY": Side.SHORT}  # the one-way position an order of that side reduces


@dataclass(frozen=True, slots=True)
class _Fields:
    """Where an order row keeps each value: the classic book and the Algo Service name them differently."""

    kind: str
    trigger: str
    quantity: str
    order_id: str
    client_id: str
    created: str


_ROW_FIELDS = {
    CLASSIC: _Fields("type", "stopPrice", "origQty", "orderId", "clientOrderId", "time"),
    ALGO: _Fields("orderType", "triggerPrice", "quantity", "algoId", "clientAlgoId", "createTime"),
}


class ErrorsByPath:
    """ccxt picks Binance's per-market error table by host; behind a rebased URL, go by the path."""

    def get_exceptions_by_url(self, url, exactOrBroad):
        tables = super().get_exceptions_by_url(url, exactOrBroad)  # type: ignore[misc]
        if not tables and url and "/fapi/" in url:
            return self.safe_dict(self.safe_dict(self.exceptions, "linear", {}), exactOrBroad, {})  # type: ignore[attr-defined]
        return tables


class BinanceWeights(Budgeted):
    """Binance's own request weights where ccxt's table differs, spent from the shared budget."""

    def calculate_rate_limiter_cost(self, api, method, path, params, config=None):
        own = BINANCE_WEIGHTS.get((api[0] if isinstance(api, list) and api else str(api), path))
        if own is not None:
            return own
        return super().calculate_rate_limiter_cost(api, method, path, params, config or {})  # type: ignore[misc]


class GuardedBinanceUsdm(BinanceWeights, ErrorsByPath, ccxt.binanceusdm):
    """Binance USDⓈ-M: positions must come as a JSON array, markets with a symbols list, everything as JSON."""

    def handle_errors(self, code, reason, url, method, headers, body, response, request_headers, request_body):
        super().handle_errors(code, reason, url, method, headers, body, response, request_headers, request_body)
        if code >= 400:
            return None  # ccxt's HTTP status mapping names the error
        require_json_body(self.id, url, body, response)
        path = url.split("?", 1)[0]
        if "/positionRisk" in path and not isinstance(response, list):
            raise BadResponse(f"{self.id} {path}: expected a list of positions")
        if path.endswith("/exchangeInfo") and not (isinstance(response, dict) and response.get("symbols")):
            raise BadResponse(f"{self.id} {path}: market list without symbols")
        return None


class BinanceUsdmStream(GuardedStream, BinanceWeights, ErrorsByPath, ccxt_pro.binanceusdm):
    """The user data stream. Binance announces an expired listenKey with a ``listenKeyExpired`` event and then
    stays silent on the open socket; ccxt ignores the event, so here it ends every watch, and reconbot
    reconnects with a new key."""

    def handle_message(self, client, message):
        if isinstance(message, dict) and message.get("e") == "listenKeyExpired":
            client.reject(NetworkError(f"{self.id} user data stream: listenKeyExpired"))
            return None
        return super().handle_message(client, message)


class BinanceUsdm(Gateway):
    exchange_id = "binanceusdm"
    default_db_exchange = "binance"
    stream_class = BinanceUsdmStream
    # A listenKey lives 60 minutes from its last keep-alive ("User Data Streams": PUT /fapi/v1/listenKey);
    # ccxt sends one keep-alive and never another, so reconbot sends its own.
    listen_key_keepalive_s = 30 * 60.0

    @classmethod
    def build_client(
        cls,
        *,
        api_key: str | None,
        secret: str | None,
        api_base_url: str | None = None,
        testnet: bool = False,
        demo_trading: bool = False,
        timeout_ms: int = 10_000,
    ) -> ccxt.Exchange:
        client = GuardedBinanceUsdm(client_config(api_key, secret, timeout_ms, {}))
        return configure(client, api_base_url=api_base_url, testnet=testnet, demo_trading=demo_trading)

    async def keep_stream_alive(self, client: Any) -> None:
        """Extend the listenKey every ``listen_key_keepalive_s``; a refused keep-alive ends the stream (it is
        reopened with a new key)."""
        while True:
            await asyncio.sleep(self.listen_key_keepalive_s)
            if _listen_key(client):
                await client.fapiPrivatePutListenKey()

    def stream_secrets(self, client: Any) -> tuple[str, ...]:
        key = _listen_key(client)
        return (key,) if key else ()

    async def close_stream_client(self, client: Any) -> None:
        """Forget the listenKey first: ccxt's delayed keep-alive would otherwise reopen a session after close."""
        linear = client.options.get("linear")
        if isinstance(linear, dict):
            linear["listenKey"] = None
        await client.close()

    async def position_rows(self, progress: ReadProgress) -> list[Row]:
        answer = await self.client.fapiPrivateV3GetPositionRisk()
        progress.page("positions")
        return [
            Row(raw, f"position row {i + 1} of {POSITIONS_PATH}")
            for i, raw in enumerate(as_list(answer, POSITIONS_PATH))
        ]

    def parse_position(self, row: Row) -> ExchangePosition | None:
        market_id = row.text("symbol") or ""
        row.name(market_id)
        amount = row.decimal("positionAmt", required=True)
        assert amount is not None
        if amount == 0:
            return None
        leg = row.text("positionSide", required=False) or "BOTH"
        side = _side(leg, amount, row)
        notional = row.decimal("notional")
        if notional is not None and notional != 0 and (notional > 0) != (amount > 0):
            raise BadAnswer(f"bad response: {row.where}: notional {notional} contradicts positionAmt {amount}")
        margin = row.decimal("initialMargin")
        leverage = row.decimal("leverage")
        if leverage is None and notional and margin:
            leverage = (abs(notional) / margin).quantize(Decimal("0.01"))
        market = self.market_by_id(market_id)
        return ExchangePosition(
            account=self.name,
            exchange=self.exchange_id,
            market=market_id,
            symbol=(market or {}).get("symbol") or market_id,
            side=side,
            quantity=abs(amount),
            entry_price=row.positive("entryPrice"),
            mark_price=row.positive("markPrice"),
            unrealized_pnl=row.decimal("unRealizedProfit"),
            leverage=leverage,
            liquidation_price=row.positive("liquidationPrice"),
            notional=abs(notional) if notional is not None else None,
            margin=margin,
            settle=row.text("marginAsset", required=False) or (market or {}).get("settle"),
            amount_step=self.amount_step(market),
            **self.contract_terms(market),
            category=self.category(market),
            hedged=leg != "BOTH",
            updated_at=row.moment("updateTime"),
        )

    # -- protective orders ----------------------------------------------------------------------------------

    async def order_rows(self, progress: ReadProgress) -> list[Row]:
        """Both homes of conditional orders, every symbol: a stop kept in either is a stop."""
        rows: list[Row] = []
        for source, path, read in (
            (CLASSIC, OPEN_ORDERS_PATH, self.client.fapiPrivateGetOpenOrders),
            (ALGO, OPEN_ALGO_ORDERS_PATH, self.client.fapiPrivateGetOpenAlgoOrders),
        ):
            answer = await read()
            progress.page(f"{source} orders")
            rows += [
                SourcedRow(raw, f"{source} order row {i + 1} of {path}", source)
                for i, raw in enumerate(as_list(answer, path))
            ]
        return rows

    def parse_order(self, row: Row) -> ProtectiveOrder | None:
        source = row.origin if isinstance(row, SourcedRow) else (ALGO if "algoId" in row.raw else CLASSIC)
        fields = _ROW_FIELDS[source]
        market_id = row.text("symbol") or ""
        row.name(market_id)
        if source == ALGO:
            if row.text("algoType") != "CONDITIONAL":
                return None
            if (row.text("algoStatus", required=False) or "NEW") != "NEW":
                return None  # triggered, finished or cancelled: no longer resting
        purpose = _PURPOSES.get(row.text(fields.kind) or "")
        if purpose is None:
            return None  # a plain limit or market order
        side_text = row.text("side") or ""
        one_way_closes = _CLOSES.get(side_text)
        if one_way_closes is None:
            raise BadAnswer(f"bad response: {row.where}: side {side_text!r}")
        leg = row.text("positionSide", required=False) or "BOTH"
        reducing = row.flag("reduceOnly") or row.flag("closePosition")
        if leg not in ("BOTH", "LONG", "SHORT"):
            raise BadAnswer(f"bad response: {row.where}: positionSide {leg!r}")
        hedge_leg = None if leg == "BOTH" else Side(leg.lower())
        closes = position_closed_by(row, side_text, one_way_closes, hedge_leg, f"the {leg} leg", reducing)
        if closes is None:
            return None
        if purpose is OrderPurpose.TRAILING_STOP:
            trigger = row.positive("activatePrice")
        else:
            trigger = row.positive(fields.trigger)
            if trigger is None:
                raise BadAnswer(f"bad response: {row.where}: a {row.raw[fields.kind]} order without {fields.trigger}")
        quantity = None if row.flag("closePosition") else row.decimal(fields.quantity, required=True)
        if quantity is not None and quantity <= 0:
            raise BadAnswer(f"bad response: {row.where}: {fields.quantity} {quantity} without closePosition")
        market = self.market_by_id(market_id)
        return ProtectiveOrder(
            account=self.name,
            market=market_id,
            symbol=(market or {}).get("symbol") or market_id,
            order_id=row.text(fields.order_id) or "",
            purpose=purpose,
            closes=closes,
            trigger_price=trigger,
            quantity=quantity,
            source=source,
            client_order_id=row.text(fields.client_id, required=False) or "",
            created_at=row.moment(fields.created),
        )

    async def cancel_order(self, order: ProtectiveOrder) -> None:
        if order.source == CLASSIC:
            request = self.client.fapiPrivateDeleteOrder({"symbol": order.market, "orderId": order.order_id})
        elif order.source == ALGO:
            request = self.client.fapiPrivateDeleteAlgoOrder({"algoId": order.order_id})
        else:
            raise ValueError(f"Binance keeps no orders in {order.source!r}")
        await self.guard_order(request)

    # -- history ----------------------------------------------------------------------------------------------

    async def read_close_cause(self, market: str, side: Side, since: datetime | None) -> CloseCause:
        """Two requests: the market's recent trades (weight 5) find the last order that reduced the position
        with its fills' price and realized PnL; that order (weight 1) says who placed it: Binance's own client
        ids for liquidation, ADL and settlement, its original type for stops and take-profits."""
        start = window_start(since)
        answer = await self.client.fapiPrivateGetUserTrades({"symbol": market, "limit": USER_TRADES_LIMIT})
        rows = [
            Row(raw, f"trade row {i + 1} of {USER_TRADES_PATH} ({market})")
            for i, raw in enumerate(as_list(answer, USER_TRADES_PATH))
        ]
        closing = [fill for fill in (_closing_fill(row, side) for row in rows) if fill and fill.at >= start]
        close = last_close(closing)
        if close is None:
            return nothing_found(market, side, start)
        currency = (self.market_by_id(market) or {}).get("settle")
        try:
            order = await self.guard(self.client.fapiPrivateGetOrder({"symbol": market, "orderId": close.order_id}))
        except VenueError as exc:
            return close.cause(CloseKind.UNKNOWN, currency, f"the closing order could not be read: {exc.reason}")
        row = Row(order, f"order {close.order_id} of {market}")
        kind = _close_kind(row.text("clientOrderId", required=False), row.text("origType", required=False))
        return close.cause(kind, currency)


def _listen_key(client: Any) -> str | None:
    linear = client.options.get("linear")
    return linear.get("listenKey") if isinstance(linear, dict) else None


def _closing_fill(row: Row, side: Side) -> ClosingFill | None:
    """A trade that reduced the ``side`` position: the opposite side, on the one-way book or that leg."""
    leg = row.text("positionSide", required=False) or "BOTH"
    if _CLOSES.get(row.text("side") or "") is not side or leg not in ("BOTH", side.upper()):
        return None
    at = row.moment("time")
    quantity, price = row.decimal("qty", required=True), row.decimal("price", required=True)
    if at is None or quantity is None or price is None or quantity <= 0:
        raise BadAnswer(f"bad response: {row.where} has no time, quantity or price")
    return ClosingFill(row.text("orderId") or "", at, quantity, price, row.decimal("realizedPnl"))


def _close_kind(client_order_id: str | None, original_type: str | None) -> CloseKind:
    for prefix, kind in _FORCED_PREFIXES:
        if (client_order_id or "").startswith(prefix):
            return kind
    return _CLOSE_KINDS.get(original_type or "", CloseKind.MANUAL_OR_OTHER)


def _side(leg: str, amount: Decimal, row: Row) -> Side:
    """One-way rows carry the side in the sign; hedge-mode legs name it, and their sign must agree."""
    if leg == "BOTH":
        return Side.LONG if amount > 0 else Side.SHORT
    if leg == "LONG" and amount > 0:
        return Side.LONG
    if leg == "SHORT" and amount < 0:
        return Side.SHORT
    raise BadAnswer(f"bad response: {row.where}: positionSide {leg!r} with positionAmt {amount}")
