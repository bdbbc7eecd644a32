"""Why a position vanished, as the venue's own history tells it: liquidation, auto-deleveraging, a stop-loss or
take-profit that triggered, a plain close (by hand, by another bot), a settlement or delivery — or unknown,
with the reason (no closing trade in the window, or a history read that failed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from services.model import FindingKind


class CloseKind(StrEnum):
    LIQUIDATION = "liquidation"
    ADL = "adl"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    MANUAL_OR_OTHER = "manual_or_other"
    SETTLEMENT = "settlement"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        """The cause in a few words: "stop-loss", "auto-deleveraging"."""
        return _LABELS[self]

    @property
    def forced(self) -> bool:
        """Closed by the venue's risk engine, not by anyone's order."""
        return self in (CloseKind.LIQUIDATION, CloseKind.ADL)


def told_cause(kind: FindingKind, cause: CloseKind | None) -> CloseKind | None:
    """The cause a finding's alert tells, and so the one its sound follows: a ghost's always, a shrunk size's
    only when the venue's risk engine cut it (a partial stop says nothing the size does not)."""
    if cause is None or kind not in (FindingKind.GHOST, FindingKind.QUANTITY_MISMATCH):
        return None
    return cause if kind is FindingKind.GHOST or cause.forced else None


_LABELS = {
    CloseKind.LIQUIDATION: "liquidation",
    CloseKind.ADL: "auto-deleveraging",
    CloseKind.STOP_LOSS: "stop-loss",
    CloseKind.TAKE_PROFIT: "take-profit",
    CloseKind.MANUAL_OR_OTHER: "close by an order",
    CloseKind.SETTLEMENT: "settlement",
    CloseKind.UNKNOWN: "unknown cause",
}


@dataclass(frozen=True, slots=True)
class CloseCause:
    """How a position (or part of it) was closed: by which kind of order, when, at what average price, with
    what realized PnL (in ``currency``), and the venue's order id; ``note`` says why the kind is unknown."""

    kind: CloseKind
    closed_at: datetime | None = None
    exit_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    currency: str | None = None
    order_id: str | None = None
    closed_quantity: Decimal | None = None
    note: str | None = None

    @classmethod
    def unknown(cls, note: str) -> CloseCause:
        return cls(CloseKind.UNKNOWN, note=note)


EXIT_REASONS = {
    CloseKind.LIQUIDATION: "reconciliation: liquidation on exchange",
    CloseKind.ADL: "reconciliation: auto-deleveraging on exchange",
    CloseKind.STOP_LOSS: "reconciliation: stop-loss on exchange",
    CloseKind.TAKE_PROFIT: "reconciliation: take-profit on exchange",
    CloseKind.MANUAL_OR_OTHER: "reconciliation: closed on exchange",
    CloseKind.SETTLEMENT: "reconciliation: settlement on exchange",
    CloseKind.UNKNOWN: "reconciliation: position not found on exchange",  # the seed's own words
}


def exit_reason(kind: CloseKind | None) -> str:
    """What a fix writes to the row's exit reason for this cause."""
    return EXIT_REASONS[kind or CloseKind.UNKNOWN]
