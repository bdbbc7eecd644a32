"""Binance USDⓈ-M futures: positions from ``GET /fapi/v3/positionRisk``, read row by row.

ccxt's ``fetch_positions`` drops every row whose ``entryPrice`` is 0, which Binance sends for some open
positions, and takes a row's side from the sign of ``notional``; reconbot reads the raw rows itself so an open
position can never vanish, and a row whose fields contradict each other makes the account unchecked.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt
from ccxt.base.errors import BadResponse

from services.model import ExchangePosition, Side
from services.venues.base import Gateway, ReadProgress
from services.venues.clients import client_config, configure, require_json_body
from services.venues.errors import BadAnswer
from services.venues.rows import Row, as_list

POSITIONS_PATH = "/fapi/v3/positionRisk"


class GuardedBinanceUsdm(ccxt.binanceusdm):
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

    def get_exceptions_by_url(self, url, exactOrBroad):
        """ccxt picks Binance's per-market error table by host; behind a rebased URL, go by the path."""
        tables = super().get_exceptions_by_url(url, exactOrBroad)
        if not tables and url and "/fapi/" in url:
            return self.safe_dict(self.safe_dict(self.exceptions, "linear", {}), exactOrBroad, {})
        return tables


class BinanceUsdm(Gateway):
    exchange_id = "binanceusdm"
    default_db_exchange = "binance"

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
            category=self.category(market),
            hedged=leg != "BOTH",
            updated_at=row.moment("updateTime"),
        )


def _side(leg: str, amount: Decimal, row: Row) -> Side:
    """One-way rows carry the side in the sign; hedge-mode legs name it, and their sign must agree."""
    if leg == "BOTH":
        return Side.LONG if amount > 0 else Side.SHORT
    if leg == "LONG" and amount > 0:
        return Side.LONG
    if leg == "SHORT" and amount < 0:
        return Side.SHORT
    raise BadAnswer(f"bad response: {row.where}: positionSide {leg!r} with positionAmt {amount}")
