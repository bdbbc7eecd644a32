"""How loud a finding is: severity follows the money at stake, and sound is for new risk.

Severity is critical, warning or info by the finding's exposure in USD (``alerts.severity``); a finding whose
value cannot be told stays a warning. Sound is per kind (``alerts.notify``): new orphans and unprotected
positions ring, the rest arrives silently, and ``off`` keeps a kind out of the chats (it is still recorded
and listed by /findings). Info-level findings never ring.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from services.model import FindingKind


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}[self]


class Notify(StrEnum):
    LOUD = "loud"
    SILENT = "silent"
    OFF = "off"


DEFAULT_NOTIFY: dict[FindingKind, Notify] = {
    FindingKind.ORPHAN: Notify.LOUD,
    FindingKind.UNPROTECTED: Notify.LOUD,
    FindingKind.GHOST: Notify.SILENT,
    FindingKind.QUANTITY_MISMATCH: Notify.SILENT,
    FindingKind.UNKNOWN_SYMBOL: Notify.SILENT,
    FindingKind.STRAY_ORDER: Notify.SILENT,
}


class MutedCritical(StrEnum):
    """What a critical alert does in a muted chat (``telegram.mute_critical``)."""

    RING = "ring"
    SILENT = "silent"


EMOJI = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠", Severity.INFO: "🔵"}


def severity_of(exposure_usd: Decimal | None, critical_usd: Decimal, warning_usd: Decimal) -> Severity:
    if exposure_usd is None:
        return Severity.WARNING
    if exposure_usd >= critical_usd:
        return Severity.CRITICAL
    if exposure_usd >= warning_usd:
        return Severity.WARNING
    return Severity.INFO
