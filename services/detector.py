"""The detector: a pure function from the two sides of the books to findings. No I/O, no clock of its own."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from services.model import (
    ALL_KINDS,
    DbPosition,
    ExchangePosition,
    Finding,
    FindingKind,
    PositionKey,
)
from services.protection import Protection, ProtectiveOrder


@dataclass(frozen=True, slots=True)
class DetectionRules:
    grace: timedelta = timedelta(seconds=60)
    quantity_tolerance: Decimal = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class Detection:
    findings: tuple[Finding, ...]
    pending: tuple[PositionKey, ...]


def quantities_differ(exchange_qty: Decimal, db_qty: Decimal, step: Decimal | None, tolerance: Decimal) -> bool:
    """True when two sizes differ by a real amount.

    A difference smaller than one amount step is rounding, never drift. Beyond that, the relative tolerance
    (of the larger size) applies, so a tolerance can make the check looser but never tighter than one step.
    """
    difference = abs(exchange_qty - db_qty)
    if difference == 0:
        return False
    if step is not None and difference < step:
        return False
    return difference > tolerance * max(abs(exchange_qty), abs(db_qty))


def is_young(moment: datetime | None, now: datetime, grace: timedelta) -> bool:
    """Inside the grace window: too fresh to call drift. An unknown moment is not young."""
    return moment is not None and now - moment < grace


def detect(
    db_positions: Iterable[DbPosition],
    exchange_positions: Iterable[ExchangePosition],
    rules: DetectionRules,
    now: datetime,
    kinds: frozenset[FindingKind] = ALL_KINDS,
    orders: Iterable[ProtectiveOrder] | None = None,
    require_stop: bool = True,
    venue: str = "",
) -> Detection:
    """Compare both sides key by key (account, market, side).

    Several active DB rows on one key are one position to the exchange, so their sizes are summed.
    A position inside the grace window is reported as pending rather than as a finding. A row whose symbol is
    no market of its venue is an unknown symbol: it is never matched, so it can never look like a ghost.
    A tracked position of the right size whose stops cover none or part of it is unprotected (when stops are
    required); a resting stop or take-profit with no position to close is a stray order. ``orders`` None means
    the orders are not known this round: then no stray order is reported.
    """
    db_by_key: dict[PositionKey, list[DbPosition]] = defaultdict(list)
    unmapped: dict[PositionKey, list[DbPosition]] = defaultdict(list)
    for row in db_positions:
        (db_by_key if row.market_listed else unmapped)[row.key].append(row)
    exchange_by_key: dict[PositionKey, ExchangePosition] = {}
    for position in exchange_positions:
        if position.quantity != 0:
            exchange_by_key[position.key] = position

    findings: list[Finding] = []
    pending: list[PositionKey] = []
    for key, position in exchange_by_key.items():
        rows = db_by_key.get(key)
        if rows is None:
            if FindingKind.ORPHAN in kinds:
                if is_young(position.changed_at, now, rules.grace):
                    pending.append(key)
                else:
                    findings.append(Finding(FindingKind.ORPHAN, key, position.exchange, position))
            continue
        db_quantity = sum((row.quantity for row in rows), Decimal(0))
        if not quantities_differ(position.quantity, db_quantity, position.amount_step, rules.quantity_tolerance):
            if FindingKind.UNPROTECTED in kinds and require_stop and _unprotected(position):
                if is_young(position.changed_at, now, rules.grace):
                    pending.append(key)
                else:
                    findings.append(Finding(FindingKind.UNPROTECTED, key, position.exchange, position, _by_id(rows)))
            continue
        if FindingKind.QUANTITY_MISMATCH not in kinds:
            continue
        last_change = max(
            (t for t in [position.changed_at, *(row.updated_at or row.opened_at for row in rows)] if t is not None),
            default=None,
        )
        if is_young(last_change, now, rules.grace):
            pending.append(key)
        else:
            findings.append(Finding(FindingKind.QUANTITY_MISMATCH, key, position.exchange, position, _by_id(rows)))

    if FindingKind.GHOST in kinds:
        for key, rows in db_by_key.items():
            if key in exchange_by_key:
                continue
            opened = max((row.opened_at for row in rows if row.opened_at is not None), default=None)
            if is_young(opened, now, rules.grace) or all(row.quantity == 0 for row in rows):
                # Young, or an entry whose order has not filled yet (size 0): pending until it fills or closes.
                pending.append(key)
            else:
                findings.append(Finding(FindingKind.GHOST, key, _exchange_of(rows), None, _by_id(rows)))

    if FindingKind.UNKNOWN_SYMBOL in kinds:
        # A row whose symbol is no market of its venue cannot be compared: never a ghost, never fixed.
        for key, rows in unmapped.items():
            findings.append(Finding(FindingKind.UNKNOWN_SYMBOL, key, _exchange_of(rows), None, _by_id(rows)))

    if FindingKind.STRAY_ORDER in kinds and orders is not None:
        stray: dict[PositionKey, list[ProtectiveOrder]] = defaultdict(list)
        for order in orders:
            if order.key not in exchange_by_key:
                stray[order.key].append(order)
        for key, resting in stray.items():
            newest = max((o.created_at for o in resting if o.created_at is not None), default=None)
            if is_young(newest, now, rules.grace):
                pending.append(key)  # placed with an entry that has not filled yet, perhaps
            else:
                resting.sort(key=lambda o: o.order_id)
                findings.append(Finding(FindingKind.STRAY_ORDER, key, venue, orders=tuple(resting)))

    findings.sort(key=lambda f: (f.key, f.kind))
    pending.sort()
    return Detection(tuple(findings), tuple(pending))


def _unprotected(position: ExchangePosition) -> bool:
    """Known to lack a stop for all or part of its size; unknown protection is not reported as missing."""
    return position.protection is not None and position.protection.level in (Protection.NONE, Protection.PARTIAL)


def _by_id(rows: list[DbPosition]) -> tuple[DbPosition, ...]:
    return tuple(sorted(rows, key=lambda row: (len(row.id), row.id)))


def _exchange_of(rows: list[DbPosition]) -> str:
    return rows[0].exchange
