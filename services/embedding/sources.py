"""What a trading bot hands to the seed-compatible classes, turned into reconbot's own sources.

``repository`` may be reconbot's store or the bot's own object with ``get_active_positions()`` returning dicts;
``exchange_managers`` may map names to reconbot gateways, to the bot's managers holding a ccxt exchange in
``.exchange``, to ccxt exchanges themselves, or to any object with ``fetch_positions()``. A real ccxt exchange
is read with reconbot's own venue adapter (a failed or empty read is an unchecked account, never "no
positions"); an object that only offers ``fetch_positions()`` has its answer taken as given.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import ccxt.async_support as ccxt

from services.database import DatabaseError
from services.model import ExchangePosition, Side
from services.positions import Change, PositionRow, PositionsStore
from services.positions.rows import parse_decimal, parse_moment
from services.positions_config import PositionsSettings
from services.protection import ProtectiveOrder
from services.settings import AccountSettings
from services.venues import REGISTRY, Gateway, ReadProgress, Rejected
from services.venues.rows import Row

VENUE_ALIASES = {"binance": "binanceusdm", "binanceusdm": "binanceusdm", "bybit": "bybit"}
_SIDES = {"long": Side.LONG, "buy": Side.LONG, "short": Side.SHORT, "sell": Side.SHORT}
_UNIFIED = re.compile(r"^(?P<base>[A-Z0-9]+)/(?P<quote>[A-Z0-9]+)(?::(?P<settle>[A-Z0-9]+)(?:-(?P<expiry>\d{6}))?)?$")


def venue_of(name: str, client: Any = None) -> str:
    """The venue a manager's name (or its ccxt client's id) stands for."""
    for candidate in (getattr(client, "id", None), name):
        if isinstance(candidate, str) and candidate.lower() in VENUE_ALIASES:
            return VENUE_ALIASES[candidate.lower()]
    raise ValueError(f"exchange_managers[{name!r}]: reconbot watches {', '.join(sorted(set(VENUE_ALIASES.values())))}")


def market_id_of(symbol: str) -> str:
    """A ccxt symbol as the venue's market id when no market list is at hand (BTC/USDT:USDT → BTCUSDT)."""
    match = _UNIFIED.match(symbol.strip().upper())
    if not match:
        return symbol.strip().upper()
    market = match["base"] + match["quote"]
    return f"{market}_{match['expiry']}" if match["expiry"] else market


def _account(name: str, venue: str, client: Any = None) -> AccountSettings:
    key = getattr(client, "apiKey", None) if client is not None else None
    secret = getattr(client, "secret", None) if client is not None else None
    return AccountSettings(
        name=name,
        exchange=venue,
        api_key=key if isinstance(key, str) and key else "unused",
        secret=secret if isinstance(secret, str) and secret else "unused",
        db_exchange=name,
        db_account=name,
    )


class GivenPositions(Gateway):
    """An object that only offers ``fetch_positions()`` (the bot's own wrapper, a test double): its answer, in
    ccxt's unified form, is taken as given."""

    owns_client = False
    reads_orders = False
    no_orders_reason = "the trading bot's position source reports no orders"

    @classmethod
    def build_client(cls, **_: Any) -> ccxt.Exchange:
        raise NotImplementedError("the bot supplies the source")

    @property
    def exchange_id(self) -> str:
        return self.account.exchange

    async def load_markets(self) -> None:
        """The source keeps its own markets, if any."""

    def _markets(self) -> Mapping[str, Any]:
        markets = getattr(self.client, "markets", None)
        return markets if isinstance(markets, dict) else {}

    def resolve_market(self, symbol: str) -> tuple[str, bool]:
        market = self._markets().get(symbol)
        if isinstance(market, dict) and market.get("id"):
            return str(market["id"]), True
        return market_id_of(symbol), True

    async def positions(self) -> list[ExchangePosition]:
        answer = await self.client.fetch_positions()
        if not isinstance(answer, list):
            return []
        positions = {}
        for item in answer:
            position = self._convert(item)
            if position is not None:
                positions[position.key] = position
        return list(positions.values())

    def _convert(self, item: Any) -> ExchangePosition | None:
        if not isinstance(item, dict):
            return None
        contracts, _ = parse_decimal(item.get("contracts"))
        side = _SIDES.get(str(item.get("side") or "").lower())
        symbol = str(item.get("symbol") or "")
        if contracts is None or contracts <= 0 or side is None or not symbol:
            return None
        info = item.get("info") if isinstance(item.get("info"), dict) else {}
        market = str(info.get("symbol") or self.resolve_market(symbol)[0])

        def number(*keys: str) -> Decimal | None:
            for key in keys:
                value, why = parse_decimal(item.get(key))
                if not why:
                    return value
            return None

        entry = number("entryPrice")
        return ExchangePosition(
            account=self.name,
            exchange=self.exchange_id,
            market=market,
            symbol=symbol,
            side=side,
            quantity=contracts,
            entry_price=entry if entry else None,
            mark_price=number("markPrice"),
            unrealized_pnl=number("unrealizedPnl", "unrealized_pnl"),
            leverage=number("leverage"),
            liquidation_price=number("liquidationPrice"),
            stop_loss=number("stopLossPrice"),
            hedged=bool(item.get("hedged")),
        )

    async def position_rows(self, progress: ReadProgress) -> list[Row]:  # pragma: no cover - not used
        return []

    def parse_position(self, row: Row) -> ExchangePosition | None:  # pragma: no cover - not used
        return None

    async def order_rows(self, progress: ReadProgress) -> list[Row]:  # pragma: no cover - not used
        return []

    def parse_order(self, row: Row) -> ProtectiveOrder | None:  # pragma: no cover - not used
        return None

    async def cancel_order(self, order: ProtectiveOrder) -> None:
        raise Rejected("the trading bot's position source cannot cancel orders")


