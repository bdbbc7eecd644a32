"""Loopback emulator of Binance USDⓈ-M (``/fapi``) and Bybit (``/v5``) REST APIs for the real ccxt clients.

Every account lives under its own path prefix, so a ccxt client built with
``api_base_url=account.base_url`` (``http://HOST:PORT/{account}``) talks only to that account, and every
request it makes -- market loading included -- is recorded, counted and subject to that account's faults.
Answers use each venue's own JSON: Binance bare objects/arrays and ``{"code", "msg"}`` errors with HTTP
status codes, Bybit ``{"retCode", "retMsg", "result", "retExtInfo", "time"}`` envelopes.

In-process use::

    emu = ExchangeEmulator(timeout_delay_s=30.0)
    base = await emu.start(host="127.0.0.1", port=0)          # "http://127.0.0.1:PORT"
    acct = emu.add_account("binance-main", venue="binance", api_key="k1", secret="s1", hedge_mode=False)
    acct.set_position("BTCUSDT", "long", Decimal("1.0"), entry_price=Decimal("65000"))
    acct.fail("rate_limit", endpoint="positions", times=1)
    client = create_client(acct.exchange_id, api_key="k1", secret="s1", api_base_url=acct.base_url)
    ...
    acct.requests, acct.request_count("positions"), acct.orders, acct.positions
    await emu.stop()

``acct.page_size`` (default and maximum 200) caps Bybit ``/v5/position/list`` pages and
``acct.instruments_page_size`` (default and maximum 1000) caps ``/v5/market/instruments-info`` pages; both
paginate with an opaque ``cursor`` / ``nextPageCursor`` that is ``""`` on the last page.

Venue endpoints served under ``/{account}``
-------------------------------------------
Binance USDⓈ-M (``venue="binance"``)::

    GET  /fapi/v1/ping, /fapi/v1/time, /fapi/v1/exchangeInfo                    (public, group "markets")
    GET  /fapi/v3/positionRisk, /fapi/v2/positionRisk, /fapi/v1/leverageBracket,
         /fapi/v1/positionSide/dual                                             (signed, group "positions")
    POST /fapi/v1/order  (MARKET only);  GET /fapi/v1/openOrders (always empty),
         /fapi/v1/openAlgoOrders (stop losses as STOP_MARKET closePosition orders) (signed, group "orders")
    GET  /fapi/v2/balance, /fapi/v3/balance, /fapi/v2/account, /fapi/v3/account  (signed, group "account")

Bybit v5 (``venue="bybit"``)::

    GET  /v5/market/time, /v5/market/instruments-info                           (public, group "markets")
    GET  /v5/position/list                                                      (signed, group "positions")
    POST /v5/order/create  (Market only);  GET /v5/order/realtime                (signed, group "orders")
    GET  /v5/account/wallet-balance, /v5/account/info, /v5/user/query-api       (signed, group "account")

Signed requests are checked against the account's key and secret the way the venues do: Binance HMAC-SHA256
(hex) of query string + body in ``signature`` with the key in ``X-MBX-APIKEY``, and ``timestamp`` inside
``recvWindow``; Bybit ``X-BAPI-SIGN`` = HMAC-SHA256 of timestamp + key + recv window + (query string | body).

Faults (``account.fail(kind, endpoint=..., times=...)``), by kind:

* ``http_500``: Binance HTTP 500 ``{"code":-1001,...}``; Bybit HTTP 502 with an HTML page.
* ``rate_limit``: Binance HTTP 429 ``{"code":-1003,...}``; Bybit HTTP 200 ``retCode`` 10006.
* ``empty_body``: HTTP 200 with an empty body.
* ``timeout``: the answer is held for ``timeout_delay_s`` and then served normally.
* ``bad_key``: Binance HTTP 401 ``{"code":-2015,...}``; Bybit ``retCode`` 10003.
* ``garbage_json``: HTTP 200, ``application/json``, truncated JSON.
* ``no_success_marker``: Binance ``{"data": []}``; Bybit a body without ``retCode``.

Endpoint groups: ``positions``, ``markets``, ``orders``, ``account`` and ``any``.

Control API (JSON, for out-of-process use)
------------------------------------------
::

    GET    /_emulator/accounts                     -> [{"name", "venue", "base_url", "hedge_mode"}]
    GET    /_emulator/{account}/positions          -> [position]
    PUT    /_emulator/{account}/positions          body [position] or {"positions": [position]}: replace all
    DELETE /_emulator/{account}/positions          remove all positions
    POST   /_emulator/{account}/faults             body {"kind", "endpoint": "any", "times": null}
    DELETE /_emulator/{account}/faults             clear all faults
    GET    /_emulator/{account}/faults             -> [{"kind", "endpoint", "times"}]
    GET    /_emulator/{account}/requests[?endpoint=G]  -> {"count", "requests": [{"method", "path",
                                                        "params", "timestamp", "endpoint"}]}
    DELETE /_emulator/{account}/requests           forget recorded requests
    GET    /_emulator/{account}/orders             -> [order]
    POST   /_emulator/{account}/settings           body {"hedge_mode"?, "page_size"?, "instruments_page_size"?}

A position is ``{"symbol", "side": "long"|"short", "size", "entry_price"?, "mark_price"?, "leverage"?,
"stop_loss"?, "opened_ms"?}`` with decimals as strings or numbers. Errors answer
``{"error": "..."}`` with HTTP 400 (invalid input) or 404 (unknown account).

Command line::

    python -m emulator.exchange --scenario FILE [--host 127.0.0.1] [--port 0] [--timeout-delay 30]

prints the base URL of every account and serves until interrupted. A scenario (YAML or JSON) is
``{"accounts": [{"name", "venue", "api_key", "secret", "hedge_mode", "page_size"?, "positions": [...],
"faults": [{"kind", "endpoint", "times"}]}], "timeout_delay_s"?, "markets"?: [{"venue", "id", ...}],
"synthetic_markets"?: {"binance": N, "bybit": N}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import itertools
import json
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

from aiohttp import web

VENUES = ("binance", "bybit")
FAULT_KINDS = ("http_500", "rate_limit", "empty_body", "timeout", "bad_key", "garbage_json", "no_success_marker")
ENDPOINT_GROUPS = ("positions", "markets", "orders", "account", "any")
SIDES = ("long", "short")

_VENUE_ALIASES = {"binance": "binance", "binanceusdm": "binance", "bybit": "bybit"}
_EXCHANGE_IDS = {"binance": "binanceusdm", "bybit": "bybit"}
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PERPETUAL_DELIVERY_MS = 4133404800000
_CONTROL_PREFIX = "_emulator"
_BYBIT_POSITION_PAGE_MAX = 200
_BYBIT_INSTRUMENTS_PAGE_MAX = 1000
_ZERO = Decimal(0)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dec(value: Any, name: str = "value") -> Decimal:
    """Decimal from a Decimal, int, str or float (floats through their shortest repr)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not a boolean")
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{name} is not a decimal number: {value!r}") from None
    elif isinstance(value, float):
        result = Decimal(repr(value))
    else:
        raise ValueError(f"{name} is not a decimal number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"{name} must be finite: {value!r}")
    return result


def _places(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _fmt(value: Decimal, places: int | None = None) -> str:
    """Plain decimal string: fixed ``places`` when given, else the shortest exact form."""
    if places is not None:
        quantized = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        text = f"{quantized:f}"
        return "0" if places == 0 and text == "-0" else text
    text = f"{value.normalize():f}"
    return "0" if text == "-0" else text


def _fmt_point(value: Decimal) -> str:
    """Shortest form with at least one decimal place, as Binance prints prices (``65000.0``, ``0.0``)."""
    text = _fmt(value)
    return text if "." in text else text + ".0"


def _b64(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _unb64(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()


# --------------------------------------------------------------------------------------------------------
# Markets
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketSpec:
    """One contract market of one venue; ``price`` is the default mark price of positions in it."""

    venue: str
    id: str
    base: str
    quote: str
    settle: str
    category: str  # "linear" | "inverse"
    contract_type: str  # "perpetual" | "future"
    price: Decimal
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    max_leverage: int = 50
    delivery_ms: int | None = None
    onboard_ms: int = 1569398400000
    contract_size: Decimal = Decimal(1)

    @property
    def linear(self) -> bool:
        return self.category == "linear"


_MARKET_FIELDS = {f.name for f in dataclasses.fields(MarketSpec)} - {"venue", "id"}
_DECIMAL_FIELDS = (
    "price",
    "tick_size",
    "step_size",
    "min_qty",
    "max_qty",
    "market_max_qty",
    "min_notional",
    "contract_size",
)


def _infer_assets(market_id: str) -> tuple[str, str, str, str] | None:
    """(base, quote, settle, category) guessed from a market id, or None."""
    core = market_id.split("_", 1)[0]
    if core.endswith("PERP"):
        return core[: -len("PERP")], "USDC", "USDC", "linear"
    for quote in ("USDT", "USDC"):
        if core.endswith(quote) and len(core) > len(quote):
            return core[: -len(quote)], quote, quote, "linear"
    if core.endswith("USD") and len(core) > 3:
        base = core[:-3]
        return base, "USD", base, "inverse"
    return None


def _make_market(venue: str, market_id: str, spec: Mapping[str, Any]) -> MarketSpec:
    unknown = set(spec) - _MARKET_FIELDS
    if unknown:
        raise ValueError(f"unknown market fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = dict(spec)
    inferred = _infer_assets(market_id)
    if inferred is not None:
        for key, value in zip(("base", "quote", "settle", "category"), inferred, strict=True):
            values.setdefault(key, value)
    for key in ("base", "quote"):
        if not values.get(key):
            raise ValueError(f"market {market_id}: cannot infer {key}; pass {key}=...")
    values.setdefault("category", "linear")
    if values["category"] not in ("linear", "inverse"):
        raise ValueError(f"market {market_id}: category must be 'linear' or 'inverse'")
    values.setdefault("settle", values["quote"] if values["category"] == "linear" else values["base"])
    values.setdefault("contract_type", "future" if values.get("delivery_ms") else "perpetual")
    if values["contract_type"] not in ("perpetual", "future"):
        raise ValueError(f"market {market_id}: contract_type must be 'perpetual' or 'future'")
    if values["contract_type"] == "future" and not values.get("delivery_ms"):
        raise ValueError(f"market {market_id}: a future needs delivery_ms")
    values.setdefault("price", Decimal(100))
    values.setdefault("tick_size", Decimal("0.01"))
    values.setdefault("step_size", Decimal("0.001") if values["category"] == "linear" else Decimal(1))
    values.setdefault("min_qty", values["step_size"])
    values.setdefault("max_qty", Decimal(1000000))
    values.setdefault("market_max_qty", values["max_qty"])
    values.setdefault("min_notional", Decimal(5))
    for key in _DECIMAL_FIELDS:
        if key in values:
            values[key] = _dec(values[key], key)
    if values["price"] <= 0 or values["tick_size"] <= 0 or values["step_size"] <= 0:
        raise ValueError(f"market {market_id}: price, tick_size and step_size must be positive")
    values["max_leverage"] = int(values.get("max_leverage", 50))
    return MarketSpec(venue=venue, id=market_id, **values)


_D = Decimal
_BINANCE_CATALOGUE: list[tuple[str, dict[str, Any]]] = [
    (
        "BTCUSDT",
        {
            "price": _D("65000"),
            "tick_size": _D("0.10"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("1000"),
            "market_max_qty": _D("120"),
            "min_notional": _D("100"),
            "max_leverage": 125,
        },
    ),
    (
        "ETHUSDT",
        {
            "price": _D("3500"),
            "tick_size": _D("0.01"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("10000"),
            "market_max_qty": _D("2000"),
            "min_notional": _D("20"),
            "max_leverage": 125,
        },
    ),
    (
        "SOLUSDT",
        {
            "price": _D("150"),
            "tick_size": _D("0.0100"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("1000000"),
            "market_max_qty": _D("5000"),
            "min_notional": _D("5"),
            "max_leverage": 100,
        },
    ),
    (
        "XRPUSDT",
        {
            "price": _D("0.6"),
            "tick_size": _D("0.0001"),
            "step_size": _D("0.1"),
            "min_qty": _D("0.1"),
            "max_qty": _D("10000000"),
            "market_max_qty": _D("2000000"),
            "min_notional": _D("5"),
            "max_leverage": 75,
        },
    ),
    (
        "DOGEUSDT",
        {
            "price": _D("0.15"),
            "tick_size": _D("0.00001"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("50000000"),
            "market_max_qty": _D("30000000"),
            "min_notional": _D("5"),
            "max_leverage": 75,
        },
    ),
    (
        "BNBUSDT",
        {
            "price": _D("600"),
            "tick_size": _D("0.010"),
            "step_size": _D("0.01"),
            "min_qty": _D("0.01"),
            "max_qty": _D("100000"),
            "market_max_qty": _D("2000"),
            "min_notional": _D("5"),
            "max_leverage": 75,
        },
    ),
    (
        "AVLUSDT",
        {
            "price": _D("0.25"),
            "tick_size": _D("0.0001"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("8000000"),
            "market_max_qty": _D("800000"),
            "min_notional": _D("5"),
            "max_leverage": 20,
            "onboard_ms": 1741072800000,
        },
    ),
    (
        "1000PEPEUSDT",
        {
            "price": _D("0.0125"),
            "tick_size": _D("0.0000001"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("800000000"),
            "market_max_qty": _D("80000000"),
            "min_notional": _D("5"),
            "max_leverage": 50,
        },
    ),
    (
        "BTCUSDC",
        {
            "price": _D("65000"),
            "tick_size": _D("0.1"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("1000"),
            "market_max_qty": _D("50"),
            "min_notional": _D("5"),
            "max_leverage": 125,
        },
    ),
    (
        "ETHUSDC",
        {
            "price": _D("3500"),
            "tick_size": _D("0.01"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("10000"),
            "market_max_qty": _D("1000"),
            "min_notional": _D("5"),
            "max_leverage": 100,
        },
    ),
    (
        "BTCUSDT_261225",
        {
            "price": _D("67000"),
            "tick_size": _D("0.1"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("500"),
            "market_max_qty": _D("20"),
            "min_notional": _D("5"),
            "max_leverage": 50,
            "contract_type": "future",
            "delivery_ms": 1798185600000,
            "onboard_ms": 1774598400000,
        },
    ),
]

_BYBIT_CATALOGUE: list[tuple[str, dict[str, Any]]] = [
    (
        "BTCUSDT",
        {
            "price": _D("65000"),
            "tick_size": _D("0.10"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("1190"),
            "market_max_qty": _D("500"),
            "min_notional": _D("5"),
            "max_leverage": 100,
        },
    ),
    (
        "ETHUSDT",
        {
            "price": _D("3500"),
            "tick_size": _D("0.01"),
            "step_size": _D("0.01"),
            "min_qty": _D("0.01"),
            "max_qty": _D("7240"),
            "market_max_qty": _D("3620"),
            "min_notional": _D("5"),
            "max_leverage": 100,
        },
    ),
    (
        "SOLUSDT",
        {
            "price": _D("150"),
            "tick_size": _D("0.010"),
            "step_size": _D("0.1"),
            "min_qty": _D("0.1"),
            "max_qty": _D("79770"),
            "market_max_qty": _D("39885"),
            "min_notional": _D("5"),
            "max_leverage": 100,
        },
    ),
    (
        "XRPUSDT",
        {
            "price": _D("0.6"),
            "tick_size": _D("0.0001"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("2470000"),
            "market_max_qty": _D("1235000"),
            "min_notional": _D("5"),
            "max_leverage": 75,
        },
    ),
    (
        "DOGEUSDT",
        {
            "price": _D("0.15"),
            "tick_size": _D("0.00001"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("12236000"),
            "market_max_qty": _D("6118000"),
            "min_notional": _D("5"),
            "max_leverage": 75,
        },
    ),
    (
        "AVLUSDT",
        {
            "price": _D("0.25"),
            "tick_size": _D("0.0001"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("1500000"),
            "market_max_qty": _D("300000"),
            "min_notional": _D("5"),
            "max_leverage": 25,
            "onboard_ms": 1741072800000,
        },
    ),
    (
        "1000PEPEUSDT",
        {
            "price": _D("0.0125"),
            "tick_size": _D("0.0000001"),
            "step_size": _D("100"),
            "min_qty": _D("100"),
            "max_qty": _D("1300000000"),
            "market_max_qty": _D("650000000"),
            "min_notional": _D("5"),
            "max_leverage": 50,
        },
    ),
    (
        "BTCPERP",
        {
            "price": _D("65000"),
            "tick_size": _D("0.5"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("500"),
            "market_max_qty": _D("100"),
            "min_notional": _D("1"),
            "max_leverage": 100,
        },
    ),
    (
        "ETHPERP",
        {
            "price": _D("3500"),
            "tick_size": _D("0.05"),
            "step_size": _D("0.01"),
            "min_qty": _D("0.01"),
            "max_qty": _D("5000"),
            "market_max_qty": _D("1000"),
            "min_notional": _D("1"),
            "max_leverage": 100,
        },
    ),
    (
        "SOLPERP",
        {
            "price": _D("150"),
            "tick_size": _D("0.01"),
            "step_size": _D("0.1"),
            "min_qty": _D("0.1"),
            "max_qty": _D("50000"),
            "market_max_qty": _D("10000"),
            "min_notional": _D("1"),
            "max_leverage": 50,
        },
    ),
    (
        "BTC-26DEC26",
        {
            "base": "BTC",
            "quote": "USDC",
            "settle": "USDC",
            "category": "linear",
            "price": _D("67000"),
            "tick_size": _D("0.5"),
            "step_size": _D("0.001"),
            "min_qty": _D("0.001"),
            "max_qty": _D("500"),
            "market_max_qty": _D("100"),
            "min_notional": _D("1"),
            "max_leverage": 50,
            "contract_type": "future",
            "delivery_ms": 1798272000000,
            "onboard_ms": 1766736000000,
        },
    ),
    (
        "BTCUSD",
        {
            "price": _D("65000"),
            "tick_size": _D("0.50"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("1000000"),
            "market_max_qty": _D("300000"),
            "min_notional": _D("0"),
            "max_leverage": 100,
        },
    ),
    (
        "ETHUSD",
        {
            "price": _D("3500"),
            "tick_size": _D("0.05"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("1000000"),
            "market_max_qty": _D("300000"),
            "min_notional": _D("0"),
            "max_leverage": 50,
        },
    ),
    (
        "XRPUSD",
        {
            "price": _D("0.6"),
            "tick_size": _D("0.0001"),
            "step_size": _D("1"),
            "min_qty": _D("1"),
            "max_qty": _D("1000000"),
            "market_max_qty": _D("300000"),
            "min_notional": _D("0"),
            "max_leverage": 50,
        },
    ),
]
del _D


def _leverage_brackets(market: MarketSpec) -> list[dict[str, Any]]:
    """Binance-style notional brackets: (floor, cap, initial leverage, maintenance margin ratio, cum)."""
    tiers = []
    leverage = market.max_leverage
    floor = 0
    cap = 50000
    mmr = Decimal("0.004") if leverage >= 100 else Decimal("0.01")
    cum = _ZERO
    previous_mmr = _ZERO
    for index in range(1, 6):
        cum += Decimal(floor) * (mmr - previous_mmr)
        tiers.append(
            {
                "bracket": index,
                "initialLeverage": max(leverage, 1),
                "notionalCap": cap,
                "notionalFloor": floor,
                "maintMarginRatio": float(mmr),
                "cum": float(cum),
            }
        )
        previous_mmr = mmr
        floor, cap = cap, cap * 10
        leverage = max(leverage // 2, 1)
        mmr = mmr * 2
    return tiers


def _maint_ratio(market: MarketSpec, notional: Decimal) -> Decimal:
    ratio = Decimal("0.004") if market.max_leverage >= 100 else Decimal("0.01")
    cap = Decimal(50000)
    while notional >= cap and ratio < Decimal("0.5"):
        ratio *= 2
        cap *= 10
    return ratio


# --------------------------------------------------------------------------------------------------------
# Account state
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """An open (or deliberately zero-size) position; quantities and prices are Decimals."""

    symbol: str
    side: str
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal | None
    leverage: int
    stop_loss: Decimal | None
    opened_ms: int
    updated_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side,
            "size": _fmt(self.size),
            "entry_price": _fmt(self.entry_price),
            "mark_price": None if self.mark_price is None else _fmt(self.mark_price),
            "leverage": self.leverage,
            "stop_loss": None if self.stop_loss is None else _fmt(self.stop_loss),
            "opened_ms": self.opened_ms,
            "updated_ms": self.updated_ms,
        }


class RecordedRequest(NamedTuple):
    """One request an account received (before faults and authentication were applied)."""

    method: str
    path: str
    params: dict[str, Any]
    timestamp: float
    endpoint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "params": self.params,
            "timestamp": self.timestamp,
            "endpoint": self.endpoint,
        }


@dataclass
class Fault:
    """An injected failure; ``times`` is how many more requests it hits (None: until cleared)."""

    kind: str
    endpoint: str = "any"
    times: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": self.endpoint, "times": self.times}


@dataclass(frozen=True)
class EmulatedOrder:
    """An order the venue accepted and filled."""

    order_id: str
    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    qty: Decimal
    price: Decimal
    reduce_only: bool
    position_side: str  # "long" | "short": the position the fill changed
    timestamp_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "qty": _fmt(self.qty),
            "price": _fmt(self.price),
            "reduce_only": self.reduce_only,
            "position_side": self.position_side,
            "timestamp_ms": self.timestamp_ms,
        }


def _check_fault(kind: str, endpoint: str, times: int | None) -> Fault:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    if endpoint not in ENDPOINT_GROUPS:
        raise ValueError(f"unknown endpoint group {endpoint!r}; use one of {', '.join(ENDPOINT_GROUPS)}")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError("times must be a positive integer or None")
    return Fault(kind, endpoint, times)


class EmulatedAccount:
    """One venue account: positions, balances, faults and the log of requests it received."""

    def __init__(
        self, emulator: ExchangeEmulator, name: str, venue: str, api_key: str, secret: str, hedge_mode: bool
    ) -> None:
        self._emulator = emulator
        self.name = name
        self.venue = venue
        self.api_key = api_key
        self.secret = secret
        self.hedge_mode = bool(hedge_mode)
        self.page_size = _BYBIT_POSITION_PAGE_MAX
        self.instruments_page_size = _BYBIT_INSTRUMENTS_PAGE_MAX
        self.balances: dict[str, Decimal] = {"USDT": Decimal(10000), "USDC": Decimal(10000)}
        if venue == "bybit":
            self.balances.update({"BTC": Decimal(1), "ETH": Decimal(10), "XRP": Decimal(10000)})
        self._positions: dict[tuple[str, str], Position] = {}
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._orders: list[EmulatedOrder] = []
        self._order_seq = itertools.count(8_389_765_000_000_000_001 if venue == "binance" else 1)

    def __repr__(self) -> str:
        return f"EmulatedAccount(name={self.name!r}, venue={self.venue!r}, hedge_mode={self.hedge_mode})"

    @property
    def exchange_id(self) -> str:
        """The ccxt exchange id of this account's venue ("binanceusdm" or "bybit")."""
        return _EXCHANGE_IDS[self.venue]

    @property
    def base_url(self) -> str:
        return f"{self._emulator.base_url}/{self.name}"

    # positions -------------------------------------------------------------------------------------------

    @property
    def positions(self) -> dict[tuple[str, str], Position]:
        return dict(self._positions)

    def set_position(
        self,
        symbol: str,
        side: str,
        size: Decimal | int | str,
        *,
        entry_price: Decimal | int | str | None = None,
        mark_price: Decimal | int | str | None = None,
        leverage: int = 10,
        stop_loss: Decimal | int | str | None = None,
        opened_ms: int | None = None,
    ) -> Position:
        """Create or replace the position (symbol, side); size 0 yields a zero row in position lists."""
        market = self._emulator.market(self.venue, symbol)
        if side not in SIDES:
            raise ValueError(f"side must be 'long' or 'short', not {side!r}")
        size_d = _dec(size, "size")
        if size_d < 0:
            raise ValueError("size must not be negative; use side='short' for short positions")
        other = (symbol, "short" if side == "long" else "long")
        if not self.hedge_mode and other in self._positions and self._positions[other].size > 0 and size_d > 0:
            raise ValueError(f"{self.name} is in one-way mode and already holds {other[1]} {symbol}; remove it first")
        if isinstance(leverage, bool) or not isinstance(leverage, int) or not 1 <= leverage <= 200:
            raise ValueError("leverage must be an integer between 1 and 200")
        entry = market.price if entry_price is None else _dec(entry_price, "entry_price")
        mark = None if mark_price is None else _dec(mark_price, "mark_price")
        stop = None if stop_loss is None else _dec(stop_loss, "stop_loss")
        if entry <= 0 or (mark is not None and mark <= 0) or (stop is not None and stop <= 0):
            raise ValueError("prices must be positive")
        stamp = _now_ms() if opened_ms is None else int(opened_ms)
        position = Position(symbol, side, size_d, entry, mark, leverage, stop, stamp, stamp)
        if not self.hedge_mode:
            self._positions.pop(other, None)
        self._positions[(symbol, side)] = position
        return position

    def remove_position(self, symbol: str, side: str) -> None:
        self._positions.pop((symbol, side), None)

    def clear_positions(self) -> None:
        self._positions.clear()

    def replace_positions(self, positions: Iterable[Mapping[str, Any]]) -> None:
        """Replace every position with ``positions`` (dicts as in scenarios); all or nothing."""
        previous = self._positions
        self._positions = {}
        try:
            for entry in positions:
                self.set_position(**_position_kwargs(entry))
        except Exception:
            self._positions = previous
            raise

    def set_balance(self, asset: str, amount: Decimal | int | str) -> None:
        self.balances[asset] = _dec(amount, "amount")

    def _mark(self, position: Position) -> Decimal:
        if position.mark_price is not None:
            return position.mark_price
        return self._emulator.market(self.venue, position.symbol).price

    # faults ------------------------------------------------------------------------------------------------

    def fail(self, kind: str, endpoint: str = "any", times: int | None = None) -> Fault:
        """Make matching requests fail with ``kind`` (``times=None``: until :meth:`clear_faults`)."""
        fault = _check_fault(kind, endpoint, times)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        return [dataclasses.replace(f) for f in self._faults]

    def _take_fault(self, group: str | None) -> Fault | None:
        for fault in self._faults:
            if fault.endpoint == "any" or fault.endpoint == group:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # requests and orders -------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._requests)

    def request_count(self, endpoint: str | None = None) -> int:
        if endpoint is None or endpoint == "any":
            return len(self._requests)
        if endpoint not in ENDPOINT_GROUPS:
            raise ValueError(f"unknown endpoint group {endpoint!r}; use one of {', '.join(ENDPOINT_GROUPS)}")
        return sum(1 for r in self._requests if r.endpoint == endpoint)

    def clear_requests(self) -> None:
        self._requests.clear()

    @property
    def orders(self) -> list[EmulatedOrder]:
        return list(self._orders)

    # order execution -------------------------------------------------------------------------------------

    def _execute(
        self,
        market: MarketSpec,
        side: str,
        qty: Decimal,
        *,
        position_side: str | None,
        reduce_only: bool,
        client_order_id: str,
        order_id: str | None = None,
    ) -> tuple[EmulatedOrder, Decimal] | None:
        """Fill a market order; returns (order, executed qty) or None when a reduce rule rejects it.

        ``position_side`` is the hedge-mode leg ("long"/"short"); None means one-way mode.
        """
        now = _now_ms()
        buy = side == "buy"
        held_side: str
        if position_side is None:
            held = self._held(market.id)
            opposite = "short" if buy else "long"
            if reduce_only:
                if held is None or held.side != opposite:
                    return None
                executed = min(qty, held.size)
                price = self._mark(held)
                self._reduce(market, held, executed, price, now)
                held_side = opposite
            elif held is not None and held.side == opposite:
                price = self._mark(held)
                closing = min(qty, held.size)
                self._reduce(market, held, closing, price, now)
                executed = qty
                remainder = qty - closing
                held_side = opposite
                if remainder > 0:
                    held_side = "long" if buy else "short"
                    self._increase(market, held_side, remainder, price, now)
            else:
                held_side = "long" if buy else "short"
                self._positions.pop((market.id, opposite), None)
                price = self._price_for(market, held_side)
                self._increase(market, held_side, qty, price, now)
                executed = qty
        else:
            held_side = position_side
            closing = (position_side == "long") != buy
            current = self._positions.get((market.id, position_side))
            if closing:
                if current is None or current.size <= 0:
                    return None
                executed = min(qty, current.size)
                price = self._mark(current)
                self._reduce(market, current, executed, price, now)
            else:
                if reduce_only:
                    return None
                price = self._price_for(market, position_side)
                self._increase(market, position_side, qty, price, now)
                executed = qty
        order = EmulatedOrder(
            order_id or str(next(self._order_seq)),
            client_order_id,
            market.id,
            side,
            executed,
            price,
            reduce_only,
            held_side,
            now,
        )
        self._orders.append(order)
        return order, executed

    def _held(self, symbol: str) -> Position | None:
        """The non-empty position in ``symbol`` (one-way mode holds at most one)."""
        for side in SIDES:
            position = self._positions.get((symbol, side))
            if position is not None and position.size > 0:
                return position
        return None

    def _one_way_entry(self, symbol: str) -> Position | None:
        """The one-way entry of ``symbol``: the held position, else an explicit zero-size one."""
        held = self._held(symbol)
        if held is not None:
            return held
        return self._positions.get((symbol, "long")) or self._positions.get((symbol, "short"))

    def _price_for(self, market: MarketSpec, side: str) -> Decimal:
        current = self._positions.get((market.id, side))
        return self._mark(current) if current is not None else market.price

    def _increase(self, market: MarketSpec, side: str, qty: Decimal, price: Decimal, now: int) -> None:
        current = self._positions.get((market.id, side))
        if current is None or current.size <= 0:
            leverage = current.leverage if current is not None else 10
            self._positions[(market.id, side)] = Position(market.id, side, qty, price, None, leverage, None, now, now)
            return
        size = current.size + qty
        if market.linear:
            entry = (current.entry_price * current.size + price * qty) / size
        else:
            entry = size / (current.size / current.entry_price + qty / price)
        entry = entry.quantize(market.tick_size / 1000, rounding=ROUND_HALF_UP).normalize()
        self._positions[(market.id, side)] = dataclasses.replace(current, size=size, entry_price=entry, updated_ms=now)

    def _reduce(self, market: MarketSpec, position: Position, qty: Decimal, price: Decimal, now: int) -> None:
        direction = 1 if position.side == "long" else -1
        if market.linear:
            realised = (price - position.entry_price) * qty * direction
        else:
            realised = qty * (1 / position.entry_price - 1 / price) * direction
        self.balances[market.settle] = self.balances.get(market.settle, _ZERO) + realised
        remaining = position.size - qty
        key = (position.symbol, position.side)
        if remaining <= 0:
            del self._positions[key]
        else:
            self._positions[key] = dataclasses.replace(position, size=remaining, updated_ms=now)


def _position_kwargs(entry: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError("a position must be an object")
    allowed = {"symbol", "side", "size", "entry_price", "mark_price", "leverage", "stop_loss", "opened_ms"}
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"unknown position fields: {', '.join(sorted(unknown))}")
    missing = {"symbol", "side", "size"} - set(entry)
    if missing:
        raise ValueError(f"position lacks {', '.join(sorted(missing))}")
    kwargs = {key: value for key, value in entry.items() if value is not None}
    if "leverage" in kwargs:
        kwargs["leverage"] = int(kwargs["leverage"])
    return kwargs


# --------------------------------------------------------------------------------------------------------
# Venue protocol helpers
# --------------------------------------------------------------------------------------------------------


class _VenueError(Exception):
    """A venue-level rejection: HTTP status plus the venue's error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Route:
    group: str
    private: bool
    handler: Callable[[EmulatedAccount, dict[str, Any]], Any]


def _json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def _strip_param(raw: str, name: str) -> tuple[str, str | None]:
    """Remove ``name=...`` from a raw query/form string; returns (rest, value)."""
    kept, value = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith(name + "="):
            value = unquote(part[len(name) + 1 :])
        else:
            kept.append(part)
    return "&".join(kept), value


def _hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _signature_ok(secret: str, payloads: Iterable[str], signature: str) -> bool:
    return any(hmac.compare_digest(_hmac_hex(secret, p), signature.lower()) for p in payloads)


class _BinanceApi:
    venue = "binance"

    def __init__(self, emulator: ExchangeEmulator) -> None:
        self.emu = emulator
        self.routes: dict[tuple[str, str], _Route] = {
            ("GET", "/fapi/v1/ping"): _Route("markets", False, lambda a, p: {}),
            ("GET", "/fapi/v1/time"): _Route("markets", False, lambda a, p: {"serverTime": _now_ms()}),
            ("GET", "/fapi/v1/exchangeInfo"): _Route("markets", False, self.exchange_info),
            ("GET", "/fapi/v1/leverageBracket"): _Route("positions", True, self.leverage_bracket),
            ("GET", "/fapi/v3/positionRisk"): _Route("positions", True, self.position_risk_v3),
            ("GET", "/fapi/v2/positionRisk"): _Route("positions", True, self.position_risk_v2),
            ("GET", "/fapi/v1/positionSide/dual"): _Route(
                "positions", True, lambda a, p: {"dualSidePosition": a.hedge_mode}
            ),
            ("POST", "/fapi/v1/order"): _Route("orders", True, self.create_order),
            ("GET", "/fapi/v1/openOrders"): _Route("orders", True, self.open_orders),
            ("GET", "/fapi/v1/openAlgoOrders"): _Route("orders", True, self.open_algo_orders),
            ("GET", "/fapi/v2/balance"): _Route("account", True, self.balance),
            ("GET", "/fapi/v3/balance"): _Route("account", True, self.balance),
            ("GET", "/fapi/v2/account"): _Route("account", True, self.account_info),
            ("GET", "/fapi/v3/account"): _Route("account", True, self.account_info),
        }
        self._exchange_info_cache: tuple[int, list[dict[str, Any]]] | None = None

    @staticmethod
    def group_of(path: str) -> str | None:
        if path.startswith(("/fapi/v1/exchangeInfo", "/fapi/v1/time", "/fapi/v1/ping")):
            return "markets"
        if "positionRisk" in path or "leverageBracket" in path or "positionSide" in path:
            return "positions"
        if "/order" in path.lower() or "Orders" in path:
            return "orders"
        if path.endswith(("/balance", "/account")):
            return "account"
        return None

    @staticmethod
    def parse_params(request: web.Request, body: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if body:
            params.update(parse_qsl(body, keep_blank_values=True))
        return params

    # responses ---------------------------------------------------------------------------------------------

    def ok(self, account: EmulatedAccount, payload: Any) -> web.Response:
        return _json_response(payload, headers={"X-MBX-USED-WEIGHT-1M": str(len(account._requests))})

    @staticmethod
    def error(exc: _VenueError) -> web.Response:
        return _json_response({"code": exc.code, "msg": exc.message}, status=exc.status)

    @staticmethod
    def not_found() -> web.Response:
        return web.Response(
            status=404, text="<html><body><h2>404 Not found</h2></body></html>", content_type="text/html"
        )

    @staticmethod
    def fault_response(kind: str, request: web.Request) -> web.Response:
        if kind == "http_500":
            return _json_response(
                {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}, status=500
            )
        if kind == "rate_limit":
            return _json_response(
                {
                    "code": -1003,
                    "msg": "Too many requests; current limit of IP(127.0.0.1) "
                    "is 2400 requests per minute. Please use the websocket for live updates "
                    "to avoid polling the API.",
                },
                status=429,
                headers={"Retry-After": "1"},
            )
        if kind == "empty_body":
            return web.Response(status=200, body=b"", content_type="application/json")
        if kind == "bad_key":
            return _json_response(
                {
                    "code": -2015,
                    "msg": "Invalid API-key, IP, or permissions for action, "
                    f"request ip: {request.remote or '127.0.0.1'}",
                },
                status=401,
            )
        if kind == "garbage_json":
            return web.Response(
                status=200, body=b'[{"symbol":"BTCUSDT","positionAmt":"0.0', content_type="application/json"
            )
        if kind == "no_success_marker":
            return _json_response({"data": []})
        raise ValueError(kind)

    # authentication --------------------------------------------------------------------------------------

    def authenticate(self, account: EmulatedAccount, request: web.Request, body: str, params: dict[str, Any]) -> None:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            raise _VenueError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, account.api_key):
            raise _VenueError(
                401,
                -2015,
                f"Invalid API-key, IP, or permissions for action, request ip: {request.remote or '127.0.0.1'}",
            )
        try:
            stamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise _VenueError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        try:
            recv_window = int(params.get("recvWindow", 5000))
        except ValueError:
            raise _VenueError(400, -1100, "Illegal characters found in parameter 'recvWindow'.") from None
        now = _now_ms()
        if stamp < now - recv_window or stamp > now + 1000:
            raise _VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        query, query_sig = _strip_param(request.rel_url.raw_query_string, "signature")
        form, body_sig = _strip_param(body, "signature")
        signature = query_sig or body_sig
        if not signature:
            raise _VenueError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload = query + form
        if not _signature_ok(account.secret, (payload, unquote(payload)), signature):
            raise _VenueError(400, -1022, "Signature for this request is not valid.")

    # handlers ----------------------------------------------------------------------------------------------

    def _market(self, symbol: str | None) -> MarketSpec:
        if not symbol:
            raise _VenueError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        market = self.emu._markets[self.venue].get(symbol)
        if market is None:
            raise _VenueError(400, -1121, "Invalid symbol.")
        return market

    def exchange_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        version = self.emu._market_versions[self.venue]
        if self._exchange_info_cache is None or self._exchange_info_cache[0] != version:
            symbols = [self._symbol_info(m) for m in self.emu._markets[self.venue].values()]
            self._exchange_info_cache = (version, symbols)
        symbols = self._exchange_info_cache[1]
        settles = sorted({m.settle for m in self.emu._markets[self.venue].values()} | {"USDT", "USDC"})
        return {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in settles],
            "symbols": symbols,
        }

    @staticmethod
    def _symbol_info(m: MarketSpec) -> dict[str, Any]:
        price_places = _places(m.tick_size)
        qty_places = _places(m.step_size)
        perpetual = m.contract_type == "perpetual"
        return {
            "symbol": m.id,
            "pair": m.base + m.quote,
            "contractType": "PERPETUAL" if perpetual else "CURRENT_QUARTER",
            "deliveryDate": _PERPETUAL_DELIVERY_MS if perpetual else m.delivery_ms,
            "onboardDate": m.onboard_ms,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": m.base,
            "quoteAsset": m.quote,
            "marginAsset": m.settle,
            "pricePrecision": price_places,
            "quantityPrecision": qty_places,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _fmt(m.tick_size, price_places),
                    "maxPrice": _fmt(m.price * 20, price_places),
                    "tickSize": _fmt(m.tick_size, price_places),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _fmt(m.min_qty, qty_places),
                    "maxQty": _fmt(m.max_qty, qty_places),
                    "stepSize": _fmt(m.step_size, qty_places),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": _fmt(m.min_qty, qty_places),
                    "maxQty": _fmt(m.market_max_qty, qty_places),
                    "stepSize": _fmt(m.step_size, qty_places),
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": _fmt(m.min_notional)},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }

    def leverage_bracket(self, account: EmulatedAccount, params: dict[str, Any]) -> Any:
        if params.get("symbol"):
            market = self._market(params["symbol"])
            return {"symbol": market.id, "notionalCoef": 1.0, "brackets": _leverage_brackets(market)}
        return [
            {"symbol": m.id, "notionalCoef": 1.0, "brackets": _leverage_brackets(m)}
            for m in self.emu._markets[self.venue].values()
        ]

    def _rows(self, account: EmulatedAccount, params: dict[str, Any]) -> list[tuple[MarketSpec, str, Position | None]]:
        """(market, positionSide, position) rows of held (or explicitly zero) positions."""
        symbol = params.get("symbol")
        if symbol:
            self._market(symbol)
        rows = []
        for (pos_symbol, side), position in sorted(account._positions.items()):
            if symbol and pos_symbol != symbol:
                continue
            market = self.emu._markets[self.venue][pos_symbol]
            position_side = ("LONG" if side == "long" else "SHORT") if account.hedge_mode else "BOTH"
            rows.append((market, position_side, position))
        return rows

    def _figures(self, account: EmulatedAccount, market: MarketSpec, position: Position | None) -> dict[str, Any]:
        step_places = _places(market.step_size)
        if position is None or position.size == 0:
            mark = position.mark_price if position and position.mark_price else market.price
            return {
                "positionAmt": _fmt(_ZERO, step_places),
                "entryPrice": "0.0",
                "breakEvenPrice": "0.0",
                "markPrice": _fmt(mark, 8),
                "unRealizedProfit": "0.00000000",
                "liquidationPrice": "0",
                "notional": "0",
                "initialMargin": "0",
                "maintMargin": "0",
                "leverage": "20",
                "updateTime": 0 if position is None else position.updated_ms,
            }
        sign = 1 if position.side == "long" else -1
        mark = account._mark(position)
        notional = position.size * mark * sign
        pnl = (mark - position.entry_price) * position.size * sign
        mmr = _maint_ratio(market, abs(notional))
        inverse_leverage = Decimal(1) / position.leverage
        liq = position.entry_price * (1 - sign * (inverse_leverage - mmr))
        return {
            "positionAmt": _fmt(position.size * sign, step_places),
            "entryPrice": _fmt_point(position.entry_price),
            "breakEvenPrice": _fmt(position.entry_price * (1 + sign * Decimal("0.0004")), 8),
            "markPrice": _fmt(mark, 8),
            "unRealizedProfit": _fmt(pnl, 8),
            "liquidationPrice": _fmt(max(liq, _ZERO), 8),
            "notional": _fmt(notional, 8),
            "initialMargin": _fmt(abs(notional) * inverse_leverage, 8),
            "maintMargin": _fmt(abs(notional) * mmr, 8),
            "leverage": str(position.leverage),
            "updateTime": position.updated_ms,
        }

    def position_risk_v3(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        result = []
        for market, position_side, position in self._rows(account, params):
            f = self._figures(account, market, position)
            result.append(
                {
                    "symbol": market.id,
                    "positionSide": position_side,
                    "positionAmt": f["positionAmt"],
                    "entryPrice": f["entryPrice"],
                    "breakEvenPrice": f["breakEvenPrice"],
                    "markPrice": f["markPrice"],
                    "unRealizedProfit": f["unRealizedProfit"],
                    "liquidationPrice": f["liquidationPrice"],
                    "isolatedMargin": "0",
                    "notional": f["notional"],
                    "marginAsset": market.settle,
                    "isolatedWallet": "0",
                    "initialMargin": f["initialMargin"],
                    "maintMargin": f["maintMargin"],
                    "positionInitialMargin": f["initialMargin"],
                    "openOrderInitialMargin": "0",
                    "adl": 1 if f["notional"] != "0" else 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": f["updateTime"],
                }
            )
        return result

    def position_risk_v2(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """v2 lists every symbol: held positions plus zero rows for all other markets (and legs)."""
        symbol = params.get("symbol")
        markets = [self._market(symbol)] if symbol else list(self.emu._markets[self.venue].values())
        legs = ("LONG", "SHORT") if account.hedge_mode else ("BOTH",)
        result = []
        for market in markets:
            for leg in legs:
                if leg == "BOTH":
                    position = account._one_way_entry(market.id)
                else:
                    position = account._positions.get((market.id, leg.lower()))
                f = self._figures(account, market, position)
                result.append(
                    {
                        "symbol": market.id,
                        "positionAmt": f["positionAmt"],
                        "entryPrice": f["entryPrice"],
                        "breakEvenPrice": f["breakEvenPrice"],
                        "markPrice": f["markPrice"],
                        "unRealizedProfit": f["unRealizedProfit"],
                        "liquidationPrice": f["liquidationPrice"],
                        "leverage": f["leverage"],
                        "maxNotionalValue": "1000000",
                        "marginType": "cross",
                        "isolatedMargin": "0.00000000",
                        "isAutoAddMargin": "false",
                        "positionSide": leg,
                        "notional": f["notional"],
                        "isolatedWallet": "0",
                        "updateTime": f["updateTime"],
                        "isolated": False,
                        "adlQuantile": 0,
                    }
                )
        return result

    def create_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        market = self._market(params.get("symbol"))
        side = str(params.get("side", "")).upper()
        if side not in ("BUY", "SELL"):
            raise _VenueError(400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        order_type = str(params.get("type", "")).upper()
        if order_type != "MARKET":
            raise _VenueError(400, -1116, "Invalid orderType.")
        position_side_param = str(params.get("positionSide", "BOTH")).upper()
        if position_side_param not in ("BOTH", "LONG", "SHORT"):
            raise _VenueError(400, -4006, "Invalid position side.")
        if account.hedge_mode:
            if "reduceOnly" in params:
                raise _VenueError(400, -1106, "Parameter 'reduceonly' sent when not required.")
            if position_side_param == "BOTH":
                raise _VenueError(400, -4061, "Order's position side does not match user's setting.")
        elif position_side_param != "BOTH":
            raise _VenueError(400, -4061, "Order's position side does not match user's setting.")
        reduce_only = str(params.get("reduceOnly", "false")).lower() == "true"
        try:
            qty = Decimal(str(params.get("quantity", "")))
        except InvalidOperation:
            raise _VenueError(
                400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."
            ) from None
        if not qty.is_finite() or qty <= 0:
            raise _VenueError(400, -4003, "Quantity less than or equal to zero.")
        if qty % market.step_size != 0:
            raise _VenueError(400, -1111, "Precision is over the maximum defined for this asset.")
        if qty < market.min_qty:
            raise _VenueError(400, -4004, "Quantity less than min quantity.")
        if qty > market.market_max_qty:
            raise _VenueError(400, -4005, "Quantity greater than max quantity.")
        leg = None if position_side_param == "BOTH" else position_side_param.lower()
        client_id = str(params.get("newClientOrderId") or f"emu{uuid.uuid4().hex[:20]}")
        outcome = account._execute(
            market, side.lower(), qty, position_side=leg, reduce_only=reduce_only, client_order_id=client_id
        )
        if outcome is None:
            raise _VenueError(400, -2022, "ReduceOnly Order is rejected.")
        order, executed = outcome
        price_places = _places(market.tick_size)
        qty_places = _places(market.step_size)
        return {
            "orderId": int(order.order_id),
            "symbol": market.id,
            "status": "FILLED",
            "clientOrderId": client_id,
            "price": _fmt(_ZERO, price_places),
            "avgPrice": _fmt(order.price, price_places),
            "origQty": _fmt(qty, qty_places),
            "executedQty": _fmt(executed, qty_places),
            "cumQty": _fmt(executed, qty_places),
            "cumQuote": _fmt(executed * order.price, 8),
            "timeInForce": "GTC",
            "type": "MARKET",
            "reduceOnly": reduce_only,
            "closePosition": False,
            "side": side,
            "positionSide": position_side_param,
            "stopPrice": _fmt(_ZERO, price_places),
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": "MARKET",
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": order.timestamp_ms,
        }

    def open_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every emulated order fills at once, so nothing rests on the book."""
        if params.get("symbol"):
            self._market(params["symbol"])
        return []

    def open_algo_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Stop losses of positions, as closePosition STOP_MARKET conditional algo orders."""
        symbol = params.get("symbol")
        if symbol:
            self._market(symbol)
        result = []
        for (pos_symbol, side), position in sorted(account._positions.items()):
            if position.stop_loss is None or position.size <= 0 or (symbol and pos_symbol != symbol):
                continue
            market = self.emu._markets[self.venue][pos_symbol]
            digest = int(hashlib.sha256(f"{account.name}/{pos_symbol}/{side}".encode()).hexdigest()[:10], 16)
            result.append(
                {
                    "algoId": digest,
                    "clientAlgoId": f"sl{digest:x}",
                    "algoType": "CONDITIONAL",
                    "orderType": "STOP_MARKET",
                    "symbol": pos_symbol,
                    "side": "SELL" if side == "long" else "BUY",
                    "positionSide": side.upper() if account.hedge_mode else "BOTH",
                    "timeInForce": "GTC",
                    "quantity": "0",
                    "algoStatus": "NEW",
                    "triggerPrice": _fmt(position.stop_loss, _places(market.tick_size)),
                    "price": "0",
                    "icebergQuantity": None,
                    "selfTradePreventionMode": "EXPIRE_MAKER",
                    "workingType": "MARK_PRICE",
                    "priceMatch": "NONE",
                    "closePosition": True,
                    "priceProtect": True,
                    "reduceOnly": True,
                    "createTime": position.opened_ms,
                    "updateTime": position.updated_ms,
                    "triggerTime": 0,
                    "goodTillDate": 0,
                }
            )
        return result

    def _asset_rows(self, account: EmulatedAccount) -> list[dict[str, Any]]:
        pnl: dict[str, Decimal] = {}
        margin: dict[str, Decimal] = {}
        for position in account._positions.values():
            if position.size <= 0:
                continue
            market = self.emu._markets[self.venue][position.symbol]
            sign = 1 if position.side == "long" else -1
            mark = account._mark(position)
            pnl[market.settle] = pnl.get(market.settle, _ZERO) + (mark - position.entry_price) * position.size * sign
            margin[market.settle] = margin.get(market.settle, _ZERO) + position.size * mark / position.leverage
        stamp = _now_ms()
        rows = []
        for asset, wallet in sorted(account.balances.items()):
            upnl = pnl.get(asset, _ZERO)
            used = margin.get(asset, _ZERO)
            available = wallet + upnl - used
            rows.append(
                {
                    "asset": asset,
                    "wallet": wallet,
                    "upnl": upnl,
                    "used": used,
                    "available": available,
                    "updateTime": stamp,
                }
            )
        return rows

    def balance(self, account: EmulatedAccount, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "accountAlias": "SgsR",
                "asset": r["asset"],
                "balance": _fmt(r["wallet"], 8),
                "crossWalletBalance": _fmt(r["wallet"], 8),
                "crossUnPnl": _fmt(r["upnl"], 8),
                "availableBalance": _fmt(r["available"], 8),
                "maxWithdrawAmount": _fmt(r["available"], 8),
                "marginAvailable": True,
                "updateTime": r["updateTime"],
            }
            for r in self._asset_rows(account)
        ]

    def account_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        rows = self._asset_rows(account)
        assets = [
            {
                "asset": r["asset"],
                "walletBalance": _fmt(r["wallet"], 8),
                "unrealizedProfit": _fmt(r["upnl"], 8),
                "marginBalance": _fmt(r["wallet"] + r["upnl"], 8),
                "maintMargin": "0.00000000",
                "initialMargin": _fmt(r["used"], 8),
                "positionInitialMargin": _fmt(r["used"], 8),
                "openOrderInitialMargin": "0.00000000",
                "crossWalletBalance": _fmt(r["wallet"], 8),
                "crossUnPnl": _fmt(r["upnl"], 8),
                "availableBalance": _fmt(r["available"], 8),
                "maxWithdrawAmount": _fmt(r["available"], 8),
                "updateTime": r["updateTime"],
            }
            for r in rows
        ]
        usd = [r for r in rows if r["asset"] in ("USDT", "USDC")]
        total_wallet = sum((r["wallet"] for r in usd), _ZERO)
        total_upnl = sum((r["upnl"] for r in usd), _ZERO)
        total_used = sum((r["used"] for r in usd), _ZERO)
        positions = []
        for row in self.position_risk_v3(account, {}):
            positions.append(
                {
                    "symbol": row["symbol"],
                    "positionSide": row["positionSide"],
                    "positionAmt": row["positionAmt"],
                    "unrealizedProfit": row["unRealizedProfit"],
                    "isolatedMargin": "0",
                    "notional": row["notional"],
                    "isolatedWallet": "0",
                    "initialMargin": row["initialMargin"],
                    "maintMargin": row["maintMargin"],
                    "updateTime": row["updateTime"],
                }
            )
        return {
            "totalInitialMargin": _fmt(total_used, 8),
            "totalMaintMargin": "0.00000000",
            "totalWalletBalance": _fmt(total_wallet, 8),
            "totalUnrealizedProfit": _fmt(total_upnl, 8),
            "totalMarginBalance": _fmt(total_wallet + total_upnl, 8),
            "totalPositionInitialMargin": _fmt(total_used, 8),
            "totalOpenOrderInitialMargin": "0.00000000",
            "totalCrossWalletBalance": _fmt(total_wallet, 8),
            "totalCrossUnPnl": _fmt(total_upnl, 8),
            "availableBalance": _fmt(total_wallet + total_upnl - total_used, 8),
            "maxWithdrawAmount": _fmt(total_wallet + total_upnl - total_used, 8),
            "assets": assets,
            "positions": positions,
        }


class _BybitApi:
    venue = "bybit"

    def __init__(self, emulator: ExchangeEmulator) -> None:
        self.emu = emulator
        self.routes: dict[tuple[str, str], _Route] = {
            ("GET", "/v5/market/time"): _Route("markets", False, self.server_time),
            ("GET", "/v5/market/instruments-info"): _Route("markets", False, self.instruments_info),
            ("GET", "/v5/position/list"): _Route("positions", True, self.position_list),
            ("POST", "/v5/order/create"): _Route("orders", True, self.create_order),
            ("GET", "/v5/order/realtime"): _Route("orders", True, self.open_orders),
            ("GET", "/v5/account/wallet-balance"): _Route("account", True, self.wallet_balance),
            ("GET", "/v5/account/info"): _Route("account", True, self.account_info),
            ("GET", "/v5/user/query-api"): _Route("account", True, self.query_api),
        }
        self._instrument_cache: dict[str, tuple[int, list[dict[str, Any]]]] = {}

    @staticmethod
    def group_of(path: str) -> str | None:
        for prefix, group in (
            ("/v5/market/", "markets"),
            ("/v5/position/", "positions"),
            ("/v5/order/", "orders"),
            ("/v5/account/", "account"),
            ("/v5/user/", "account"),
        ):
            if path.startswith(prefix):
                return group
        return None

    @staticmethod
    def parse_params(request: web.Request, body: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                params.update(decoded)
            else:
                params["__invalid_body__"] = body
        return params

    # responses ---------------------------------------------------------------------------------------------

    @staticmethod
    def _envelope(code: int, message: str, result: Any) -> dict[str, Any]:
        return {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": _now_ms()}

    def ok(self, account: EmulatedAccount, payload: Any) -> web.Response:
        return _json_response(
            self._envelope(0, "OK", payload),
            headers={"X-Bapi-Limit": "50", "X-Bapi-Limit-Status": "49", "X-Bapi-Limit-Reset-Timestamp": str(_now_ms())},
        )

    def error(self, exc: _VenueError) -> web.Response:
        return _json_response(self._envelope(exc.code, exc.message, {}), status=exc.status)

    @staticmethod
    def not_found() -> web.Response:
        return web.Response(status=404, text="404 page not found", content_type="text/plain")

    def fault_response(self, kind: str, request: web.Request) -> web.Response:
        if kind == "http_500":
            page = (
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
                "Gateway</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
            )
            return web.Response(status=502, text=page, content_type="text/html")
        if kind == "rate_limit":
            return _json_response(self._envelope(10006, "Too many visits!", {}))
        if kind == "empty_body":
            return web.Response(status=200, body=b"", content_type="application/json")
        if kind == "bad_key":
            return _json_response(self._envelope(10003, "API key is invalid.", {}))
        if kind == "garbage_json":
            return web.Response(status=200, body=b'{"retCode":0,"result":{"list":[', content_type="application/json")
        if kind == "no_success_marker":
            return _json_response({"retMsg": "OK", "result": {"list": []}})
        raise ValueError(kind)

    # authentication --------------------------------------------------------------------------------------

    def authenticate(self, account: EmulatedAccount, request: web.Request, body: str, params: dict[str, Any]) -> None:
        key = request.headers.get("X-BAPI-API-KEY", "")
        if not key or not hmac.compare_digest(key, account.api_key):
            raise _VenueError(200, 10003, "API key is invalid.")
        stamp_text = request.headers.get("X-BAPI-TIMESTAMP", "")
        recv_text = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        signature = request.headers.get("X-BAPI-SIGN", "")
        try:
            stamp = int(stamp_text)
            recv_window = int(recv_text)
        except ValueError:
            raise _VenueError(
                200, 10001, f"empty value: apiTimestamp[{stamp_text}] apiKey[{key}] apiSignature[{signature}]"
            ) from None
        now = _now_ms()
        if not now - recv_window <= stamp < now + 1000:
            raise _VenueError(
                200,
                10002,
                "invalid request, please check your server timestamp or recv_window "
                f"param. req_timestamp[{stamp}],server_timestamp[{now}],"
                f"recv_window[{recv_window}]",
            )
        prefix = f"{stamp_text}{key}{recv_text}"
        if request.method == "GET":
            raw = request.rel_url.raw_query_string
            payloads: tuple[str, ...] = (prefix + raw, prefix + unquote(raw))
        else:
            payloads = (prefix + body,)
        if not signature or not _signature_ok(account.secret, payloads, signature):
            raise _VenueError(200, 10004, f"error sign! origin_string[{payloads[0]}]")
        if "__invalid_body__" in params:
            raise _VenueError(200, 10001, "Request parameter error.")

    # handlers ----------------------------------------------------------------------------------------------

    @staticmethod
    def _category(params: dict[str, Any], allowed: tuple[str, ...] = ("linear", "inverse")) -> str:
        category = params.get("category")
        if not category:
            raise _VenueError(200, 10001, "params error: Category is invalid")
        if category not in allowed:
            raise _VenueError(200, 10001, "Illegal category")
        return str(category)

    @staticmethod
    def _limit(params: dict[str, Any], default: int, cap: int) -> int:
        raw = params.get("limit")
        if raw in (None, ""):
            return min(default, cap)
        try:
            limit = int(raw)
        except (TypeError, ValueError):
            raise _VenueError(200, 10001, "params error: limit invalid") from None
        if limit < 1:
            raise _VenueError(200, 10001, "params error: limit invalid")
        return min(limit, cap)

    @staticmethod
    def _page(items: list[Any], params: dict[str, Any], limit: int, scope: str) -> tuple[list[Any], str]:
        cursor = params.get("cursor") or ""
        offset = 0
        if cursor:
            try:
                decoded_scope, _, decoded_offset = _unb64(unquote(str(cursor))).rpartition("|")
                offset = int(decoded_offset)
            except (ValueError, UnicodeDecodeError):
                raise _VenueError(200, 10001, "params error: cursor invalid") from None
            if decoded_scope != scope or offset < 0:
                raise _VenueError(200, 10001, "params error: cursor invalid")
        page = items[offset : offset + limit]
        end = offset + len(page)
        next_cursor = _b64(f"{scope}|{end}") if end < len(items) else ""
        return page, next_cursor

    def _market(self, symbol: str, category: str) -> MarketSpec:
        market = self.emu._markets[self.venue].get(symbol)
        if market is None or market.category != category:
            raise _VenueError(200, 10001, "Not supported symbols")
        return market

    def server_time(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        now_ns = time.time_ns()
        return {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}

    def _instruments(self, category: str) -> list[dict[str, Any]]:
        version = self.emu._market_versions[self.venue]
        cached = self._instrument_cache.get(category)
        if cached is None or cached[0] != version:
            rows = [self._instrument(m) for m in self.emu._markets[self.venue].values() if m.category == category]
            cached = (version, rows)
            self._instrument_cache[category] = cached
        return cached[1]

    @staticmethod
    def _instrument(m: MarketSpec) -> dict[str, Any]:
        price_places = _places(m.tick_size)
        qty_places = _places(m.step_size)
        perpetual = m.contract_type == "perpetual"
        if m.linear:
            contract_type = "LinearPerpetual" if perpetual else "LinearFutures"
        else:
            contract_type = "InversePerpetual" if perpetual else "InverseFutures"
        lot = {
            "maxOrderQty": _fmt(m.max_qty, qty_places),
            "minOrderQty": _fmt(m.min_qty, qty_places),
            "qtyStep": _fmt(m.step_size, qty_places),
            "postOnlyMaxOrderQty": _fmt(m.max_qty, qty_places),
            "maxMktOrderQty": _fmt(m.market_max_qty, qty_places),
        }
        if m.linear:
            lot["minNotionalValue"] = _fmt(m.min_notional)
        return {
            "symbol": m.id,
            "contractType": contract_type,
            "status": "Trading",
            "baseCoin": m.base,
            "quoteCoin": m.quote,
            "launchTime": str(m.onboard_ms),
            "deliveryTime": "0" if perpetual else str(m.delivery_ms),
            "deliveryFeeRate": "" if perpetual else "0.0005",
            "priceScale": str(price_places),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": f"{m.max_leverage}.00", "leverageStep": "0.01"},
            "priceFilter": {
                "minPrice": _fmt(m.tick_size, price_places),
                "maxPrice": _fmt(m.price * 30, price_places),
                "tickSize": _fmt(m.tick_size, price_places),
            },
            "lotSizeFilter": lot,
            "unifiedMarginTrade": True,
            "fundingInterval": 480 if perpetual else 0,
            "settleCoin": m.settle,
            "copyTrading": "both" if m.linear and m.quote == "USDT" else "none",
            "upperFundingRate": "0.005" if perpetual else "",
            "lowerFundingRate": "-0.005" if perpetual else "",
            "isPreListing": False,
            "preListingInfo": None,
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"},
            "displayName": "",
        }

    def instruments_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        status = params.get("status") or "Trading"
        rows: list[dict[str, Any]] = []
        if category in ("linear", "inverse") and status == "Trading":
            rows = self._instruments(category)
        if params.get("symbol"):
            rows = [r for r in rows if r["symbol"] == params["symbol"]]
        if params.get("baseCoin"):
            rows = [r for r in rows if r["baseCoin"] == params["baseCoin"]]
        limit = self._limit(params, 500, min(account.instruments_page_size, _BYBIT_INSTRUMENTS_PAGE_MAX))
        scope = f"instruments/{category}/{status}/{params.get('symbol', '')}/{params.get('baseCoin', '')}"
        page, cursor = self._page(rows, params, limit, scope)
        return {"category": category, "list": page, "nextPageCursor": cursor}

    def _position_row(
        self, account: EmulatedAccount, market: MarketSpec, idx: int, position: Position | None
    ) -> dict[str, Any]:
        price_places = _places(market.tick_size)
        qty_places = _places(market.step_size)
        mark = market.price
        if position is not None:
            mark = account._mark(position)
        created = str(position.opened_ms) if position else str(_now_ms())
        updated = str(position.updated_ms) if position else created
        base = {
            "positionIdx": idx,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": market.id,
            "tradeMode": 0,
            "positionStatus": "Normal",
            "autoAddMargin": 0,
            "markPrice": _fmt(mark, price_places),
            "positionBalance": "0",
            "tpslMode": "Full",
            "takeProfit": "",
            "trailingStop": "0",
            "curRealisedPnl": "0",
            "cumRealisedPnl": "0",
            "seq": int(updated) % 10_000_000_000,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "sessionAvgPrice": "",
            "createdTime": created,
            "updatedTime": updated,
        }
        if position is None or position.size == 0:
            side = "" if idx == 0 else ("Buy" if idx == 1 else "Sell")
            base.update(
                {
                    "side": side,
                    "size": _fmt(_ZERO, qty_places),
                    "avgPrice": "0",
                    "positionValue": "0",
                    "adlRankIndicator": 0,
                    "leverage": str(position.leverage if position else 10),
                    "liqPrice": "",
                    "bustPrice": "",
                    "positionMM": "0",
                    "positionIM": "0",
                    "unrealisedPnl": "0",
                    "stopLoss": "",
                }
            )
            return base
        sign = 1 if position.side == "long" else -1
        entry = position.entry_price
        inverse_leverage = Decimal(1) / position.leverage
        if market.linear:
            value = position.size * entry
            pnl = (mark - entry) * position.size * sign
            mmr = _maint_ratio(market, value)
        else:
            value = position.size / entry
            pnl = position.size * (1 / entry - 1 / mark) * sign
            mmr = _maint_ratio(market, position.size)
        liq = entry * (1 - sign * (inverse_leverage - mmr))
        bust = entry * (1 - sign * inverse_leverage)
        value_places = 8 if not market.linear else max(price_places + qty_places, 2)
        base.update(
            {
                "side": "Buy" if sign > 0 else "Sell",
                "size": _fmt(position.size, qty_places),
                "avgPrice": _fmt(entry),
                "positionValue": _fmt(value, value_places),
                "adlRankIndicator": 2,
                "leverage": str(position.leverage),
                "liqPrice": _fmt(max(liq, market.tick_size), price_places),
                "bustPrice": _fmt(max(bust, market.tick_size), price_places),
                "positionMM": _fmt(value * mmr, 8),
                "positionIM": _fmt(value * inverse_leverage, 8),
                "unrealisedPnl": _fmt(pnl, 8 if not market.linear else 4),
                "stopLoss": "" if position.stop_loss is None else _fmt(position.stop_loss, price_places),
            }
        )
        return base

    def position_list(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "option"))
        symbol = params.get("symbol") or None
        settle = params.get("settleCoin") or None
        limit = self._limit(params, 20, min(account.page_size, _BYBIT_POSITION_PAGE_MAX))
        rows: list[dict[str, Any]] = []
        if category == "option":
            return {"category": category, "list": [], "nextPageCursor": ""}
        if category == "linear" and symbol is None and settle is None:
            raise _VenueError(200, 10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        idxs = (1, 2) if account.hedge_mode else (0,)
        if symbol is not None:
            market = self._market(symbol, category)
            for idx in idxs:
                position = self._position_at(account, market.id, idx)
                rows.append(self._position_row(account, market, idx, position))
        else:
            markets = self.emu._markets[self.venue]
            for (pos_symbol, side), position in sorted(account._positions.items()):
                market = markets[pos_symbol]
                if market.category != category or (settle is not None and market.settle != settle):
                    continue
                idx = (1 if side == "long" else 2) if account.hedge_mode else 0
                rows.append(self._position_row(account, market, idx, position))
        scope = f"positions/{category}/{symbol or ''}/{settle or ''}"
        page, cursor = self._page(rows, params, limit, scope)
        return {"category": category, "list": page, "nextPageCursor": cursor}

    @staticmethod
    def _position_at(account: EmulatedAccount, symbol: str, idx: int) -> Position | None:
        if idx == 0:
            return account._one_way_entry(symbol)
        return account._positions.get((symbol, "long" if idx == 1 else "short"))

    def create_order(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        if category not in ("linear", "inverse"):
            raise _VenueError(200, 10001, "Illegal category")
        symbol = params.get("symbol")
        if not symbol:
            raise _VenueError(200, 10001, "params error: symbol invalid")
        market = self._market(str(symbol), category)
        side = params.get("side")
        if side not in ("Buy", "Sell"):
            raise _VenueError(200, 10001, "params error: side invalid")
        if params.get("orderType") != "Market":
            raise _VenueError(200, 10001, "params error: orderType invalid")
        try:
            qty = Decimal(str(params.get("qty", "")))
        except InvalidOperation:
            raise _VenueError(200, 10001, "params error: qty invalid") from None
        if not qty.is_finite() or qty <= 0 or qty % market.step_size != 0:
            raise _VenueError(200, 10001, "params error: qty invalid")
        if qty < market.min_qty:
            raise _VenueError(200, 110094, "Order does not meet minimum order value.")
        if qty > market.market_max_qty:
            raise _VenueError(200, 10001, "The number of contracts exceeds maximum limit allowed: too large")
        raw_idx = params.get("positionIdx", 0)
        try:
            idx = int(raw_idx)
        except (TypeError, ValueError):
            raise _VenueError(200, 10001, "params error: positionIdx invalid") from None
        if idx not in (0, 1, 2) or (idx == 0) == account.hedge_mode:
            raise _VenueError(200, 10001, "position idx not match position mode")
        reduce_only = params.get("reduceOnly") in (True, "true", "True", 1)
        link_id = str(params.get("orderLinkId") or uuid.uuid4().hex[:32])
        leg = None if idx == 0 else ("long" if idx == 1 else "short")
        outcome = account._execute(
            market,
            "buy" if side == "Buy" else "sell",
            qty,
            position_side=leg,
            reduce_only=reduce_only,
            client_order_id=link_id,
            order_id=str(uuid.uuid4()),
        )
        if outcome is None:
            raise _VenueError(200, 110017, "Reduce-only rule not satisfied")
        order, _ = outcome
        return {"orderId": order.order_id, "orderLinkId": link_id}

    def open_orders(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        category = self._category(params, ("linear", "inverse", "spot", "option"))
        return {"category": category, "list": [], "nextPageCursor": ""}

    def wallet_balance(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        account_type = params.get("accountType")
        if account_type != "UNIFIED":
            raise _VenueError(200, 10001, "accountType only support UNIFIED.")
        wanted = set(str(params["coin"]).split(",")) if params.get("coin") else None
        pnl: dict[str, Decimal] = {}
        margin: dict[str, Decimal] = {}
        for position in account._positions.values():
            if position.size <= 0:
                continue
            market = self.emu._markets[self.venue][position.symbol]
            row = self._position_row(account, market, 0, position)
            pnl[market.settle] = pnl.get(market.settle, _ZERO) + Decimal(row["unrealisedPnl"])
            margin[market.settle] = margin.get(market.settle, _ZERO) + Decimal(row["positionIM"])
        coins = []
        total = _ZERO
        for coin, wallet in sorted(account.balances.items()):
            if wanted is not None and coin not in wanted:
                continue
            upnl = pnl.get(coin, _ZERO)
            equity = wallet + upnl
            usd_price = Decimal(1) if coin in ("USDT", "USDC") else self._usd_price(coin)
            total += equity * usd_price
            coins.append(
                {
                    "availableToBorrow": "",
                    "bonus": "0",
                    "accruedInterest": "0",
                    "availableToWithdraw": "",
                    "totalOrderIM": "0",
                    "equity": _fmt(equity, 8),
                    "totalPositionMM": "0",
                    "usdValue": _fmt(equity * usd_price, 8),
                    "unrealisedPnl": _fmt(upnl, 8),
                    "collateralSwitch": True,
                    "spotHedgingQty": "0",
                    "borrowAmount": "0",
                    "totalPositionIM": _fmt(margin.get(coin, _ZERO), 8),
                    "walletBalance": _fmt(wallet, 8),
                    "cumRealisedPnl": "0",
                    "locked": "0",
                    "marginCollateral": True,
                    "coin": coin,
                }
            )
        entry = {
            "totalEquity": _fmt(total, 8),
            "accountIMRate": "0",
            "totalMarginBalance": _fmt(total, 8),
            "totalInitialMargin": "0",
            "accountType": "UNIFIED",
            "totalAvailableBalance": _fmt(total, 8),
            "accountMMRate": "0",
            "totalPerpUPL": "0",
            "totalWalletBalance": _fmt(total, 8),
            "accountLTV": "0",
            "totalMaintenanceMargin": "0",
            "coin": coins,
        }
        return {"list": [entry]}

    def _usd_price(self, coin: str) -> Decimal:
        market = self.emu._markets[self.venue].get(f"{coin}USDT")
        return market.price if market is not None else _ZERO

    def account_info(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "unifiedMarginStatus": 6,
            "marginMode": "REGULAR_MARGIN",
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
            "updatedTime": "1700000000000",
            "dcpStatus": "OFF",
            "timeWindow": 0,
            "smpGroup": 0,
        }

    def query_api(self, account: EmulatedAccount, params: dict[str, Any]) -> dict[str, Any]:
        digest = int(hashlib.sha256(account.name.encode()).hexdigest()[:7], 16)
        return {
            "id": str(digest),
            "note": account.name,
            "apiKey": account.api_key,
            "readOnly": 0,
            "secret": "",
            "permissions": {
                "ContractTrade": ["Order", "Position"],
                "Spot": [],
                "Wallet": ["AccountTransfer"],
                "Options": [],
                "Derivatives": [],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
                "Affiliate": [],
                "Earn": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": -1,
            "expiredAt": "",
            "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0,
            "uta": 1,
            "userID": 100000000 + digest,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
            "kycLevel": "LEVEL_DEFAULT",
            "kycRegion": "",
        }


# --------------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------------


class ExchangeEmulator:
    """HTTP server emulating Binance USDⓈ-M and Bybit v5 for any number of accounts."""

    def __init__(self, timeout_delay_s: float = 30.0) -> None:
        self.timeout_delay_s = float(timeout_delay_s)
        self._accounts: dict[str, EmulatedAccount] = {}
        self._markets: dict[str, dict[str, MarketSpec]] = {venue: {} for venue in VENUES}
        self._market_versions: dict[str, int] = dict.fromkeys(VENUES, 0)
        self._synthetic_counts: dict[str, int] = dict.fromkeys(VENUES, 0)
        for venue, catalogue in (("binance", _BINANCE_CATALOGUE), ("bybit", _BYBIT_CATALOGUE)):
            for market_id, spec in catalogue:
                self.add_market(venue, market_id, **spec)
        self._apis: dict[str, _BinanceApi | _BybitApi] = {"binance": _BinanceApi(self), "bybit": _BybitApi(self)}
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closing = asyncio.Event()

    # markets -----------------------------------------------------------------------------------------------

    @staticmethod
    def _venue(venue: str) -> str:
        try:
            return _VENUE_ALIASES[venue]
        except KeyError:
            raise ValueError(f"unknown venue {venue!r}; use 'binance' or 'bybit'") from None

    def add_market(self, venue: str, market_id: str, **spec: Any) -> MarketSpec:
        """Add (or replace) a market; fields default from the id (``XYZUSDT`` -> linear USDT perpetual)."""
        venue = self._venue(venue)
        if not market_id or not re.fullmatch(r"[A-Z0-9][A-Z0-9_-]*", market_id):
            raise ValueError(f"invalid market id {market_id!r}")
        market = _make_market(venue, market_id, spec)
        self._markets[venue][market_id] = market
        self._market_versions[venue] += 1
        return market

    def add_synthetic_markets(self, venue: str, count: int) -> list[str]:
        """Add ``count`` linear USDT perpetuals ``SYN0001USDT``, ``SYN0002USDT``, ...; returns their ids."""
        venue = self._venue(venue)
        if count < 0:
            raise ValueError("count must not be negative")
        ids = []
        start = self._synthetic_counts[venue]
        for number in range(start + 1, start + count + 1):
            market_id = f"SYN{number:04d}USDT"
            price = Decimal(10) + Decimal(number) / 100
            self.add_market(
                venue,
                market_id,
                price=price,
                tick_size=Decimal("0.001"),
                step_size=Decimal("0.1"),
                min_qty=Decimal("0.1"),
                max_qty=Decimal(1000000),
                market_max_qty=Decimal(100000),
                min_notional=Decimal(5),
                max_leverage=50,
            )
            ids.append(market_id)
        self._synthetic_counts[venue] = start + count
        return ids

    def market(self, venue: str, market_id: str) -> MarketSpec:
        venue = self._venue(venue)
        try:
            return self._markets[venue][market_id]
        except KeyError:
            raise ValueError(f"{venue} has no market {market_id!r}") from None

    def markets(self, venue: str) -> dict[str, MarketSpec]:
        return dict(self._markets[self._venue(venue)])

    # accounts ----------------------------------------------------------------------------------------------

    def add_account(
        self, name: str, *, venue: str, api_key: str, secret: str, hedge_mode: bool = False
    ) -> EmulatedAccount:
        if not _ACCOUNT_NAME.match(name or ""):
            raise ValueError(f"invalid account name {name!r}: letters, digits, '.', '_', '-'; no leading '_'")
        if name in self._accounts:
            raise ValueError(f"account {name!r} already exists")
        if not api_key or not secret:
            raise ValueError("api_key and secret must not be empty")
        account = EmulatedAccount(self, name, self._venue(venue), api_key, secret, hedge_mode)
        self._accounts[name] = account
        return account

    def account(self, name: str) -> EmulatedAccount:
        try:
            return self._accounts[name]
        except KeyError:
            raise KeyError(f"no account {name!r}") from None

    @property
    def accounts(self) -> dict[str, EmulatedAccount]:
        return dict(self._accounts)

    # scenarios ---------------------------------------------------------------------------------------------

    @classmethod
    def from_scenario(cls, scenario: Mapping[str, Any], *, timeout_delay_s: float | None = None) -> ExchangeEmulator:
        """Build an (unstarted) emulator from a scenario mapping; see the module docstring."""
        if not isinstance(scenario, Mapping):
            raise ValueError("a scenario must be a mapping")
        unknown = set(scenario) - {"accounts", "timeout_delay_s", "markets", "synthetic_markets"}
        if unknown:
            raise ValueError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
        delay = timeout_delay_s if timeout_delay_s is not None else scenario.get("timeout_delay_s", 30.0)
        emulator = cls(timeout_delay_s=float(delay))
        for spec in scenario.get("markets") or []:
            spec = dict(_require(spec, ("venue", "id"), "market"))
            emulator.add_market(spec.pop("venue"), spec.pop("id"), **spec)
        for venue, count in (scenario.get("synthetic_markets") or {}).items():
            emulator.add_synthetic_markets(venue, int(count))
        allowed = {
            "name",
            "venue",
            "api_key",
            "secret",
            "hedge_mode",
            "positions",
            "faults",
            "page_size",
            "instruments_page_size",
            "balances",
        }
        for entry in scenario.get("accounts") or []:
            _require(entry, ("name", "venue", "api_key", "secret"), "account")
            unknown = set(entry) - allowed
            if unknown:
                raise ValueError(f"unknown account keys: {', '.join(sorted(unknown))}")
            account = emulator.add_account(
                entry["name"],
                venue=entry["venue"],
                api_key=str(entry["api_key"]),
                secret=str(entry["secret"]),
                hedge_mode=bool(entry.get("hedge_mode")),
            )
            if entry.get("page_size") is not None:
                account.page_size = int(entry["page_size"])
            if entry.get("instruments_page_size") is not None:
                account.instruments_page_size = int(entry["instruments_page_size"])
            for asset, amount in (entry.get("balances") or {}).items():
                account.set_balance(asset, amount)
            account.replace_positions(entry.get("positions") or [])
            for fault in entry.get("faults") or []:
                _require(fault, ("kind",), "fault")
                account.fail(fault["kind"], endpoint=fault.get("endpoint", "any"), times=fault.get("times"))
        return emulator

    @classmethod
    def load_scenario(cls, path: str | Path, *, timeout_delay_s: float | None = None) -> ExchangeEmulator:
        return cls.from_scenario(read_scenario(path), timeout_delay_s=timeout_delay_s)

    # server ------------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not running; await start() first")
        return self._base_url

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns the base URL ``http://HOST:PORT``."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop serving; requests held by ``timeout`` faults are answered 503 at once."""
        runner, self._runner = self._runner, None
        self._closing.set()
        if runner is not None:
            await runner.cleanup()
        self._base_url = None

    async def __aenter__(self) -> ExchangeEmulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        head, _, rest = tail.partition("/")
        if head == _CONTROL_PREFIX:
            return await self._control(request, rest)
        account = self._accounts.get(head)
        if account is None:
            return web.Response(status=404, text=f"unknown account {head!r}", content_type="text/plain")
        return await self._serve_venue(account, request, "/" + rest)

    async def _serve_venue(self, account: EmulatedAccount, request: web.Request, path: str) -> web.StreamResponse:
        api = self._apis[account.venue]
        body = await request.text()
        params = api.parse_params(request, body)
        group = api.group_of(path)
        account._requests.append(RecordedRequest(request.method, path, params, time.time(), group))
        fault = account._take_fault(group)
        if fault is not None:
            if fault.kind != "timeout":
                return api.fault_response(fault.kind, request)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.timeout_delay_s)
            if self._closing.is_set():
                return web.Response(status=503, text="emulator stopping", content_type="text/plain")
        route = api.routes.get((request.method, path))
        if route is None:
            return api.not_found()
        try:
            if route.private:
                api.authenticate(account, request, body, params)
            return api.ok(account, route.handler(account, params))
        except _VenueError as exc:
            return api.error(exc)

    # control API -------------------------------------------------------------------------------------------

    async def _control(self, request: web.Request, rest: str) -> web.Response:
        parts = [p for p in rest.split("/") if p]
        method = request.method
        try:
            if parts == ["accounts"] and method == "GET":
                return _json_response(
                    [
                        {"name": a.name, "venue": a.venue, "base_url": a.base_url, "hedge_mode": a.hedge_mode}
                        for a in self._accounts.values()
                    ]
                )
            if len(parts) != 2:
                return _json_response({"error": "not found"}, status=404)
            account = self._accounts.get(parts[0])
            if account is None:
                return _json_response({"error": f"no account {parts[0]!r}"}, status=404)
            resource = parts[1]
            if resource == "positions":
                if method == "GET":
                    return _json_response([p.to_dict() for _, p in sorted(account._positions.items())])
                if method == "PUT":
                    body = await request.json()
                    items = body.get("positions") if isinstance(body, dict) else body
                    if not isinstance(items, list):
                        raise ValueError("expected a list of positions")
                    account.replace_positions(items)
                    return _json_response({"ok": True, "count": len(account._positions)})
                if method == "DELETE":
                    account.clear_positions()
                    return _json_response({"ok": True})
            elif resource == "faults":
                if method == "GET":
                    return _json_response([f.to_dict() for f in account._faults])
                if method == "POST":
                    body = await request.json()
                    if not isinstance(body, dict) or "kind" not in body:
                        raise ValueError('expected {"kind", "endpoint", "times"}')
                    fault = account.fail(body["kind"], endpoint=body.get("endpoint", "any"), times=body.get("times"))
                    return _json_response({"ok": True, "fault": fault.to_dict()})
                if method == "DELETE":
                    account.clear_faults()
                    return _json_response({"ok": True})
            elif resource == "requests":
                if method == "GET":
                    endpoint = request.query.get("endpoint")
                    count = account.request_count(endpoint)
                    records = [
                        r.to_dict() for r in account._requests if endpoint in (None, "any") or r.endpoint == endpoint
                    ]
                    return _json_response({"count": count, "requests": records})
                if method == "DELETE":
                    account.clear_requests()
                    return _json_response({"ok": True})
            elif resource == "orders" and method == "GET":
                return _json_response([o.to_dict() for o in account._orders])
            elif resource == "settings" and method == "POST":
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("expected an object")
                unknown = set(body) - {"hedge_mode", "page_size", "instruments_page_size"}
                if unknown:
                    raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
                for key in ("page_size", "instruments_page_size"):
                    if key in body and (not isinstance(body[key], int) or body[key] < 1):
                        raise ValueError(f"{key} must be a positive integer")
                if "hedge_mode" in body:
                    account.hedge_mode = bool(body["hedge_mode"])
                for key in ("page_size", "instruments_page_size"):
                    if key in body:
                        setattr(account, key, body[key])
                return _json_response(
                    {
                        "ok": True,
                        "hedge_mode": account.hedge_mode,
                        "page_size": account.page_size,
                        "instruments_page_size": account.instruments_page_size,
                    }
                )
            return _json_response({"error": "method not allowed"}, status=405)
        except (ValueError, TypeError, KeyError) as exc:
            return _json_response({"error": str(exc)}, status=400)


def _require(entry: Any, keys: tuple[str, ...], what: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"a scenario {what} must be a mapping")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ValueError(f"a scenario {what} lacks {', '.join(missing)}")
    return entry


def read_scenario(path: str | Path) -> dict[str, Any]:
    """Parse a scenario file: JSON for ``.json``, YAML otherwise."""
    source = Path(path)
    text = source.read_text(encoding="utf-8")
    if source.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a scenario must be a mapping")
    return data


def load_scenario(path: str | Path, *, timeout_delay_s: float | None = None) -> ExchangeEmulator:
    """Build an (unstarted) emulator from a scenario file."""
    return ExchangeEmulator.load_scenario(path, timeout_delay_s=timeout_delay_s)


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    emulator = (
        ExchangeEmulator.load_scenario(args.scenario, timeout_delay_s=args.timeout_delay)
        if args.scenario
        else ExchangeEmulator(timeout_delay_s=args.timeout_delay or 30.0)
    )
    base = await emulator.start(host=args.host, port=args.port)
    print(f"exchange emulator listening on {base} (control API: {base}/{_CONTROL_PREFIX})", flush=True)
    for account in emulator.accounts.values():
        mode = "hedge" if account.hedge_mode else "one-way"
        print(f"{account.name} {account.venue} {mode} {account.base_url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.exchange", description="Loopback Binance USDⓈ-M / Bybit v5 REST emulator."
    )
    parser.add_argument("--scenario", help="scenario file (YAML or JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--timeout-delay",
        type=float,
        default=None,
        help="seconds a 'timeout' fault holds a request (default: scenario or 30)",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
