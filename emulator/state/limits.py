"""Per-IP request accounting: every emulated account shares one IP, as all reconbot accounts do in production.

Binance limits request *weight* per IP per minute and answers 429, then 418 (banned) to clients that keep
going; Bybit limits requests per IP per 5 s and answers 403. One limiter per venue records the weight of
every admitted request in a rolling window; enforcement is off until a limit is set.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_BAN_S = 3 * 24 * 3600.0  # Binance: "from 2 minutes to 3 days"


@dataclass(frozen=True)
class Verdict:
    """Whether a request may pass; ``retry_after_s`` and ``banned_until_ms`` matter when it may not."""

    status: str  # "ok" | "limited" | "banned"
    used: int
    limit: int | None
    window_s: float
    retry_after_s: int = 0
    banned_until_ms: int | None = None

    @property
    def admitted(self) -> bool:
        return self.status == "ok"


class IpLimiter:
    """Rolling-window weight of one venue, with optional 429-then-ban enforcement."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._log: deque[tuple[float, int]] = deque()
        self.limit: int | None = None
        self.window_s = float(window_s)
        self.ban_after = 1
        self.ban_s = 0.0
        self._violations = 0
        self._bans = 0
        self._banned_until: float | None = None
        self.refused = {"limited": 0, "banned": 0}  # answers refused since start (never reset by configure)

    def configure(self, limit: int | None, *, window_s: float, ban_after: int, ban_s: float) -> None:
        """Enforce ``limit`` weight per ``window_s`` (None: only count); ``ban_after`` refusals in a row ban
        the IP for ``ban_s`` seconds, doubling for every further ban."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError("limit must be a positive integer or None")
        if window_s <= 0 or ban_s < 0 or ban_after < 1:
            raise ValueError("window_s must be positive, ban_s not negative and ban_after at least 1")
        self.limit = limit
        self.window_s = float(window_s)
        self.ban_after = int(ban_after)
        self.ban_s = float(ban_s)
        self._violations = 0
        self._bans = 0
        self._banned_until = None

    def used(self, window_s: float | None = None) -> int:
        """Weight admitted in the last ``window_s`` seconds (default: the limiter's window)."""
        now = self._clock()
        horizon = now - (self.window_s if window_s is None else window_s)
        return sum(weight for stamp, weight in self._log if stamp > horizon)

    def banned_until_ms(self) -> int | None:
        now = self._clock()
        if self._banned_until is None or now >= self._banned_until:
            return None
        return int(time.time() * 1000 + (self._banned_until - now) * 1000)

    def admit(self, weight: int) -> Verdict:
        """Record ``weight`` and admit the request, or refuse it (refused requests add no weight)."""
        now = self._clock()
        self._prune(now)
        used = self.used()
        if self._banned_until is not None and now < self._banned_until:
            retry = math.ceil(self._banned_until - now)
            self.refused["banned"] += 1
            return Verdict("banned", used, self.limit, self.window_s, retry, self.banned_until_ms())
        if self.limit is None or used + weight <= self.limit:
            self._log.append((now, weight))
            self._violations = 0
            return Verdict("ok", used + weight, self.limit, self.window_s)
        self._violations += 1
        if self._violations >= self.ban_after and self.ban_s > 0:
            self._bans += 1
            self._violations = 0
            duration = min(self.ban_s * 2 ** (self._bans - 1), MAX_BAN_S)
            self._banned_until = now + duration
            self.refused["banned"] += 1
            return Verdict("banned", used, self.limit, self.window_s, math.ceil(duration), self.banned_until_ms())
        self.refused["limited"] += 1
        return Verdict("limited", used, self.limit, self.window_s, self._seconds_until_room(now, used, weight))

    def _seconds_until_room(self, now: float, used: int, weight: int) -> int:
        horizon = now - self.window_s
        freed = 0
        for stamp, logged in self._log:
            if stamp <= horizon:
                continue
            freed += logged
            if used - freed + weight <= (self.limit or 0):
                return max(1, math.ceil(stamp + self.window_s - now))
        return max(1, math.ceil(self.window_s))

    def _prune(self, now: float) -> None:
        keep = now - max(self.window_s, 600.0)  # weight_used() may look back up to ten minutes
        while self._log and self._log[0][0] <= keep:
            self._log.popleft()
