"""What every hardened ccxt client shares: refuse empty and unparseable bodies before a parser can turn them
into an empty list, and point every REST and WebSocket endpoint somewhere else when asked (testnet, proxy,
emulator)."""

from __future__ import annotations

import re
from typing import Any

from ccxt.base.errors import BadResponse

_SCHEME_AND_HOST = re.compile(r"^https?://[^/]+")
_WS_SCHEME_AND_HOST = re.compile(r"^wss?://[^/]+")


def require_json_body(exchange_id: str, url: str, body: str | None, response: Any) -> None:
    """Reject empty and unparseable bodies; ccxt would otherwise pass them on as data."""
    path = url.split("?", 1)[0]
    if body is None or not body.strip():
        raise BadResponse(f"{exchange_id} {path}: empty response body")
    if response is None:
        raise BadResponse(f"{exchange_id} {path}: response body is not JSON")


def rebase_api_urls(api: Any, base_url: str, scheme_and_host: re.Pattern[str] = _SCHEME_AND_HOST) -> Any:
    """Point every REST endpoint of a ccxt ``urls['api']`` tree at ``base_url``, keeping the paths."""
    base = base_url.rstrip("/")
    if isinstance(api, dict):
        return {key: rebase_api_urls(value, base, scheme_and_host) for key, value in api.items()}
    if isinstance(api, str):
        return scheme_and_host.sub(lambda _match: base, api, count=1)
    return api


def rebase_ws_urls(api: Any, ws_base_url: str) -> Any:
    """Point every WebSocket endpoint of a ccxt ``urls['api']`` tree at ``ws_base_url``, keeping the paths
    (Binance's user data stream must still end in ``/ws``, Bybit's in ``/v5/private``)."""
    return rebase_api_urls(api, ws_base_url, _WS_SCHEME_AND_HOST)


_STATIC_TABLES: dict[tuple[type, str], Any] = {}


def share_static_tables(client: Any) -> None:
    """ccxt deep-copies its class's endpoint table (``api``, about 220 KiB for Binance) and error tables
    (``exceptions``) into every instance, and only reads them afterwards: one copy per class serves every
    account."""
    for name in ("api", "exceptions"):
        value = getattr(client, name, None)
        if isinstance(value, dict):
            setattr(client, name, _STATIC_TABLES.setdefault((type(client), name), value))


def configure(
    client: Any, *, api_base_url: str | None, testnet: bool, demo_trading: bool, ws_base_url: str | None = None
) -> Any:
    """Select the venue environment, then rebase its REST (and WebSocket) URLs when base URLs are configured."""
    share_static_tables(client)
    client.has["fetchCurrencies"] = False
    if testnet:
        client.set_sandbox_mode(True)
    if demo_trading:
        client.enable_demo_trading(True)
    if api_base_url:
        client.urls["api"] = rebase_api_urls(client.urls["api"], api_base_url)
    if ws_base_url:
        client.urls["api"] = rebase_ws_urls(client.urls["api"], ws_base_url)
    return client


def client_config(api_key: str | None, secret: str | None, timeout_ms: int, options: dict[str, Any]) -> dict[str, Any]:
    """ccxt's rate limiter in its rolling-window mode: the venues count request weight per window (Binance per
    minute), so a read that costs 40 (all open orders without a symbol) goes at once and is paid for over the
    window, instead of the leaky bucket holding the next request back for two seconds."""
    return {
        "apiKey": api_key or "",
        "secret": secret or "",
        "enableLastHttpResponse": False,  # ccxt would keep every account's last raw body for as long as it lives
        "enableRateLimit": True,
        "rateLimiterAlgorithm": "rollingWindow",
        "rollingWindowSize": 60_000,
        "timeout": timeout_ms,
        "options": {"fetchCurrencies": False, **options},
    }
