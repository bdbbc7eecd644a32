"""Exchange gateway: one ccxt client per account, reading every position category the account can hold.

The one promise it keeps: it returns the account's complete list of open positions or raises
``ExchangeUnavailable`` with a one-line reason. A failure never turns into an empty list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt.async_support as ccxt

from services.exchange_client import create_client
from services.model import ExchangePosition, Side
from services.redaction import redact
from services.settings import AccountSettings

log = logging.getLogger(__name__)

# Bybit keeps each settlement family in its own listing; linear needs a settle coin to list without symbol.
BYBIT_POSITION_QUERIES: tuple[dict[str, str], ...] = (
    {"category": "linear", "settleCoin": "USDT"},
    {"category": "linear", "settleCoin": "USDC"},
    {"category": "inverse"},
)
BYBIT_PAGE_LIMIT = 200
MAX_PAGES = 500

# (opened, updated) timestamp fields of a raw position row, per venue.
_TIMESTAMP_FIELDS = {"binanceusdm": (None, "updateTime"), "bybit": ("createdTime", "updatedTime")}


class ExchangeUnavailable(Exception):
    """The account could not be read; ``reason`` is one line, free of secrets."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def describe_error(exc: BaseException, timeout_s: float | None = None) -> str:
    """Name a failure the way an operator thinks of it; auth errors are called auth errors."""
    detail = " ".join(str(exc).split())[:160]
    if isinstance(exc, ccxt.AuthenticationError):
        return f"authentication failed (check the API key and secret): {detail}"
    if isinstance(exc, ccxt.PermissionDenied):
        return f"permission denied (the API key lacks a permission): {detail}"
    if isinstance(exc, ccxt.AccountSuspended):
        return f"account suspended: {detail}"
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return f"rate limited: {detail}"
    if isinstance(exc, ccxt.RequestTimeout | TimeoutError):
        return f"timed out after {timeout_s:g}s" if timeout_s else "timed out"
    if isinstance(exc, ccxt.BadResponse | ccxt.NullResponse):
        return f"bad response: {detail}"
    if isinstance(exc, ccxt.OnMaintenance):
        return f"exchange under maintenance: {detail}"
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        return f"exchange not available: {detail}"
    if isinstance(exc, ccxt.NetworkError):
        return f"network error: {detail}"
    if isinstance(exc, ccxt.OperationFailed):
        return f"exchange failed to answer: {detail}"
    if isinstance(exc, ccxt.ExchangeError):
        return f"exchange error: {detail}"
    return f"unexpected {type(exc).__name__}: {detail}"


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _moment(value: Any) -> datetime | None:
    try:
        millis = int(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(millis / 1000, UTC) if millis > 0 else None


MARKETS_TTL_S = 6 * 3600.0


class MarketCache:
    """One market list per venue endpoint, loaded once and shared by every account there through ccxt's
    ``set_markets_from_exchange``; reloaded after ``ttl_s`` so new listings resolve."""

    def __init__(self, ttl_s: float = MARKETS_TTL_S):
        self.ttl_s = ttl_s
        self._sources: dict[tuple[Any, ...], tuple[float, ccxt.Exchange]] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    @staticmethod
    def key(account: AccountSettings) -> tuple[Any, ...]:
        return (account.exchange, account.testnet, account.demo_trading, account.api_base_url)

    async def ensure(self, gateway: ExchangeGateway) -> None:
        key = self.key(gateway.account)
        async with self._locks.setdefault(key, asyncio.Lock()):
            now = time.monotonic()
            entry = self._sources.get(key)
            if entry is not None and now - entry[0] < self.ttl_s:
                if gateway.client.markets is not entry[1].markets:
                    gateway.client.set_markets_from_exchange(entry[1])
                return
            await gateway.guard(gateway.client.load_markets(reload=entry is not None))
            if not gateway.client.markets:
                raise ExchangeUnavailable("bad response: the venue listed no markets")
            self._sources[key] = (now, gateway.client)


class ExchangeGateway:
    """Reads one account's positions through ccxt's unified API."""

    def __init__(
        self, account: AccountSettings, client: ccxt.Exchange | None = None, markets: MarketCache | None = None
    ):
        self.account = account
        self.markets = markets or MarketCache()
        api_key, secret = account.credentials()
        self.client = client or create_client(
            account.exchange,
            api_key=api_key,
            secret=secret,
            api_base_url=account.api_base_url,
            testnet=account.testnet,
            demo_trading=account.demo_trading,
            timeout_ms=int(account.timeout_s * 1000),
        )

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def exchange_id(self) -> str:
        return self.account.exchange

    def _deadline(self) -> float:
        """A whole read may queue behind the rate limiter and page, but never hangs forever."""
        return max(30.0, self.account.timeout_s * 6)

    async def guard(self, coroutine: Any) -> Any:
        """Await a ccxt call within the deadline; every failure becomes ExchangeUnavailable with a reason."""
        try:
            async with asyncio.timeout(self._deadline()):
                return await coroutine
        except ExchangeUnavailable:
            raise
        except Exception as exc:
            reason = redact(describe_error(exc, self.account.timeout_s), self.account.secrets())
            raise ExchangeUnavailable(reason) from None

    async def load_markets(self) -> None:
        await self.markets.ensure(self)

    async def positions(self) -> list[ExchangePosition]:
        """Every non-zero position of every category, or ExchangeUnavailable."""
        await self.load_markets()
        if self.exchange_id == "bybit":
            pages = await self.guard(asyncio.gather(*(self._bybit_rows(q) for q in BYBIT_POSITION_QUERIES)))
            unified = [self.client.parse_position(row) for rows in pages for row in rows]
        else:
            unified = await self.guard(self.client.fetch_positions())
        return self._convert(unified)

    async def _bybit_rows(self, query: dict[str, str]) -> list[dict[str, Any]]:
        """Follow nextPageCursor to the last page; a repeated or endless cursor is an error, not the end."""
        rows: list[dict[str, Any]] = []
        cursor = ""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            request = {**query, "limit": BYBIT_PAGE_LIMIT}
            if cursor:
                request["cursor"] = cursor
            response = await self.client.privateGetV5PositionList(request)
            result = response["result"]
            page = result.get("list")
            if not isinstance(page, list):
                raise ExchangeUnavailable(f"bad response: {query['category']} positions without a list")
            rows.extend(page)
            cursor = result.get("nextPageCursor") or ""
            if not cursor or not page:
                return rows
            if cursor in seen:
                raise ExchangeUnavailable(f"bad response: {query['category']} positions repeat cursor {cursor!r}")
            seen.add(cursor)
        raise ExchangeUnavailable(f"bad response: {query['category']} positions exceed {MAX_PAGES} pages")

    def _convert(self, unified: Iterable[dict[str, Any]]) -> list[ExchangePosition]:
        opened_field, updated_field = _TIMESTAMP_FIELDS[self.exchange_id]
        positions = []
        for item in unified:
            info = item.get("info") or {}
            market_id = info.get("symbol")
            quantity = _decimal(item.get("contracts"))
            side = item.get("side")
            if not market_id or quantity is None or quantity < 0:
                raise ExchangeUnavailable(f"bad response: unreadable position row for {market_id or '?'}")
            if quantity == 0:
                continue
            if side not in ("long", "short"):
                raise ExchangeUnavailable(f"bad response: position {market_id} without a side")
            market = self._market_by_id(market_id)
            step = _decimal((market or {}).get("precision", {}).get("amount"))
            leverage = _decimal(item.get("leverage"))
            if leverage is None:
                notional, margin = _decimal(item.get("notional")), _decimal(item.get("initialMargin"))
                if notional and margin:
                    leverage = (abs(notional) / margin).quantize(Decimal("0.01"))
            stop_loss = _decimal(item.get("stopLossPrice"))
            positions.append(
                ExchangePosition(
                    account=self.name,
                    exchange=self.exchange_id,
                    market=market_id,
                    symbol=item.get("symbol") or market_id,
                    side=Side(side),
                    quantity=quantity,
                    entry_price=_decimal(item.get("entryPrice")),
                    mark_price=_decimal(item.get("markPrice")),
                    unrealized_pnl=_decimal(item.get("unrealizedPnl")),
                    leverage=leverage,
                    stop_loss=stop_loss if stop_loss else None,
                    stop_loss_known=self.exchange_id == "bybit",
                    amount_step=step,
                    category=_category(market),
                    hedged=bool(item.get("hedged")),
                    opened_at=_moment(info.get(opened_field)) if opened_field else None,
                    updated_at=_moment(info.get(updated_field)),
                )
            )
        return positions

    def _market_by_id(self, market_id: str) -> dict[str, Any] | None:
        candidates = (self.client.markets_by_id or {}).get(market_id) or []
        contracts = [m for m in candidates if m.get("contract")]
        return (contracts or candidates or [None])[0]

    def resolve_market(self, symbol: str) -> tuple[str, bool]:
        """Map a DB symbol (market id or ccxt symbol) to the venue's market id; False when not listed."""
        text = symbol.strip()
        for candidate in (text, text.upper()):
            if self._market_by_id(candidate) is not None:
                return candidate, True
            market = (self.client.markets or {}).get(candidate)
            if market is not None and market.get("contract"):
                return market["id"], True
        try:
            market = self.client.market(text)
        except Exception:
            market = None
        if market is not None and market.get("contract"):
            return market["id"], True
        return text.upper(), False

    async def close_position(self, position: ExchangePosition) -> dict[str, Any]:
        """Send one reduce-only market order for the position's exact size and side; returns ccxt's order.

        In hedge mode ccxt turns ``hedged`` into the venue's position side (positionSide / positionIdx),
        which both venues require instead of reduceOnly there.
        """
        side = "sell" if position.side is Side.LONG else "buy"
        params: dict[str, Any] = {"reduceOnly": True}
        if position.hedged:
            params["hedged"] = True
        return await self.guard(
            self.client.create_order(position.symbol, "market", side, float(position.quantity), None, params)
        )

    async def close(self) -> None:
        await self.client.close()


def _category(market: dict[str, Any] | None) -> str | None:
    if not market:
        return None
    if market.get("inverse"):
        return "inverse"
    settle = market.get("settle")
    return f"linear {settle}" if settle else "linear"
