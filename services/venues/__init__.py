"""Venue adapters, one module per venue, chosen by the config's ``exchange`` value.

Adding a venue means one module here (a ``Gateway`` subclass) and one emulator module for its tests.
"""

from __future__ import annotations

import ccxt.async_support as ccxt

from services.settings import AccountSettings
from services.venues.base import Gateway, MarketCache, OrderAck, ReadProgress
from services.venues.binance import BinanceUsdm
from services.venues.bybit import Bybit
from services.venues.errors import (
    AnswerLost,
    AuthFailed,
    BadAnswer,
    RateLimited,
    Rejected,
    Unavailable,
    VenueError,
)

REGISTRY: dict[str, type[Gateway]] = {cls.exchange_id: cls for cls in (BinanceUsdm, Bybit)}
SUPPORTED = tuple(REGISTRY)


def create_client(
    exchange_id: str,
    *,
    api_key: str | None,
    secret: str | None,
    api_base_url: str | None = None,
    testnet: bool = False,
    demo_trading: bool = False,
    timeout_ms: int = 10_000,
) -> ccxt.Exchange:
    """One hardened, rate-limited ccxt client for a venue by its exchange id, loading only contract markets."""
    try:
        venue = REGISTRY[exchange_id]
    except KeyError:
        raise ValueError(f"unsupported exchange {exchange_id!r}; use one of {', '.join(SUPPORTED)}") from None
    return venue.build_client(
        api_key=api_key,
        secret=secret,
        api_base_url=api_base_url,
        testnet=testnet,
        demo_trading=demo_trading,
        timeout_ms=timeout_ms,
    )


def gateway_for(
    account: AccountSettings, client: ccxt.Exchange | None = None, markets: MarketCache | None = None
) -> Gateway:
    """The adapter for an account's venue."""
    return REGISTRY[account.exchange](account, client, markets)


__all__ = [
    "REGISTRY",
    "SUPPORTED",
    "AnswerLost",
    "AuthFailed",
    "BadAnswer",
    "Gateway",
    "MarketCache",
    "OrderAck",
    "RateLimited",
    "ReadProgress",
    "Rejected",
    "Unavailable",
    "VenueError",
    "create_client",
    "gateway_for",
]
