"""Scenario files (YAML or JSON) describing an emulator's markets, accounts, positions, orders and faults;
the format is documented in the ``emulator.exchange`` module docstring."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.server import ExchangeEmulator

_ACCOUNT_KEYS = {
    "name",
    "venue",
    "api_key",
    "secret",
    "hedge_mode",
    "positions",
    "protective_orders",
    "faults",
    "page_size",
    "instruments_page_size",
    "balances",
    "fee_rate",
    "closes",
}


def require(entry: Any, keys: tuple[str, ...], what: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"a scenario {what} must be a mapping")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ValueError(f"a scenario {what} lacks {', '.join(missing)}")
    return entry


def build_emulator(
    cls: type[ExchangeEmulator], scenario: Any, *, timeout_delay_s: float | None = None
) -> ExchangeEmulator:
    """An (unstarted) emulator of class ``cls`` from a scenario mapping."""
    if not isinstance(scenario, Mapping):
        raise ValueError("a scenario must be a mapping")
    unknown = set(scenario) - {"accounts", "timeout_delay_s", "markets", "synthetic_markets", "ip_limits"}
    if unknown:
        raise ValueError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
    delay = timeout_delay_s if timeout_delay_s is not None else scenario.get("timeout_delay_s", 30.0)
    limits = scenario.get("ip_limits")
    emulator = cls(timeout_delay_s=float(delay), ip_limits=limits is True)
    if isinstance(limits, Mapping):
        for venue, limit in limits.items():
            emulator.set_ip_limit(venue, None if limit is None else int(limit))
    for spec in scenario.get("markets") or []:
        spec = dict(require(spec, ("venue", "id"), "market"))
        emulator.add_market(spec.pop("venue"), spec.pop("id"), **spec)
    for venue, count in (scenario.get("synthetic_markets") or {}).items():
        emulator.add_synthetic_markets(venue, int(count))
    for entry in scenario.get("accounts") or []:
        require(entry, ("name", "venue", "api_key", "secret"), "account")
        unknown = set(entry) - _ACCOUNT_KEYS
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
        for order in entry.get("protective_orders") or []:
            spec = dict(require(order, ("symbol", "side", "type"), "protective order"))
            spec.setdefault("trigger_price", None)
            account.place_protective_order(spec.pop("symbol"), spec.pop("side"), spec.pop("type"), **spec)
        if entry.get("fee_rate") is not None:
            account.fee_rate = entry["fee_rate"]
        for close in entry.get("closes") or []:
            spec = dict(require(close, ("symbol", "side", "cause"), "close"))
            account.close_position(spec.pop("symbol"), spec.pop("side"), **spec)
        for fault in entry.get("faults") or []:
            require(fault, ("kind",), "fault")
            account.fail(fault["kind"], endpoint=fault.get("endpoint", "any"), times=fault.get("times"))
    return emulator


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
