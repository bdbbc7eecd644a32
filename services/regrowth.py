"""Growth re-alerts: Snooze and Acknowledge cover what was shown, not what comes later.

A finding is keyed by (account, market, side, kind), so an orphan of 1 contract that becomes 1,000 is the same
finding; without this rule its later checks would only refresh its figures, silently. Each finding keeps a
baseline — what its alerts showed when reconbot last alerted it or a trader last snoozed, acknowledged or
reopened it — and a check that finds it grown by ``alerts.regrowth_factor`` (size at stake or USD exposure) or
at a higher severity ends the snooze or acknowledgement and alerts again, naming the growth. The baseline then
moves to what that alert shows, so a further small change stays silent.

The size at stake is what the kind puts at risk: the exchange position of an orphan or unprotected position,
the DB size of a ghost or unknown symbol, the gap between the two of a quantity mismatch (its exchange size
growing, or its DB size shrinking away from it). A stray order has no size of its own: its severity decides.
"""

from __future__ import annotations

from decimal import Decimal

from services.finding_details import Baseline, FindingDetails, Growth
from services.model import FindingKind, FindingState

_DB_SIDE = frozenset({FindingKind.GHOST, FindingKind.UNKNOWN_SYMBOL})
_EXCHANGE_SIDE = frozenset({FindingKind.ORPHAN, FindingKind.UNPROTECTED})


def size_at_stake(kind: FindingKind, details: FindingDetails) -> Decimal | None:
    if kind in _EXCHANGE_SIDE:
        return details.exchange_quantity
    if kind in _DB_SIDE:
        return details.db_quantity
    if kind is FindingKind.QUANTITY_MISMATCH and details.difference is not None:
        return abs(details.difference)
    return None


def value_at_stake(kind: FindingKind, details: FindingDetails) -> Decimal | None:
    """The size at stake's worth: a ghost's DB value, else its share of the exchange position's notional (a
    share, not size × price, so an inverse contract's coin notional stays right)."""
    if kind in _DB_SIDE:
        return details.db_value
    at_stake = size_at_stake(kind, details)
    held = details.exchange_quantity
    if at_stake is None or details.notional is None or not held:
        return None
    return details.notional * at_stake / held


def baseline_of(kind: FindingKind, details: FindingDetails, state: FindingState) -> Baseline:
    return Baseline(
        state=state,
        size=size_at_stake(kind, details),
        exposure_usd=details.exposure_usd,
        severity=details.severity,
    )


def _rose(before: Decimal | None, now: Decimal | None, factor: Decimal) -> bool:
    return before is not None and now is not None and before > 0 and now >= before * factor


def growth_of(kind: FindingKind, details: FindingDetails, baseline: Baseline, factor: Decimal) -> Growth | None:
    """The growth from ``baseline`` to ``details`` when it is material, else None."""
    size = size_at_stake(kind, details)
    severer = (
        baseline.severity is not None
        and details.severity is not None
        and details.severity.rank < baseline.severity.rank
    )
    bigger = _rose(baseline.size, size, factor) or _rose(baseline.exposure_usd, details.exposure_usd, factor)
    if not (severer or bigger):
        return None
    return Growth(
        before=baseline,
        size=size,
        value=value_at_stake(kind, details),
        currency=details.currency,
        exposure_usd=details.exposure_usd,
        severity=details.severity,
    )
