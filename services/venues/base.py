"""What every venue adapter shares: one ccxt client per account, a market list shared per venue endpoint, a
deadline on every read, typed errors, and the rule that a read returns the complete book or raises.

A venue module subclasses ``Gateway`` and fills in how its positions are listed and how one raw row reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import ccxt.async_support as ccxt
from yarl import URL

from services.causes import CloseCause
from services.model import ExchangePosition, Side
from services.protection import ProtectiveOrder
from services.settings import AccountSettings
from services.venues.clients import client_config, configure
from services.venues.errors import BadAnswer, Unavailable, VenueError, from_ccxt, order_error
from services.venues.rows import Row

log = logging.getLogger(__name__)

MARKETS_TTL_S = 6 * 3600.0
T = TypeVar("T")


class ReadProgress:
    """How far a read got, so a read stopped by its deadline says what it had done."""

    def __init__(self) -> None:
        self.pages: Counter[str] = Counter()

    def page(self, what: str) -> None:
        self.pages[what] += 1

    def __str__(self) -> str:
        return ", ".join(f"{n} page{'s' if n != 1 else ''} of {what} read" for what, n in self.pages.items())


@dataclass(frozen=True, slots=True)
class OrderAck:
    """The venue's answer to an order: its id and what it says it did."""

    order_id: str
    client_order_id: str
    status: str | None = None
    filled: Decimal | None = None


class MarketCache:
    """One market list per venue endpoint, loaded once and shared by every account there through ccxt's
    ``set_markets_from_exchange``; reloaded after ``ttl_s`` so new listings resolve."""

    def __init__(self, ttl_s: float = MARKETS_TTL_S):
        self.ttl_s = ttl_s
        self._sources: dict[tuple[Any, ...], tuple[float, ccxt.Exchange]] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    @staticmethod
    def key(account: AccountSettings) -> tuple[Any, ...]:
        """Accounts that reach the venue at one host share its markets, its sockets and its per-IP limit (a base
        URL's path, such as an account prefix on a proxy, does not make another endpoint)."""
        base = URL(account.api_base_url).origin() if account.api_base_url else None
        return (account.exchange, account.testnet, account.demo_trading, str(base) if base else None)

    async def ensure(self, gateway: Gateway) -> None:
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
                raise BadAnswer("bad response: the venue listed no markets")
            self._sources[key] = (now, gateway.client)


