"""How loud a finding is: severity follows the money at stake, and sound is for new risk.

Severity is critical, warning or info by the finding's exposure in USD (``alerts.severity``); a finding whose
value cannot be told stays a warning. Sound follows risk, not kind (``alerts.notify``, per kind and per
cause): new orphans and unprotected positions ring, and so does a position the venue's risk engine ended or cut
(liquidation, auto-deleveraging) whatever its kind; the rest arrives silently, and ``off`` keeps a kind or a
cause out of the chats (it is still recorded and listed by /findings). Info-level findings never ring.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum

from services.causes import CloseKind
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
# A cause's setting (its own, else this default) beats its kind's: the venue's risk engine closing a position is
# news however its finding is filed.
DEFAULT_CAUSE_NOTIFY: dict[CloseKind, Notify] = {CloseKind.LIQUIDATION: Notify.LOUD, CloseKind.ADL: Notify.LOUD}
NotifyKey = FindingKind | CloseKind


def notify_of(rules: Mapping[NotifyKey, Notify], kind: FindingKind, cause: CloseKind | None) -> Notify:
    """How a finding of ``kind`` whose alert tells ``cause`` is announced: the cause's setting (its own, else
    its default), else the kind's."""
    if cause is not None:
        chosen = rules.get(cause, DEFAULT_CAUSE_NOTIFY.get(cause))
        if chosen is not None:
            return chosen
    return rules.get(kind, DEFAULT_NOTIFY[kind])


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
