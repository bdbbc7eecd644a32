"""Contract markets the emulated venues list, and the tiered margin figures derived from them.

A market is venue-neutral data (ids, steps, limits, a default price); each venue module prints it in its own
JSON and brings its own catalogue, so tests see realistic instruments without any network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from emulator.state.common import ZERO, dec


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


def infer_assets(market_id: str) -> tuple[str, str, str, str] | None:
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


def make_market(venue: str, market_id: str, spec: Mapping[str, Any]) -> MarketSpec:
    """A market from partial ``spec``; missing fields are inferred from the id or defaulted."""
    unknown = set(spec) - _MARKET_FIELDS
    if unknown:
        raise ValueError(f"unknown market fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = dict(spec)
    inferred = infer_assets(market_id)
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
            values[key] = dec(values[key], key)
    if values["price"] <= 0 or values["tick_size"] <= 0 or values["step_size"] <= 0:
        raise ValueError(f"market {market_id}: price, tick_size and step_size must be positive")
    values["max_leverage"] = int(values.get("max_leverage", 50))
    return MarketSpec(venue=venue, id=market_id, **values)


def catalogue(rows: Iterable[tuple[Any, ...]]) -> list[tuple[str, dict[str, Any]]]:
    """Market specs from compact rows: (id, price, tick, step = min qty, max qty, market max qty,
    min notional, max leverage[, extra fields])."""
    specs = []
    for row in rows:
        market_id, price, tick, step, max_qty, market_max, min_notional, leverage = row[:8]
        spec: dict[str, Any] = {
            "price": Decimal(price),
            "tick_size": Decimal(tick),
            "step_size": Decimal(step),
            "min_qty": Decimal(step),
            "max_qty": Decimal(max_qty),
            "market_max_qty": Decimal(market_max),
            "min_notional": Decimal(min_notional),
            "max_leverage": leverage,
        }
        if len(row) > 8:
            spec.update(row[8])
        specs.append((market_id, spec))
    return specs


def leverage_brackets(market: MarketSpec) -> list[dict[str, Any]]:
    """Binance-style notional brackets: (floor, cap, initial leverage, maintenance margin ratio, cum)."""
    tiers = []
    leverage = market.max_leverage
    floor = 0
    cap = 50000
    mmr = Decimal("0.004") if leverage >= 100 else Decimal("0.01")
    cum = ZERO
    previous_mmr = ZERO
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


def maint_ratio(market: MarketSpec, notional: Decimal) -> Decimal:
    """Maintenance margin ratio of the bracket ``notional`` falls in (same tiers as :func:`leverage_brackets`)."""
    ratio = Decimal("0.004") if market.max_leverage >= 100 else Decimal("0.01")
    cap = Decimal(50000)
    while notional >= cap and ratio < Decimal("0.5"):
        ratio *= 2
        cap *= 10
    return ratio
