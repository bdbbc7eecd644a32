"""Plain records of emulated accounts: positions, fills, faults, tampering and received requests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from emulator.state.common import fmt

FAULT_KINDS = (
    "http_500",
    "rate_limit",
    "empty_body",
    "timeout",
    "late_answer",
    "bad_key",
    "garbage_json",
    "no_success_marker",
)
ENDPOINT_GROUPS = ("positions", "markets", "orders", "open_orders", "history", "account", "any")
SIDES = ("long", "short")


@dataclass(frozen=True)
class Position:
    """An open (or deliberately zero-size) position; ``stop_loss`` mirrors its attached stop-loss order."""

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
            "size": fmt(self.size),
            "entry_price": fmt(self.entry_price),
            "mark_price": None if self.mark_price is None else fmt(self.mark_price),
            "leverage": self.leverage,
            "stop_loss": None if self.stop_loss is None else fmt(self.stop_loss),
            "opened_ms": self.opened_ms,
            "updated_ms": self.updated_ms,
        }


class RecordedRequest(NamedTuple):
    """One request an account received (before faults and authentication were applied), with its IP weight."""

    method: str
    path: str
    params: dict[str, Any]
    timestamp: float
    endpoint: str | None
    weight: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "params": self.params,
            "timestamp": self.timestamp,
            "endpoint": self.endpoint,
            "weight": self.weight,
        }


@dataclass
class Fault:
    """An injected failure; ``times`` is how many more requests it hits (None: until cleared)."""

    kind: str
    endpoint: str = "any"
    times: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": self.endpoint, "times": self.times}


@dataclass
class Tamper:
    """A rewrite of successful answers of one venue path; ``times`` as for faults."""

    path: str
    transform: Callable[[Any], Any]
    times: int | None = None
    method: str | None = None


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
            "qty": fmt(self.qty),
            "price": fmt(self.price),
            "reduce_only": self.reduce_only,
            "position_side": self.position_side,
            "timestamp_ms": self.timestamp_ms,
        }


def check_times(times: int | None) -> None:
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError("times must be a positive integer or None")


def check_fault(kind: str, endpoint: str, times: int | None) -> Fault:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    if endpoint not in ENDPOINT_GROUPS:
        raise ValueError(f"unknown endpoint group {endpoint!r}; use one of {', '.join(ENDPOINT_GROUPS)}")
    check_times(times)
    return Fault(kind, endpoint, times)


def position_kwargs(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``set_position`` keyword arguments from a scenario / control-API position mapping."""
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
