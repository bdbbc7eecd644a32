"""ccxt clients for the venues reconbot reads, hardened so a bad answer can never look like an empty account.

ccxt hands back ``None`` or a raw string when a body is empty or not JSON, and some of its parsers turn
that into an empty list. The subclasses below refuse such answers with ccxt's own ``BadResponse`` before
any parser sees them, so the gateway only ever gets positions or an exception.
"""

from __future__ import annotations

import re
from typing import Any

import ccxt.async_support as ccxt
from ccxt.base.errors import BadResponse

SUPPORTED_EXCHANGES = ("binanceusdm", "bybit")

_SCHEME_AND_HOST = re.compile(r"^https?://[^/]+")


def _require_json_body(exchange_id: str, url: str, body: str | None, response: Any) -> None:
    """Reject empty and unparseable bodies; ccxt would otherwise pass them on as data."""
    path = url.split("?", 1)[0]
    if body is None or not body.strip():
        raise BadResponse(f"{exchange_id} {path}: empty response body")
    if response is None:
        raise BadResponse(f"{exchange_id} {path}: response body is not JSON")


class GuardedBinanceUsdm(ccxt.binanceusdm):
    """Binance USDⓈ-M: positions must come as a JSON array, markets with a symbols list, everything as JSON."""

    def handle_errors(self, code, reason, url, method, headers, body, response, request_headers, request_body):
        super().handle_errors(code, reason, url, method, headers, body, response, request_headers, request_body)
        if code >= 400:
            return None  # ccxt's HTTP status mapping names the error
        _require_json_body(self.id, url, body, response)
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


class GuardedBybit(ccxt.bybit):
    """Bybit v5: every answer must be JSON carrying ``retCode`` 0 and a ``result`` object."""

    def handle_errors(self, code, reason, url, method, headers, body, response, request_headers, request_body):
        if code < 400:
            _require_json_body(self.id, url, body, response)
            if not isinstance(response, dict) or "retCode" not in response:
                raise BadResponse(f"{self.id} {url.split('?', 1)[0]}: answer without retCode")
        super().handle_errors(code, reason, url, method, headers, body, response, request_headers, request_body)
        if code < 400 and not isinstance(response.get("result"), dict):
            raise BadResponse(f"{self.id} {url.split('?', 1)[0]}: answer without a result object")
        return None


_CLASSES: dict[str, type[ccxt.Exchange]] = {"binanceusdm": GuardedBinanceUsdm, "bybit": GuardedBybit}


def rebase_api_urls(api: Any, base_url: str) -> Any:
    """Point every REST endpoint of a ccxt ``urls['api']`` tree at ``base_url`` (testnet, proxy, emulator)."""
    base = base_url.rstrip("/")
    if isinstance(api, dict):
        return {key: rebase_api_urls(value, base) for key, value in api.items()}
    if isinstance(api, str):
        return _SCHEME_AND_HOST.sub(lambda _match: base, api, count=1)
    return api


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
        cls = _CLASSES[exchange_id]
    except KeyError:
        raise ValueError(f"unsupported exchange {exchange_id!r}; use one of {', '.join(SUPPORTED_EXCHANGES)}") from None
    options: dict[str, Any] = {"fetchCurrencies": False}
    if exchange_id == "bybit":
        options["fetchMarkets"] = {"types": ["linear", "inverse"]}
    client = cls(
        {
            "apiKey": api_key or "",
            "secret": secret or "",
            "enableRateLimit": True,
            "timeout": timeout_ms,
            "options": options,
        }
    )
    client.has["fetchCurrencies"] = False
    if testnet:
        client.set_sandbox_mode(True)
    if demo_trading:
        client.enable_demo_trading(True)
    if api_base_url:
        client.urls["api"] = rebase_api_urls(client.urls["api"], api_base_url)
    return client
