"""A per-IP request budget for each venue endpoint, shared by every account reconbot reads there, so a desk of
many accounts stays under the venue's limits and leaves a share of them to the trading bot on the same IP (a
Binance 418 ban would stop the trading bot too).

Limits relied on: Binance USDⓈ-M counts request *weight* per IP per minute (2,400; "General Info: Limits", the
``X-MBX-USED-WEIGHT-1M`` header); Bybit counts *requests* per IP, 600 in any 5 seconds ("Rate Limit: IP
rate limit"). Weights are the venue's own: ccxt charges ``GET /fapi/v3/positionRisk`` 1 where Binance charges 5,
so reconbot's clients correct that (``BINANCE_WEIGHTS``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter


@dataclass(frozen=True, slots=True)
class VenueLimit:
    capacity: float  # what the venue allows per window and IP
    window_s: float
    unit: str  # "weight" or "requests"


LIMITS = {
    "binanceusdm": VenueLimit(2400, 60.0, "weight"),
    "bybit": VenueLimit(600, 5.0, "requests"),
}

# (ccxt api, path) -> Binance's weight, where ccxt's cost table differs from Binance's documentation.
BINANCE_WEIGHTS = {("fapiPrivateV3", "positionRisk"): 5, ("fapiPrivateV2", "positionRisk"): 5}


class VenueBudget:
    """Share ``share`` of a venue's per-IP limit, spent by every request of every account on the endpoint."""

    def __init__(self, venue: str, share: float, limit: VenueLimit | None = None):
        self.venue = venue
        self.limit = limit or LIMITS[venue]
        self.share = share
        self.capacity = self.limit.capacity * share
        self._limiter = AsyncLimiter(self.capacity, self.limit.window_s)
        self.spent = 0.0
        self.waited_s = 0.0

    async def spend(self, weight: float) -> None:
        """Wait until ``weight`` fits in the budget's window (a request heavier than the whole budget waits for
        a full window)."""
        weight = min(max(weight, 0.0), self.capacity)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._limiter.acquire(weight)
        self.waited_s += loop.time() - started
        self.spent += weight

    def round_s(self, weight: float) -> float:
        """How long the budget takes to pay for ``weight``."""
        return weight / self.capacity * self.limit.window_s

    def bound_note(self, weight: float, interval_s: float) -> str | None:
        """Said when one round of checks costs more than the budget pays for in the interval."""
        needed = self.round_s(weight)
        if needed <= interval_s:
            return None
        return (
            f"{self.venue}: one check costs {weight:,.0f} {self.limit.unit}; at {self.capacity:,.0f} per "
            f"{self.limit.window_s:g}s ({self.share:.0%} of the venue's limit) a round takes {needed:,.0f}s, longer "
            f"than the {interval_s:g}s interval: the budget, not the interval, bounds these accounts"
        )


class Budgeted:
    """A ccxt client mixin: every request first takes one of the endpoint's connection slots, then spends its
    weight from the shared ``venue_budget``, and only then is signed and sent. Waiting for a socket after signing
    would let the signature's timestamp go stale (Bybit and Binance refuse requests older than their receive
    window, 5 s by default), so the wait comes first."""

    venue_budget: VenueBudget | None = None
    venue_slots: asyncio.Semaphore | None = None

    async def fetch2(self, *args: Any, **kwargs: Any) -> Any:
        if self.venue_slots is None:
            return await super().fetch2(*args, **kwargs)  # type: ignore[misc]
        async with self.venue_slots:
            return await super().fetch2(*args, **kwargs)  # type: ignore[misc]

    def request_weight(self, cost: Any) -> float:
        return float(cost or 1)

    async def throttle(self, cost=None):
        if self.venue_budget is not None:
            await self.venue_budget.spend(self.request_weight(cost))
        return await super().throttle(cost)  # type: ignore[misc]
