"""The nouns of reconciliation: positions on both sides, the key that matches them, and findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.causes import CloseCause
    from services.protection import ProtectionState, ProtectiveOrder


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"


class FindingKind(StrEnum):
    ORPHAN = "orphan"
    GHOST = "ghost"
    QUANTITY_MISMATCH = "quantity_mismatch"
    UNKNOWN_SYMBOL = "unknown_symbol"
    UNPROTECTED = "unprotected"
    STRAY_ORDER = "stray_order"


class FindingState(StrEnum):
    """A finding's life: open → snoozed / acknowledged → resolved (drift gone) or fixed (someone fixed it)."""

    OPEN = "open"
    SNOOZED = "snoozed"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FIXED = "fixed"


LIVE_STATES = (FindingState.OPEN, FindingState.SNOOZED, FindingState.ACKNOWLEDGED)
SCAN_KINDS = frozenset({FindingKind.ORPHAN, FindingKind.UNPROTECTED, FindingKind.STRAY_ORDER})
"""What the frequent scan looks for: risk on the exchange (an untracked position, a position without a stop, a
stop with no position). Reconciliation looks for the DB being wrong."""
RECONCILIATION = frozenset({FindingKind.GHOST, FindingKind.QUANTITY_MISMATCH, FindingKind.UNKNOWN_SYMBOL})
ALL_KINDS = SCAN_KINDS | RECONCILIATION
ORDER_KINDS = frozenset({FindingKind.UNPROTECTED, FindingKind.STRAY_ORDER})
GONE_KINDS = frozenset({FindingKind.GHOST, FindingKind.STRAY_ORDER})
"""Findings that say the exchange holds no position on their key: only a read that says so confirms one."""
"""Kinds that need the protective orders: not judged on an account whose orders could not be read."""
HELD_KINDS = frozenset({FindingKind.ORPHAN, FindingKind.QUANTITY_MISMATCH, FindingKind.UNPROTECTED})
"""Findings that say the exchange holds a position on their key: a read that says it is gone ends one."""


@dataclass(frozen=True, slots=True, order=True)
class PositionKey:
    """Identity of a position: hedge mode holds a long and a short on one market, so the side is part of it."""

    account: str
    market: str
    side: Side

    def __str__(self) -> str:
        return f"{self.account} {self.market} {self.side.upper()}"


@dataclass(frozen=True, slots=True)
class Sighting:
    """A change the venue's stream announced on (account, market, side); a side of None is either side (an
    order, or a one-way position that went flat). A finding on a key the stream announced is confirmed by the
    REST read it triggered: the announcement was the first sighting — but for a finding that says the position
    is gone (``GONE_KINDS``), only an announcement that itself says so (``gone``: a position update of size 0)
    is a read; one that merely names the market (an order, a position with a size) is not."""

    account: str
    market: str
    side: Side | None = None
    gone: bool = False

    def covers(self, key: PositionKey) -> bool:
        return (self.account, self.market) == (key.account, key.market) and self.side in (None, key.side)

    def confirms(self, kind: FindingKind, key: PositionKey) -> bool:
        """Whether this sighting stands in for the first of the two reads that confirm a finding."""
        return self.covers(key) and (self.gone or kind not in GONE_KINDS)

    def ends(self, kind: FindingKind, key: PositionKey) -> bool:
        """Whether this sighting stands in for the first of the two reads that end a finding: only a position
        update of size 0 says the position a finding of ``HELD_KINDS`` is about is gone."""
        return self.gone and self.covers(key) and kind in HELD_KINDS


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """One non-zero position as the venue reports it; ``market`` is the venue's own id (BTCUSDT, BTCPERP)."""

    account: str
    exchange: str
    market: str
    symbol: str
    side: Side
    quantity: Decimal
    entry_price: Decimal | None = None
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    leverage: Decimal | None = None
    liquidation_price: Decimal | None = None
    notional: Decimal | None = None
    margin: Decimal | None = None
    settle: str | None = None
    stop_loss: Decimal | None = None  # the position's own stop (Bybit), or the nearest stop order once read
    protection: ProtectionState | None = None  # None: not assessed yet
    take_profit: Decimal | None = None
    amount_step: Decimal | None = None
    contract_size: Decimal | None = None  # base units (linear) or USD (inverse) per contract
    inverse: bool = False
    price_tick: Decimal | None = None
    category: str | None = None
    hedged: bool = False
    opened_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> PositionKey:
        return PositionKey(self.account, self.market, self.side)

    @property
    def changed_at(self) -> datetime | None:
        """The last moment the venue says this position was opened or changed."""
        stamps = [t for t in (self.opened_at, self.updated_at) if t is not None]
        return max(stamps) if stamps else None


