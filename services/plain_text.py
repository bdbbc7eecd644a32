"""Findings as plain text, for the console and e-mail (Telegram has its own HTML in bot/texts.py). Every line
is escaped on its own (``text_safety``), so a DB or venue string can add no line of its own."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from services.cause_text import cause_subject, explain
from services.finding_details import FindingDetails
from services.findings import StoredFinding
from services.kinds import KINDS, SYMBOL_MAPPING_HINT, count_text
from services.model import FailedSide, FindingKind, FindingState
from services.money import amount, size
from services.notices import Notice, NoticeKind
from services.protection import Protection
from services.protection_text import db_belief_text, order_text, protection_text
from services.report import decimal_text
from services.text_safety import escape_controls, escape_lines


def _value(value: Decimal | str | None) -> str:
    if isinstance(value, Decimal):
        return decimal_text(value) or "unknown"
    return "unknown" if value in (None, "") else str(value)


def notice_text(notice: Notice) -> str:
    """A notice as one plain line, for the console and e-mail."""
    return escape_controls(_notice_line(notice))


def _notice_line(notice: Notice) -> str:
    if notice.kind is NoticeKind.UNREACHABLE:
        since = notice.since.strftime("%H:%M UTC") if notice.since else "?"
        what = "not checked" if notice.failed is FailedSide.DB else "exchange not reachable"  # the error names the row
        return f"{notice.account}: {what} since {since} ({notice.failures} checks in a row): {notice.error}"
    if notice.kind is NoticeKind.REACHABLE:
        return f"{notice.account}: reachable again; its positions are being checked."
    if notice.kind is NoticeKind.STREAM_DOWN:
        since = notice.since.strftime("%H:%M UTC") if notice.since else "?"
        reason = f" ({notice.error})" if notice.error else ""
        return f"{notice.account}: live stream down since {since}, polling every {_every(notice.interval_s)}{reason}"
    if notice.kind is NoticeKind.STREAM_UP:
        return f"{notice.account}: live stream back; changes are seen within seconds again."
    if notice.kind in _PRESENCE:
        return _presence_line(notice)
    if notice.kind is NoticeKind.AUTO_FIX_LIMIT:
        return (
            f"{notice.count} ghost positions confirmed at once, more than the auto-fix limit of {notice.limit}; "
            "none was closed automatically. Please review them."
        )
    return notice.text or ""


_PRESENCE = frozenset({NoticeKind.STARTED, NoticeKind.STOPPED, NoticeKind.STALLED, NoticeKind.RESUMED})
_LISTED = 10  # accounts named in one presence line; the rest are counted


def _presence_line(notice: Notice) -> str:
    """Whether anyone is watching: start, graceful stop, checks stalled and resumed."""
    names = list(notice.accounts or ())
    listed = ", ".join(names[:_LISTED]) + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
    on = f" (replica {notice.replica})" if notice.replica else ""
    if notice.kind is NoticeKind.STARTED:
        return f"👀 Watching {len(names)} account{'s' if len(names) != 1 else ''}{': ' + listed if names else ''}{on}."
    if notice.kind is NoticeKind.STOPPED:
        if notice.count:
            return f"⏹️ Watching stopped{on}: the other {notice.count} replica(s) take its accounts over."
        return f"⏹️ Watching stopped{on}: restart reconbot to resume."
    if notice.kind is NoticeKind.STALLED:
        return (
            f"⚠️ No check on {listed} for {_every(notice.quiet_s)}{on}: checks are due every "
            f"{_every(notice.interval_s)}. Nobody is watching these accounts; restart reconbot if this lasts."
        )
    return f"✅ Checks resumed on {listed}{on}."


def _every(seconds: float | None) -> str:
    if seconds is None:
        return "scheduled check"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def counts(findings: Sequence[StoredFinding], *, chat: bool = False) -> str:
    """``3 orphans, 1 ghost`` (``1 size mismatch`` in a chat)."""
    by_kind: dict[FindingKind, int] = {}
    for finding in findings:
        by_kind[finding.kind] = by_kind.get(finding.kind, 0) + 1
    return ", ".join(count_text(kind, n, chat=chat) for kind, n in by_kind.items())


_GREW_FROM = {
    FindingState.OPEN: "alerted at",
    FindingState.SNOOZED: "snoozed at",
    FindingState.ACKNOWLEDGED: "acknowledged at",
}
_SIZE_NOUN = {
    FindingKind.QUANTITY_MISMATCH: "difference ",
    FindingKind.GHOST: "DB size ",
    FindingKind.UNKNOWN_SYMBOL: "DB size ",
}


def growth_text(finding: StoredFinding) -> tuple[str, str] | None:
    """How a finding grew since it was shown, as a title and the rest of one line: ``Orphan position grew`` and
    ``BTCUSDT LONG 1 → 1,000 contracts (≈ 65,000,000.00 USDT) — snoozed at 1``; None when it never grew."""
    growth = finding.details.growth
    if growth is None:
        return None
    before = growth.before
    parts = [f"{finding.market} {finding.side.upper()}"]
    if before.size is not None and growth.size is not None:
        parts.append(f"{_SIZE_NOUN.get(finding.kind, '')}{size(before.size)} → {size(growth.size)} contracts")
        was = size(before.size)
    else:
        parts.append(f"{amount(before.exposure_usd, 'USD')} → {amount(growth.exposure_usd, 'USD')}")
        was = amount(before.exposure_usd, "USD")
    if growth.value is not None:
        parts[-1] += f" (≈ {amount(growth.value, growth.currency)})"
    if before.severity is not None and growth.severity is not None and growth.severity != before.severity:
        parts[-1] += f", {before.severity} → {growth.severity}"
    return f"{KINDS[finding.kind].alert} grew", f"{' '.join(parts)} — {_GREW_FROM[before.state]} {was}"


def subject(finding: StoredFinding, prefix: str = "") -> str:
    head = f"{prefix} " if prefix else ""
    text = f"[reconbot] {head}{KINDS[finding.kind].short} {finding.market} {finding.side.upper()} on {finding.account}"
    return escape_controls(text)


def _protection(details: FindingDetails) -> str:
    if details.protection is Protection.NONE:
        return "NO STOP LOSS on the exchange"
    return f"stop-loss: {protection_text(details)}"


def finding_text(finding: StoredFinding) -> str:
    d = finding.details
    names = KINDS[finding.kind]
    where = f"{finding.market} {finding.side.upper()} on {finding.account} ({finding.exchange})"
    lines = [f"{names.title}: {names.headline}", where]
    grew = growth_text(finding)
    if grew is not None:
        lines.insert(0, " · ".join(grew))
    ids = ", ".join(f"#{i}" for i in d.db_position_ids)
    if finding.kind is FindingKind.ORPHAN:
        lines += [
            f"contracts: {_value(d.exchange_quantity)}",
            f"entry: {_value(d.entry_price)}  mark: {_value(d.mark_price)}",
            f"unrealized PnL: {_value(d.unrealized_pnl)}  leverage: {_value(d.leverage)}",
            f"notional: {amount(d.notional, d.currency)}",
            _protection(d),
        ]
    elif finding.kind is FindingKind.UNPROTECTED:
        lines += [
            f"contracts: {_value(d.exchange_quantity)} (DB position {ids})",
            f"entry: {_value(d.entry_price)}  mark: {_value(d.mark_price)}  leverage: {_value(d.leverage)}",
            _protection(d),
        ]
        belief = db_belief_text(d)
        if belief:
            lines.append(belief)
    elif finding.kind is FindingKind.STRAY_ORDER:
        lines.append("no position on the exchange for these orders to close:")
        lines += [f"  {order_text(order)}" for order in d.orders]
    elif finding.kind is FindingKind.GHOST:
        lines.append(f"DB position {ids}, size {_value(d.db_quantity)}; nothing on the exchange")
    elif finding.kind is FindingKind.UNKNOWN_SYMBOL:
        lines += [_value(d.note), f"to fix: {SYMBOL_MAPPING_HINT}"]
    else:
        lines += [
            f"exchange size: {_value(d.exchange_quantity)}  DB size: {_value(d.db_quantity)} ({ids})",
            f"difference: {_value(d.difference)}",
            _protection(d),
        ]
    if d.cause is not None:
        sentence = explain(
            finding.kind is FindingKind.GHOST, d.cause, cause_subject(finding.market, finding.side, d.db_position_ids)
        )
        if sentence:
            lines.append(sentence)
    lines.append(f"finding #{finding.id}, first seen {finding.first_seen:%Y-%m-%d %H:%M UTC}")
    if finding.state in (FindingState.RESOLVED, FindingState.FIXED):
        by = f" by {finding.closed_by}" if finding.state is FindingState.FIXED and finding.closed_by else ""
        lines.append(f"{finding.state.upper()}{by} at {finding.closed_at:%Y-%m-%d %H:%M UTC}: {finding.resolution}")
    elif finding.state is FindingState.SNOOZED and finding.snoozed_until:
        lines.append(f"snoozed by {finding.closed_by} until {finding.snoozed_until:%Y-%m-%d %H:%M UTC}")
    elif finding.state is FindingState.ACKNOWLEDGED:
        lines.append(f"acknowledged by {finding.closed_by}")
    return escape_lines(lines)
