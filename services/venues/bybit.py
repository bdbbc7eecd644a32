"""Bybit v5: positions of every settlement family (linear USDT, linear USDC, inverse) from
``GET /v5/position/list``, every page, read row by row.

Pagination follows ``nextPageCursor`` until Bybit sends none: an empty page that still carries a cursor is
followed, a repeated cursor is an error, never the end.
"""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt
from ccxt.base.errors import BadResponse

from services.model import ExchangePosition, Side
from services.venues.base import Gateway, ReadProgress
from services.venues.clients import client_config, configure, require_json_body
from services.venues.errors import BadAnswer
from services.venues.rows import Row, as_list

# Bybit keeps each settlement family in its own listing; linear needs a settle coin to list without symbol.
POSITION_QUERIES: tuple[dict[str, str], ...] = (
    {"category": "linear", "settleCoin": "USDT"},
    {"category": "linear", "settleCoin": "USDC"},
    {"category": "inverse"},
)
PAGE_LIMIT = 200
MAX_PAGES = 1000
_SIDES = {"Buy": Side.LONG, "Sell": Side.SHORT}
_HEDGE_SIDES = {1: Side.LONG, 2: Side.SHORT}


class GuardedBybit(ccxt.bybit):
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


def query_name(query: dict[str, str]) -> str:
    return " ".join(v for k, v in query.items() if k in ("category", "settleCoin"))


class Bybit(Gateway):
    exchange_id = "bybit"
    default_db_exchange = "bybit"

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
        client = GuardedBybit(
            client_config(api_key, secret, timeout_ms, {"fetchMarkets": {"types": ["linear", "inverse"]}})
        )
        return configure(client, api_base_url=api_base_url, testnet=testnet, demo_trading=demo_trading)

    async def position_rows(self, progress: ReadProgress) -> list[Row]:
        rows: list[Row] = []
        for query in POSITION_QUERIES:
            rows += await self._pages(query, progress)
        return rows

    async def _pages(self, query: dict[str, str], progress: ReadProgress) -> list[Row]:
        """Follow ``nextPageCursor`` to the last page; a repeated or endless cursor is an error, not the end."""
        what = f"{query_name(query)} positions"
        rows: list[Row] = []
        cursor = ""
        seen: set[str] = set()
        for page_number in range(1, MAX_PAGES + 1):
            request: dict[str, Any] = {**query, "limit": PAGE_LIMIT}
            if cursor:
                request["cursor"] = cursor
            response = await self.client.privateGetV5PositionList(request)
            progress.page(what)
            result = response.get("result") if isinstance(response, dict) else None
            if not isinstance(result, dict):
                raise BadAnswer(f"bad response: {what} page {page_number} without a result object")
            page = as_list(result.get("list"), f"{what} page {page_number} list")
            rows += [Row(raw, f"{what} page {page_number} row {i + 1}") for i, raw in enumerate(page)]
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
            stop_loss_known=True,
            take_profit=row.positive("takeProfit"),
            amount_step=self.amount_step(market),
            category=self.category(market),
            hedged=hedge_side is not None,
            opened_at=row.moment("createdTime"),
            updated_at=row.moment("updatedTime"),
        )
