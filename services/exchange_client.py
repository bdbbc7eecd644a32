"""A ccxt client for a venue by its exchange id, hardened so a bad answer can never look like an empty account."""

from __future__ import annotations

import ccxt.async_support as ccxt

from services.venues import REGISTRY, SUPPORTED


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
    """Build one rate-limited ccxt client that loads only the contract markets reconbot reads."""
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