def gateways_for(exchange_managers: Mapping[str, Any]) -> dict[str, Gateway]:
    """A reconbot gateway for every name the bot gave, whatever it gave."""
    gateways: dict[str, Gateway] = {}
    for name, manager in exchange_managers.items():
        if isinstance(manager, Gateway):
            gateways[name] = manager
            continue
        client = manager if isinstance(manager, ccxt.Exchange) else getattr(manager, "exchange", None)
        if isinstance(client, ccxt.Exchange):
            venue = venue_of(name, client)
            gateway = REGISTRY[venue](_account(name, venue, client), client)
            gateway.owns_client = False  # the bot's client: the bot closes it
            gateways[name] = gateway
            continue
        source = client if client is not None and hasattr(client, "fetch_positions") else manager
        if not hasattr(source, "fetch_positions"):
            raise ValueError(f"exchange_managers[{name!r}] offers neither a ccxt exchange nor fetch_positions()")
        gateways[name] = GivenPositions(_account(name, venue_of(name)), source)
    return gateways


def by_account(given: Mapping[str, Gateway]) -> dict[str, Gateway]:
    """The gateways by their accounts' names, which every finding carries, whatever key the bot gave them."""
    gateways: dict[str, Gateway] = {}
    for key, gateway in given.items():
        if gateway.name in gateways:
            raise ValueError(f"exchange_managers[{key!r}]: another manager already watches account {gateway.name!r}")
        gateways[gateway.name] = gateway
    return gateways


class BotRepository(PositionsStore):
    """The trading bot's own repository: ``get_active_positions(exchange=…)`` returning dicts (``id``,
    ``symbol``, ``quantity``, optionally ``side``; without a side, any side matches)."""

    def __init__(self, repository: Any):
        super().__init__(PositionsSettings(columns={"account": None}))
        self.source = repository

    async def inspect(self) -> None:
        """The bot's dicts carry their own names."""

    @property
    def has_account_column(self) -> bool:
        return False

    async def _rows_of(self, exchange: str) -> list[Any]:
        getter = self.source.get_active_positions
        try:
            parameters = inspect.signature(getter).parameters
        except (TypeError, ValueError):
            parameters = {}
        takes_exchange = "exchange" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        answer = getter(exchange=exchange) if takes_exchange else getter()
        rows = await answer if inspect.isawaitable(answer) else answer
        return [r for r in rows or [] if not isinstance(r, dict) or r.get("exchange") in (None, exchange)]

    def _row(self, raw: Any, exchange: str, index: int) -> PositionRow:
        data = raw if isinstance(raw, dict) else {}
        quantity, why = parse_decimal(data.get("quantity"))
        side_text = data.get("side")
        side = _SIDES.get(str(side_text).lower()) if side_text else None
        symbol = data.get("symbol")
        problems = [f"quantity {why}"] if why else []
        if not isinstance(raw, dict):
            problems.append("is not a dict")
        if not symbol:
            problems.append("symbol is empty")
        if side_text and side is None:
            problems.append(f"side {side_text!r} is neither long nor short")
        opened_at, _ = parse_moment(data.get("opened_at"))
        row_id = data.get("id")
        return PositionRow(
            id=str(row_id) if row_id is not None else f"?{index + 1}",
            exchange=exchange,
            account=None,
            symbol=str(symbol) if symbol else None,
            side=side,
            quantity=abs(quantity) if quantity is not None else None,
            entry_price=parse_decimal(data.get("entry_price"))[0],
            status="active",
            opened_at=opened_at,
            updated_at=None,
            closed_at=None,
            exit_reason=None,
            problem="; ".join(problems) or None,
            side_text=str(side_text) if side_text else None,
            any_side=not side_text,
        )

    async def active(
        self, db_exchanges: Collection[str], db_accounts: Collection[str] | None = None
    ) -> list[PositionRow]:
        rows: list[PositionRow] = []
        for exchange in db_exchanges:
            rows += [self._row(raw, exchange, i) for i, raw in enumerate(await self._rows_of(exchange))]
        return rows

    def is_active(self, row: PositionRow) -> bool:
        return True

    async def get(self, position_id: str) -> PositionRow | None:
        return None

    @contextlib.asynccontextmanager
    async def _change(self, audit_pool: asyncpg.Pool) -> AsyncIterator[Change]:
        raise DatabaseError("the bot's repository is written through its own methods")
        yield  # pragma: no cover

    async def insert_if_untracked(self, change: Change, **_: Any) -> PositionRow | None:
        raise DatabaseError("the bot's repository is written through its own methods")

    async def set_quantity_if(self, change: Change, row: PositionRow, quantity: Decimal) -> PositionRow | None:
        raise DatabaseError("the bot's repository is written through its own methods")

    async def close_if_active(
        self, change: Change, position_id: str, exit_reason: str, expected: PositionRow | None = None, **_: Any
    ) -> PositionRow | None:
        raise DatabaseError("the bot's repository is written through its own methods")

    async def mark_closed(self, row_id: str, exit_reason: str, closed_at: datetime) -> None:
        """Close a confirmed ghost the way the seed did: ``update_position(id, status='closed', …)``, or
        ``close_position(id, reason=…)`` for a repository that only has that."""
        key: Any = int(row_id) if row_id.isdigit() else row_id
        update = getattr(self.source, "update_position", None)
        if update is not None:
            result = update(key, status="closed", closed_at=closed_at, exit_reason=exit_reason)
        else:
            result = self.source.close_position(key, reason=exit_reason)
        if inspect.isawaitable(result):
            await result
