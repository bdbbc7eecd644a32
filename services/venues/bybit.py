"""Bybit v5: positions of every settlement family (linear USDT, linear USDC, inverse) from
``GET /v5/position/list``, and their resting conditional orders from ``GET /v5/order/realtime``, every page,
read row by row.

Pagination follows ``nextPageCursor`` until Bybit sends none: an empty page that still carries a cursor is
followed, a repeated cursor is an error, never the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, ClassVar

import ccxt.async_support as ccxt
import ccxt.pro as ccxt_pro
from ccxt.base.errors import BadResponse

from services.causes import CloseCause, CloseKind
from services.model import ExchangePosition, Side
from services.protection import OrderPurpose, ProtectiveOrder
from services.venues.base import Gateway, ReadProgress
from services.venues.budget import Budgeted
from services.venues.clients import client_config, configure, require_json_body
from services.venues.errors import BadAnswer, VenueError
from services.venues.history import ClosingFill, LastClose, by_pnl, last_close, nothing_found, window_start
from services.venues.rows import Row, SourcedRow, as_list, position_closed_by
from services.venues.stream_client import GuardedStream

# Bybit keeps each settlement family in its own listing; linear needs a settle coin to list without symbol.
POSITION_QUERIES: tuple[dict[str, str], ...] = (
    {"category": "linear", "settleCoin": "USDT"},
    {"category": "linear", "settleCoin": "USDC"},
    {"category": "inverse"},
)
PAGE_LIMIT = 200
ORDER_PAGE_LIMIT = 50  # /v5/order/realtime serves at most 50 a page
MAX_PAGES = 1000
CONDITIONAL = "conditional"
_SIDES = {"Buy": Side.LONG, "Sell": Side.SHORT}
_HEDGE_SIDES = {1: Side.LONG, 2: Side.SHORT}
_CLOSES = {"Sell": Side.LONG, "Buy": Side.SHORT}  # the one-way position an order of that side reduces
_PURPOSES = {
    "StopLoss": OrderPurpose.STOP,
    "PartialStopLoss": OrderPurpose.STOP,
    "TakeProfit": OrderPurpose.TAKE_PROFIT,
    "PartialTakeProfit": OrderPurpose.TAKE_PROFIT,
    "TrailingStop": OrderPurpose.TRAILING_STOP,
}
# A plain conditional order, or a TP/SL order that names neither, is a stop or a take-profit by the way the
# price must move to trigger it: 1 rise, 2 fall.
_BY_DIRECTION = ("Stop", "tpslOrder")
_STOP_DIRECTION = {Side.LONG: 2, Side.SHORT: 1}
HISTORY_LIMIT = 100  # one page, newest first, of the last 7 days (both history endpoints serve at most 100)
# execType of the venue's own closes ("Enums": BustTrade a whole-position liquidation, AdlTrade, Delivery, Settle)
_EXEC_KINDS = {
    "BustTrade": CloseKind.LIQUIDATION,
    "AdlTrade": CloseKind.ADL,
    "Delivery": CloseKind.SETTLEMENT,
    "Settle": CloseKind.SETTLEMENT,
}
_CREATE_KINDS = {"CreateByLiq": CloseKind.LIQUIDATION, "CreateByAdl_PassThrough": CloseKind.ADL}
_STOP_KINDS = {
    "StopLoss": CloseKind.STOP_LOSS,
    "PartialStopLoss": CloseKind.STOP_LOSS,
    "TrailingStop": CloseKind.STOP_LOSS,
    "TakeProfit": CloseKind.TAKE_PROFIT,
    "PartialTakeProfit": CloseKind.TAKE_PROFIT,
}


class BybitRequests(Budgeted):
    """Bybit's IP limit counts requests, whatever ccxt's cost for them."""

    def request_weight(self, cost: Any) -> float:
        return 1.0


class BybitStream(GuardedStream, BybitRequests, ccxt_pro.bybit):
    """/v5/private: auth, the position and order topics, pings."""


class GuardedBybit(BybitRequests, ccxt.bybit):
    """Bybit v5: every answer must be JSON carrying ``retCode`` 0 and a ``result`` object."""

    def handle_errors(self, code, reason, url, method, headers, body, response, request_headers, request_body):
        if code < 400:
            require_json_body(self.id, url, body, response)
            if not isinstance(response, dict) or "retCode" not in response:
                raise BadResponse(f"{self.id} {url.split('?', 1)[0]}: answer without retCode")
        super().handle_errors(code, reason, url, method, headers, body, response, request_headers, request_body)
        if code < 400 and not isinstance(response.get("result"), dict):
            raise BadResponse(f"{self.id} {url.split('?', 1)[0]}: answer without a result object")
        return None


def query_name(query: dict[str, Any]) -> str:
    return " ".join(v for k, v in query.items() if k in ("category", "settleCoin"))


_UNIFIED_OPTIONS = ("enableUnifiedMargin", "enableUnifiedAccount", "unifiedMarginStatus")


class Bybit(Gateway):
    exchange_id = "bybit"
    default_db_exchange = "bybit"
    stream_class = BybitStream
    _unified: dict[str, Any] | None = None  # the account's unified-account status, as ccxt.pro reads it
    client_options: ClassVar[dict[str, Any]] = {"fetchMarkets": {"types": ["linear", "inverse"]}}

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
        client = GuardedBybit(client_config(api_key, secret, timeout_ms, dict(cls.client_options)))
        return configure(client, api_base_url=api_base_url, testnet=testnet, demo_trading=demo_trading)

    async def prepare_stream(self, client: Any) -> None:
        """ccxt.pro asks Bybit whether the account is unified (two REST reads) in each watcher, at once, before
        either answer is cached: ask once per account and hand the answer to every later client."""
        if self._unified is None:
            await client.is_unified_enabled()
            self._unified = {key: client.options.get(key) for key in _UNIFIED_OPTIONS}
        client.options.update({k: v for k, v in self._unified.items() if v is not None})

    async def position_rows(self, progress: ReadProgress) -> list[Row]:
        rows: list[Row] = []
        for query in POSITION_QUERIES:
            request = {**query, "limit": PAGE_LIMIT}
            rows += await self._pages(self.client.privateGetV5PositionList, request, "positions", progress)
        return rows

    async def _pages(
        self,
        read: Callable[[dict[str, Any]], Awaitable[Any]],
        request: dict[str, Any],
        noun: str,
        progress: ReadProgress,
        row: Callable[[Any, str], Row] = Row,
    ) -> list[Row]:
        """Follow ``nextPageCursor`` to the last page; a repeated or endless cursor is an error, not the end."""
        what = f"{query_name(request)} {noun}"
        rows: list[Row] = []
        cursor = ""
        seen: set[str] = set()
        for page_number in range(1, MAX_PAGES + 1):
            response = await read({**request, "cursor": cursor} if cursor else dict(request))
            progress.page(what)
            result = response.get("result") if isinstance(response, dict) else None
            if not isinstance(result, dict):
                raise BadAnswer(f"bad response: {what} page {page_number} without a result object")
            page = as_list(result.get("list"), f"{what} page {page_number} list")
            rows += [row(raw, f"{what} page {page_number} row {i + 1}") for i, raw in enumerate(page)]
            cursor = result.get("nextPageCursor") or ""
            if not isinstance(cursor, str):
                raise BadAnswer(f"bad response: {what} page {page_number} has a cursor that is not text")
            if not cursor:
                return rows
            if cursor in seen:
                raise BadAnswer(f"bad response: {what} repeat cursor {cursor[:40]!r} on page {page_number}")
            seen.add(cursor)
        raise BadAnswer(f"bad response: {what} exceed {MAX_PAGES} pages")

    def parse_position(self, row: Row) -> ExchangePosition | None:
        market_id = row.text("symbol") or ""
        row.name(market_id)
        size = row.decimal("size", required=True)
        assert size is not None
        if size == 0:
            return None
        if size < 0:
            raise BadAnswer(f"bad response: {row.where}: negative size {size}")
        side_text = row.text("side", required=False)
        side = _SIDES.get(side_text or "")
        if side is None:
            raise BadAnswer(f"bad response: {row.where}: side {row.raw.get('side')!r} for a position of size {size}")
        index = row.decimal("positionIdx")
        hedge_side = _HEDGE_SIDES.get(int(index)) if index is not None else None
        if index not in (None, 0) and hedge_side is not side:
            raise BadAnswer(f"bad response: {row.where}: positionIdx {index} with side {side_text}")
        market = self.market_by_id(market_id)
        return ExchangePosition(
            account=self.name,
            exchange=self.exchange_id,
            market=market_id,
            symbol=(market or {}).get("symbol") or market_id,
            side=side,
            quantity=size,
            entry_price=row.positive("avgPrice"),
            mark_price=row.positive("markPrice"),
            unrealized_pnl=row.decimal("unrealisedPnl"),
            leverage=row.positive("leverage"),
            liquidation_price=row.positive("liqPrice"),
            notional=row.decimal("positionValue"),
            margin=row.decimal("positionIM"),
            settle=(market or {}).get("settle"),
            stop_loss=row.positive("stopLoss"),
            take_profit=row.positive("takeProfit"),
            amount_step=self.amount_step(market),
            **self.contract_terms(market),
            category=self.category(market),
            hedged=hedge_side is not None,
            opened_at=row.moment("createdTime"),
            updated_at=row.moment("updatedTime"),
        )

    # -- protective orders ----------------------------------------------------------------------------------

    async def order_rows(self, progress: ReadProgress) -> list[Row]:
        """Open orders of every settlement family; each row remembers its category, which cancelling needs."""
        rows: list[Row] = []
        for query in POSITION_QUERIES:
            request = {**query, "openOnly": 0, "limit": ORDER_PAGE_LIMIT}
            origin = partial(SourcedRow, origin=query["category"])
            rows += await self._pages(self.client.privateGetV5OrderRealtime, request, "orders", progress, origin)
        return rows

    def parse_order(self, row: Row) -> ProtectiveOrder | None:
        market_id = row.text("symbol") or ""
        row.name(market_id)
        stop_type = row.text("stopOrderType", required=False)
        if stop_type is None:
            return None  # an active (limit or market) order, not a conditional one
        if row.text("orderStatus") != "Untriggered":
            return None  # triggered or closed: no longer resting
        side_text = row.text("side") or ""
        one_way_closes = _CLOSES.get(side_text)
        if one_way_closes is None:
            raise BadAnswer(f"bad response: {row.where}: side {side_text!r}")
        index = row.decimal("positionIdx")
        reducing = row.flag("reduceOnly") or row.flag("closeOnTrigger")
        if index is not None and index != 0 and index not in _HEDGE_SIDES:
            raise BadAnswer(f"bad response: {row.where}: positionIdx {index}")
        hedge_leg = _HEDGE_SIDES[int(index)] if index else None
        closes = position_closed_by(row, side_text, one_way_closes, hedge_leg, f"positionIdx {index}", reducing)
        if closes is None:
            return None
        purpose = _PURPOSES.get(stop_type)
        if purpose is None and stop_type in _BY_DIRECTION:
            direction = row.decimal("triggerDirection")
            if direction not in (1, 2):
                raise BadAnswer(f"bad response: {row.where}: a {stop_type} order with triggerDirection {direction}")
            purpose = OrderPurpose.STOP if direction == _STOP_DIRECTION[closes] else OrderPurpose.TAKE_PROFIT
        if purpose is None:
            return None  # spot-only kinds (OcoOrder, BidirectionalTpslOrder), a margin-rate close, or unknown
        trigger = row.positive("triggerPrice")
        if trigger is None and purpose is not OrderPurpose.TRAILING_STOP:
            raise BadAnswer(f"bad response: {row.where}: a {stop_type} order without triggerPrice")
        quantity = row.decimal("qty", required=True)
        assert quantity is not None
        if row.text("tpslMode", required=False) == "Full" or (row.flag("closeOnTrigger") and quantity == 0):
            quantity = None
        elif quantity <= 0:
            raise BadAnswer(f"bad response: {row.where}: qty {quantity} for an order that does not close all")
        market = self.market_by_id(market_id)
        if isinstance(row, SourcedRow):
            category = row.origin
        else:
            category = "inverse" if (market or {}).get("inverse") else "linear"
        return ProtectiveOrder(
            account=self.name,
            market=market_id,
            symbol=(market or {}).get("symbol") or market_id,
            order_id=row.text("orderId") or "",
            purpose=purpose,
            closes=closes,
            trigger_price=trigger,
            quantity=quantity,
            source=CONDITIONAL,
            client_order_id=row.text("orderLinkId", required=False) or "",
            category=category,
            created_at=row.moment("createdTime"),
        )

    async def cancel_order(self, order: ProtectiveOrder) -> None:
        if order.source != CONDITIONAL or not order.category:
            raise ValueError(f"not a Bybit conditional order: {order.source!r} in category {order.category!r}")
        await self.guard_order(
            self.client.privatePostV5OrderCancel(
                {"category": order.category, "symbol": order.market, "orderId": order.order_id}
            )
        )

    # -- history ----------------------------------------------------------------------------------------------

    async def read_close_cause(self, market: str, side: Side, since: datetime | None) -> CloseCause:
        """Two requests: the market's recent executions find the last order that reduced the position and how
        it was made (``execType``, ``createType``, ``stopOrderType``); its closed-PnL record gives the realized
        PnL after fees (executions carry none)."""
        start = window_start(since)
        category = "inverse" if (self.market_by_id(market) or {}).get("inverse") else "linear"
        query = {"category": category, "symbol": market, "limit": HISTORY_LIMIT}
        executions = _result_rows(await self.client.privateGetV5ExecutionList(query), f"{market} executions")
        kinds: dict[str, CloseKind | None] = {}
        fills: list[ClosingFill] = []
        for row in executions:
            fill = _closing_execution(row, side)
            if fill is not None and fill.at >= start:
                fills.append(fill)
                kinds.setdefault(fill.order_id, _execution_kind(row))
        close = last_close(fills)
        if close is None:
            return nothing_found(market, side, start)
        currency = (self.market_by_id(market) or {}).get("settle")
        note = None
        try:
            close = await self.guard(self._with_closed_pnl(close, query))
        except VenueError as exc:
            note = f"the realized PnL could not be read: {exc.reason}"
        return close.cause(kinds[close.order_id] or by_pnl(close.realized_pnl), currency, note)

    async def _with_closed_pnl(self, close: LastClose, query: dict[str, Any]) -> LastClose:
        records = _result_rows(await self.client.privateGetV5PositionClosedPnl(query), f"{query['symbol']} closed PnL")
        own = [row for row in records if row.text("orderId") == close.order_id]
        pnls = [row.decimal("closedPnl", required=True) or Decimal(0) for row in own]
        if not pnls:
            return close
        return dataclasses.replace(close, realized_pnl=sum(pnls, Decimal(0)))


def _result_rows(response: Any, what: str) -> list[Row]:
    result = response.get("result") if isinstance(response, dict) else None
    if not isinstance(result, dict):
        raise BadAnswer(f"bad response: {what} without a result object")
    page = as_list(result.get("list"), f"{what} list")
    return [Row(raw, f"{what} row {i + 1}") for i, raw in enumerate(page)]


def _closing_execution(row: Row, side: Side) -> ClosingFill | None:
    """An execution that reduced the ``side`` position: the opposite side with a closed size."""
    if _CLOSES.get(row.text("side") or "") is not side:
        return None
    closed = row.decimal("closedSize")
    if closed is None or closed <= 0:
        return None
    at, price = row.moment("execTime"), row.decimal("execPrice", required=True)
    if at is None or price is None:
        raise BadAnswer(f"bad response: {row.where} has no execTime or execPrice")
    return ClosingFill(row.text("orderId") or "", at, closed, price)


def _execution_kind(row: Row) -> CloseKind | None:
    """What made an execution; None for a conditional order that names neither stop nor take-profit."""
    exec_type = row.text("execType", required=False) or "Trade"
    create_type = row.text("createType", required=False) or ""
    stop_type = row.text("stopOrderType", required=False) or ""
    kind = _EXEC_KINDS.get(exec_type) or _CREATE_KINDS.get(create_type) or _STOP_KINDS.get(stop_type)
    if kind is not None:
        return kind
    return None if stop_type in _BY_DIRECTION else CloseKind.MANUAL_OR_OTHER
