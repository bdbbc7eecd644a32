"""Ground truth of a soak: every change made to either side of a position, and every window in which a fault
kept reconbot from seeing an account.

The driver is the only writer of the exchange side (reconbot may not place orders in the soak), so each of its
changes records the exchange size exactly. The DB side has two writers — the driver playing the trading bot,
and reconbot's auto-fix — so DB changes are recorded as deltas and the two are merged at the end. Replaying
the merged changes per (account, market, side) gives the drift intervals: maximal spans in which one kind of
drift held. Times are wall-clock seconds (``time.time()``), the clock PostgreSQL's ``now()`` also reads.

A drift is *real* when it lasted its minimum life, the time reconbot's rules ask a discrepancy to persist:
``grace_s`` when the change that started it made the position young (an exchange open or resize, a new or
resized DB row), else ``verify_delay_s`` (the confirming second read). Anything shorter — the trading bot
recording its own change a moment late — is not drift, and an alert for it is a false alert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from services.model import FindingKind, PositionKey

ZERO = Decimal(0)


DRIFT_KINDS = frozenset({FindingKind.ORPHAN, FindingKind.GHOST, FindingKind.QUANTITY_MISMATCH})
"""The finding kinds the soak makes: the ones two position books can disagree by."""


def drift_kind(exchange: Decimal, db: Decimal) -> FindingKind | None:
    if exchange > 0 and db == 0:
        return FindingKind.ORPHAN
    if exchange == 0 and db > 0:
        return FindingKind.GHOST
    if exchange != db:
        return FindingKind.QUANTITY_MISMATCH
    return None


class Writer(StrEnum):
    DRIVER = "driver"  # the soak, as the venue or as the trading bot
    RECONBOT = "reconbot"  # an audited fix


@dataclass(frozen=True)
class Change:
    """One change of one side of a position: the exchange size after it (None: the exchange side did not
    change) and what it added to the DB's active size. ``young`` when the change makes the position young for
    reconbot's grace window; ``planned_s`` (None: until further notice) is what the driver meant, so a drift
    that reconbot's own fix cut short is judged by how long it would have lasted."""

    at: float
    key: PositionKey
    exchange: Decimal | None
    db_delta: Decimal
    young: bool
    what: str
    by: Writer = Writer.DRIVER
    planned_s: float | None = None  # how long the driver meant the discrepancy this change opens to last


@dataclass(frozen=True)
class Drift:
    key: PositionKey
    kind: FindingKind
    start: float
    end: float  # the end of the soak for a drift that never ended
    min_life: float
    cause: str
    ended_by: Writer | None = None  # None: still there at the end
    planned_s: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def real(self) -> bool:
        """Lasted its minimum life — or, when reconbot's fix ended it, would have: a liquidation is drift
        however fast it is fixed, the trading bot's own close recorded a moment late is not."""
        if self.ended_by is Writer.RECONBOT:
            return self.planned_s is None or self.planned_s >= self.min_life
        return self.duration >= self.min_life

    def describe(self, origin: float) -> str:
        return f"{self.kind} {self.key} from +{self.start - origin:.1f}s for {self.duration:.1f}s ({self.cause})"


@dataclass(frozen=True)
class Timing:
    """The soak's intervals, as reconbot was configured."""

    grace_s: float
    verify_delay_s: float
    orphan_interval_s: float
    reconcile_interval_s: float
    jitter_s: float
    margin_s: float = 3.0

    @property
    def due_s(self) -> float:
        """How long a real drift may stay unseen once its minimum life is over, with nothing in the way: the
        confirming read, the longest schedule, its jitter and a margin for the pipeline."""
        longest = max(self.orphan_interval_s, self.reconcile_interval_s)
        return self.verify_delay_s + longest + self.jitter_s + self.margin_s

    def min_life(self, young: bool) -> float:
        return self.grace_s if young else self.verify_delay_s


class Scope(StrEnum):
    ACCOUNT = "account"
    VENUE = "venue"
    ALL = "all"