@dataclass(frozen=True, slots=True)
class DbPosition:
    """One active row of the trading bot's positions table, matched to an account and a market id."""

    id: str
    account: str
    exchange: str
    db_exchange: str
    symbol: str
    market: str
    side: Side
    quantity: Decimal
    entry_price: Decimal | None = None
    opened_at: datetime | None = None
    updated_at: datetime | None = None
    market_listed: bool = True
    stop_loss: Decimal | None = None  # what the trading bot believes, where the mapping has a stop column
    has_stop_loss: bool | None = None

    @property
    def key(self) -> PositionKey:
        return PositionKey(self.account, self.market, self.side)


@dataclass(frozen=True, slots=True)
class Finding:
    """A discrepancy between the two sides for one position key."""

    kind: FindingKind
    key: PositionKey
    exchange: str
    exchange_position: ExchangePosition | None = None
    db_positions: tuple[DbPosition, ...] = ()
    orders: tuple[ProtectiveOrder, ...] = ()  # a stray order finding's orders
    cause: CloseCause | None = None  # why a ghost vanished (or a size shrank), from the venue's history

    @property
    def fingerprint(self) -> str:
        """Stable across rounds: the same drift seen again is the same finding."""
        return f"{self.key.account}|{self.key.market}|{self.key.side}|{self.kind}"

    @property
    def exchange_quantity(self) -> Decimal | None:
        return self.exchange_position.quantity if self.exchange_position else None

    @property
    def db_quantity(self) -> Decimal | None:
        if not self.db_positions:
            return None
        return sum((p.quantity for p in self.db_positions), Decimal(0))

    @property
    def db_position_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.db_positions)

    @property
    def difference(self) -> Decimal | None:
        """Exchange size minus DB size, signed."""
        if self.exchange_quantity is None or self.db_quantity is None:
            return None
        return self.exchange_quantity - self.db_quantity


class FailedSide(StrEnum):
    """Which side of the books made an account unchecked, so what is said about it names the real culprit."""

    VENUE = "venue"  # the exchange did not answer as it must
    DB = "db"  # a row of the trading bot's table could not be read


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """Whether one account could be read this round; an unchecked account yields no findings at all."""

    account: str
    exchange: str
    checked: bool
    error: str | None = None
    positions: int = 0
    orders_error: str | None = None  # the protective orders could not be read: protection unknown, no strays
    failed: FailedSide | None = None  # set when unchecked

    @property
    def status(self) -> str:
        return "ok" if self.checked else "unchecked"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: per-account status, confirmed findings and positions still in grace."""

    accounts: tuple[AccountStatus, ...]
    findings: tuple[Finding, ...]
    pending: tuple[PositionKey, ...] = ()
    pending_gone: tuple[PositionKey, ...] = ()  # the pending keys this read found no exchange position on
    started_at: datetime | None = None
    finished_at: datetime | None = None
    kinds: frozenset[FindingKind] = field(default=ALL_KINDS)
    budget_notes: tuple[str, ...] = ()  # venues whose request budget, not the interval, bounds the accounts
    sightings: frozenset[Sighting] = frozenset()  # what a stream announced before this check's reads

    @property
    def unchecked(self) -> tuple[AccountStatus, ...]:
        return tuple(a for a in self.accounts if not a.checked)

    def of_kind(self, kind: FindingKind) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is kind)