class Gateway(ABC):
    """One account on one venue, read and changed through ccxt."""

    exchange_id: ClassVar[str]
    default_db_exchange: ClassVar[str]
    stream_class: ClassVar[type[Any] | None] = None  # the venue's ccxt.pro class; None: the venue only polls
    # How often the stream client pings (ccxt's keepAlive; Bybit asks for 20 s, Binance answers any ping). A live
    # venue answers each ping, so a socket silent for stream_silence_s is dead whatever its TCP state says.
    stream_ping_s = 20.0
    client_options: ClassVar[dict[str, Any]] = {}
    owns_client = True  # False when a program embedding reconbot lent its own client
    reads_orders = True  # False for a source that reports positions only
    no_orders_reason = "this source reports no orders"

    def __init__(
        self, account: AccountSettings, client: ccxt.Exchange | None = None, markets: MarketCache | None = None
    ):
        self.account = account
        self.markets = markets or MarketCache()
        self.client = client or self.create_client(account)
        self.holds_orders = True  # read orders at the first check even without positions, then while any rest
        self.stream_session: Any = None  # the endpoint's shared aiohttp session for streams, when one is lent
        self.budget: Any = None  # the endpoint's shared request budget
        self.slots: Any = None  # the endpoint's connection slots: a request waits for one before it is signed

    # -- construction ---------------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
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
        """A rate-limited ccxt client pointed at the chosen environment, loading only contract markets."""

    @classmethod
    def create_client(cls, account: AccountSettings) -> ccxt.Exchange:
        api_key, secret = account.credentials()
        return cls.build_client(
            api_key=api_key,
            secret=secret,
            api_base_url=account.api_base_url,
            testnet=account.testnet,
            demo_trading=account.demo_trading,
            timeout_ms=int(account.timeout_s * 1000),
        )

    # -- private stream --------------------------------------------------------------------------------------

    def stream_unavailable(self) -> str | None:
        """Why this account cannot stream (it then polls), or None when it can."""
        if self.stream_class is None:
            return f"{self.exchange_id} has no private stream in reconbot"
        if not self.owns_client:
            return "its ccxt client was lent by the embedding program"
        if self.account.api_base_url and not self.account.ws_base_url:
            return "api_base_url is set without ws_base_url"
        return None

    @property
    def stream_silence_s(self) -> float:
        """How long a stream may say nothing (no event, no pong) before it counts as down: a ping interval and
        half of one more for the answer."""
        return self.stream_ping_s * 1.5

    def create_stream_client(self) -> Any:
        """A ccxt.pro client for the account's private stream: the same environment and rebased URLs as the
        REST client, the markets it already loaded, no REST snapshot of its own (reconbot reads the book), and
        a ping every ``stream_ping_s``."""
        assert self.stream_class is not None
        api_key, secret = self.account.credentials()
        options = {**self.client_options, "watchPositions": {"fetchPositionsSnapshot": False}}
        config = client_config(api_key, secret, int(self.account.timeout_s * 1000), options)
        client = configure(
            self.stream_class(config),
            api_base_url=self.account.api_base_url,
            testnet=self.account.testnet,
            demo_trading=self.account.demo_trading,
            ws_base_url=self.account.ws_base_url,
        )
        client.streaming = {**client.streaming, "keepAlive": int(self.stream_ping_s * 1000)}
        if self.client.markets:
            client.set_markets_from_exchange(self.client)
        client.venue_budget = self.budget
        client.venue_slots = self.slots
        if self.stream_session is not None:
            client.session, client.own_session = self.stream_session, False
        return client

    async def prepare_stream(self, client: Any) -> None:  # noqa: B027 - most venues need nothing
        """What the venue's stream needs before its watchers start (by default nothing)."""

    async def close_stream_client(self, client: Any) -> None:
        await client.close()

    def stream_secrets(self, client: Any) -> tuple[str, ...]:
        """Credentials the stream holds besides the API key and secret (Binance: its listenKey)."""
        return ()

    async def keep_stream_alive(self, client: Any) -> None:
        """What keeps the venue's stream authorised besides ccxt's pings (Binance: the listenKey); by default
        nothing, forever."""
        await asyncio.Event().wait()

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.account.secrets()

    def deadline_s(self) -> float:
        """A whole read may queue behind the rate limiter and page, but never hangs forever."""
        return self.account.read_deadline_s or max(30.0, self.account.timeout_s * 6)

    # -- failures as typed errors ---------------------------------------------------------------------------

    async def guard(self, coroutine: Awaitable[T], progress: ReadProgress | None = None) -> T:
        """Await a read within the deadline; every failure becomes a typed ``VenueError`` with a reason."""
        deadline = self.deadline_s()
        try:
            async with asyncio.timeout(deadline) as scope:
                return await coroutine
        except VenueError:
            raise
        except TimeoutError as exc:
            if scope.expired():
                done = f" ({progress})" if progress is not None and progress.pages else ""
                raise Unavailable(f"the read did not finish within its {deadline:g}s deadline{done}") from None
            raise from_ccxt(exc, self.account.timeout_s, self.secrets) from None
        except Exception as exc:
            raise from_ccxt(exc, self.account.timeout_s, self.secrets) from None

    async def guard_order(self, coroutine: Awaitable[T]) -> T:
        """Await a request that changes something: a lost answer is ``AnswerLost``, never "not done"."""
        try:
            async with asyncio.timeout(self.deadline_s()):
                return await coroutine
        except VenueError:
            raise
        except TimeoutError:
            raise order_error(ccxt.RequestTimeout("no answer within the deadline"), None, self.secrets) from None
        except Exception as exc:
            raise order_error(exc, self.account.timeout_s, self.secrets) from None

    # -- markets ----------------------------------------------------------------------------------------------

    async def load_markets(self) -> None:
        await self.markets.ensure(self)

    def market_by_id(self, market_id: str) -> dict[str, Any] | None:
        candidates = (self.client.markets_by_id or {}).get(market_id) or []
        contracts = [m for m in candidates if m.get("contract")]
        return (contracts or candidates or [None])[0]

    def resolve_market(self, symbol: str) -> tuple[str, bool]:
        """Map a DB symbol (market id or ccxt symbol) to the venue's market id; False when not listed."""
        text = symbol.strip()
        for candidate in (text, text.upper()):
            if self.market_by_id(candidate) is not None:
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

    @staticmethod
    def category(market: dict[str, Any] | None) -> str | None:
        if not market:
            return None
        if market.get("inverse"):
            return "inverse"
        settle = market.get("settle")
        return f"linear {settle}" if settle else "linear"

    @staticmethod
    def contract_terms(market: dict[str, Any] | None) -> dict[str, Any]:
        """What turns contracts into money: the contract size, whether it is inverse (contracts in USD), and
        the price tick that prices are shown at."""
        market = market or {}
        size = market.get("contractSize")
        tick = (market.get("precision") or {}).get("price")
        return {
            "contract_size": Decimal(str(size)) if size else None,
            "inverse": bool(market.get("inverse")),
            "price_tick": Decimal(str(tick)) if tick else None,
        }

    @staticmethod
    def amount_step(market: dict[str, Any] | None) -> Decimal | None:
        step = ((market or {}).get("precision") or {}).get("amount")
        return Decimal(str(step)) if step is not None else None

    # -- positions --------------------------------------------------------------------------------------------

    async def positions(self) -> list[ExchangePosition]:
        """Every non-zero position of every category, or a ``VenueError``; never a partial list."""
        await self.load_markets()
        progress = ReadProgress()
        rows = await self.guard(self.position_rows(progress), progress)
        positions: dict[tuple[str, Side], ExchangePosition] = {}
        for row in rows:
            position = self.parse_position(row)
            if position is None:
                continue
            key = (position.market, position.side)
            if key in positions:
                raise BadAnswer(f"bad response: two rows for {position.market} {position.side.upper()} in one answer")
            positions[key] = position
        return list(positions.values())

    @abstractmethod
    async def position_rows(self, progress: ReadProgress) -> list[Row]:
        """Every raw position row of the account, all categories and pages."""

    @abstractmethod
    def parse_position(self, row: Row) -> ExchangePosition | None:
        """One raw row as a position; None for a zero-size row; ``BadAnswer`` for a row that makes no sense."""

    # -- protective orders ------------------------------------------------------------------------------------

    async def protective_orders(self) -> list[ProtectiveOrder]:
        """Every resting reduce-only / close-position stop or take-profit of every category and page, or a
        ``VenueError``; never a partial list (a stop missed would read as "no stop")."""
        await self.load_markets()
        progress = ReadProgress()
        rows = await self.guard(self.order_rows(progress), progress)
        return [order for order in (self.parse_order(row) for row in rows) if order is not None]

    @abstractmethod
    async def order_rows(self, progress: ReadProgress) -> list[Row]:
        """Every raw open-order row of the account that may be a conditional order, all categories and pages."""

    @abstractmethod
    def parse_order(self, row: Row) -> ProtectiveOrder | None:
        """One raw order row as a protective order; None for an order that protects nothing (a plain limit
        order, an order that opens); ``BadAnswer`` for a row that makes no sense."""

    @abstractmethod
    async def cancel_order(self, order: ProtectiveOrder) -> None:
        """Cancel one resting order where the venue keeps it; a lost answer is ``AnswerLost``."""

    # -- history ----------------------------------------------------------------------------------------------

    async def close_cause(self, market: str, side: Side, since: datetime | None) -> CloseCause:
        """Why the (market, side) position closed, from the venue's history since ``since`` (bounded to the
        venue's window); a failed read is an unknown cause with its reason, never an error."""
        try:
            await self.load_markets()
            return await self.guard(self.read_close_cause(market, side, since))
        except VenueError as exc:
            return CloseCause.unknown(f"the history could not be read: {exc.reason}")

    async def read_close_cause(self, market: str, side: Side, since: datetime | None) -> CloseCause:
        """The venue-specific read behind ``close_cause`` (one or two history requests for this market); a
        venue whose history reconbot does not read says so."""
        return CloseCause.unknown(f"{self.exchange_id}'s trade history is not read")

    # -- changes ----------------------------------------------------------------------------------------------

    def close_params(self, position: ExchangePosition) -> dict[str, Any]:
        """Order parameters that make a market order only reduce ``position``.

        In hedge mode ccxt turns ``hedged`` into the venue's position side (positionSide / positionIdx), which
        both venues require instead of reduceOnly there."""
        params: dict[str, Any] = {"reduceOnly": True}
        if position.hedged:
            params["hedged"] = True
        return params

    async def close_position(self, position: ExchangePosition, client_order_id: str) -> OrderAck:
        """Send one reduce-only market order for the position's exact size and side."""
        side = "sell" if position.side is Side.LONG else "buy"
        params = {**self.close_params(position), "clientOrderId": client_order_id}
        order = await self.guard_order(
            self.client.create_order(position.symbol, "market", side, float(position.quantity), None, params)
        )
        filled = order.get("filled")
        return OrderAck(
            order_id=str(order.get("id") or "?"),
            client_order_id=client_order_id,
            status=order.get("status"),
            filled=Decimal(str(filled)) if filled is not None else None,
        )

    async def close(self) -> None:
        if self.owns_client:
            await self.client.close()