@dataclass(frozen=True)
class Window:
    """A span in which a fault kept reconbot from reading some accounts (their drift cannot be due then)."""

    scope: Scope
    target: str  # the account or venue; "" for every account
    start: float
    end: float
    fault: str

    def hides(self, account: str, venue: str) -> bool:
        if self.scope is Scope.ALL:
            return True
        return self.target == (account if self.scope is Scope.ACCOUNT else venue)


@dataclass
class Ledger:
    """What the driver did, in order; the exchange side as the driver last set it."""

    timing: Timing
    changes: list[Change] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    _exchange: dict[PositionKey, Decimal] = field(default_factory=dict)

    def baseline(self, key: PositionKey, size: Decimal, at: float) -> None:
        """A matched position both sides hold when the soak starts."""
        self.changes.append(Change(at, key, size, size, False, "baseline"))
        self._exchange[key] = size

    def exchange(self, key: PositionKey) -> Decimal:
        return self._exchange.get(key, ZERO)

    def record(
        self,
        at: float,
        key: PositionKey,
        *,
        exchange: Decimal | None = None,
        db_delta: Decimal = ZERO,
        young: bool,
        what: str,
        planned_s: float | None = None,
    ) -> Change:
        change = Change(at, key, exchange, db_delta, young, what, Writer.DRIVER, planned_s)
        self.changes.append(change)
        if exchange is not None:
            self._exchange[key] = exchange
        return change

    def hide(self, window: Window) -> None:
        self.windows.append(window)

    def last(self, key: PositionKey) -> Change | None:
        """The latest change of ``key``."""
        return next((c for c in reversed(self.changes) if c.key == key), None)

    def abandon(self, change: Change) -> None:
        """The discrepancy ``change`` opened will not be ended as planned (the soak stopped first): it lasts."""
        for index, recorded in enumerate(self.changes):
            if recorded is change:
                self.changes[index] = replace(change, planned_s=None)


def _drift(kind: FindingKind, opened: Change, until: float, ended_by: Writer | None, timing: Timing) -> Drift:
    cause = f"{opened.by}: {opened.what}"
    life = timing.min_life(opened.young)
    return Drift(opened.key, kind, opened.at, until, life, cause, ended_by, opened.planned_s)


def drifts(changes: Iterable[Change], end: float, timing: Timing) -> list[Drift]:
    """Replay the changes per key into drift intervals; a drift still open at ``end`` ends there."""
    by_key: dict[PositionKey, list[Change]] = defaultdict(list)
    for change in sorted(changes, key=lambda c: c.at):
        by_key[change.key].append(change)
    found: list[Drift] = []
    for history in by_key.values():
        exchange, db = ZERO, ZERO
        current: tuple[FindingKind, Change] | None = None
        for change in history:
            if change.exchange is not None:
                exchange = change.exchange
            db += change.db_delta
            kind = drift_kind(exchange, db)
            if current is not None and current[0] is kind:
                continue  # the same drift goes on (a mismatch whose sizes moved is still one finding)
            if current is not None:
                found.append(_drift(*current, change.at, change.by, timing))
                current = None
            if kind is not None:
                current = (kind, change)
        if current is not None:
            found.append(_drift(*current, max(end, current[1].at), None, timing))
    found.sort(key=lambda d: (d.start, d.key))
    return found


def longest_clear_span(start: float, end: float, covers: Sequence[tuple[float, float]]) -> float:
    """The longest part of [start, end] that none of the ``covers`` spans overlaps."""
    best, cursor = 0.0, start
    for lo, hi in sorted(covers):
        if hi <= cursor:
            continue
        if lo >= end:
            break
        best = max(best, min(lo, end) - cursor)
        cursor = max(cursor, hi)
        if cursor >= end:
            return best
    return max(best, end - cursor)


def is_due(drift: Drift, windows: Iterable[Window], venue: str, timing: Timing) -> bool:
    """Whether reconbot had to announce this drift: real, and unseen past its minimum life for longer than
    ``timing.due_s`` in one stretch no fault of its account hid."""
    if not drift.real:
        return False
    covers = [(w.start, w.end) for w in windows if w.hides(drift.key.account, venue)]
    return longest_clear_span(drift.start + drift.min_life, drift.end, covers) >= timing.due_s
