"""A finding as Telegram shows it (HTML, every dynamic value escaped): the first line is what a phone's
notification preview shows — severity, what is wrong, the money at stake and the stop — then where, the
figures a trader decides on, and what to do. Digests and reminders list many findings in one message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from aiogram import html

from bot.texts import code, quote, when
from services.announcements import biggest_first
from services.cause_text import cause_subject, explain
from services.causes import CloseKind
from services.finding_details import FindingDetails
from services.findings import StoredFinding
from services.kinds import KINDS, SYMBOL_MAPPING_HINT
from services.model import FindingKind, FindingState
from services.money import amount, compact, percent, price, size
from services.plain_text import counts, growth_text
from services.protection import Protection
from services.protection_text import db_belief_text, order_text, protection_text
from services.report import decimal_text
from services.severity import EMOJI, Severity


def severity(finding: StoredFinding) -> Severity:
    return finding.details.severity or Severity.WARNING


def money_at_stake(finding: StoredFinding) -> str | None:
    """The one figure a trader weighs first: the position's notional, a ghost's DB value, a stray's orders."""
    d = finding.details
    if finding.kind is FindingKind.STRAY_ORDER:
        return f"{len(d.orders)} order{'s' if len(d.orders) != 1 else ''}"
    if finding.kind is FindingKind.GHOST:
        return f"DB holds ≈ {amount(d.db_value, d.currency)}" if d.db_value is not None else None
    if d.notional is not None:
        return amount(d.notional, d.currency)
    return None


def _stop_short(d: FindingDetails) -> str | None:
    if d.protection is Protection.NONE:
        return "<b>NO STOP LOSS</b>"
    if d.protection is Protection.PARTIAL:
        return "<b>PARTIAL STOP</b>"
    if d.protection is Protection.UNKNOWN:
        return "stop unknown"
    if d.protection is Protection.STOP and d.stop_loss is not None:
        return f"stop {price(d.stop_loss, d.price_tick)}"
    return None


def first_line(finding: StoredFinding) -> str:
    parts = [f"{EMOJI[severity(finding)]} <b>{KINDS[finding.kind].alert}</b>"]
    money = money_at_stake(finding)
    if money:
        parts.append(quote(money))
    stop = _stop_short(finding.details)
    if stop and finding.kind is not FindingKind.GHOST:
        parts.append(stop)
    return " · ".join(parts)


def growth_line(finding: StoredFinding) -> str | None:
    """``📈 Orphan position grew · BTCUSDT LONG 1 → 1,000 contracts (≈ …) — snoozed at 1``: first, so the
    notification preview of the alert it rings with says why it rings again."""
    grew = growth_text(finding)
    if grew is None:
        return None
    title, rest = grew
    return f"📈 <b>{quote(title)}</b> · {quote(rest)}"


def finding_headline(finding: StoredFinding) -> str:
    return (
        f"<b>{quote(finding.market)} {finding.side.upper()}</b> · {quote(finding.account)} ({quote(finding.exchange)})"
    )


def protection_line(details: FindingDetails) -> str:
    """The stop, the lack of one, or why it is not known: never "no stop" for a position whose orders could not
    be read."""
    if details.protection is Protection.NONE:
        return "⚠️ <b>NO STOP LOSS</b> on the exchange"
    text = quote(protection_text(details) or "")
    if details.protection is Protection.PARTIAL:
        return f"⚠️ <b>Stop-loss</b>: {text}"
    if details.protection is Protection.UNKNOWN:
        return f"❓ Stop-loss {text}"
    return f"🛡️ Stop-loss: {text}"


def duration(span: timedelta) -> str:
    """``3h 12m``, ``2d 4h``, ``45m``, ``30s``."""
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def _position_lines(d: FindingDetails) -> list[str]:
    """The figures of an exchange position: size and value, PnL and leverage, prices, liquidation."""
    lines = [f"Contracts: {code(size(d.exchange_quantity))} · Notional: {code(amount(d.notional, d.currency))}"]
    leverage = html.code(f"{decimal_text(d.leverage)}x") if d.leverage else "unknown"
    pnl = f"Unrealized PnL: {code(amount(d.unrealized_pnl, d.currency, sign=True))} · Leverage: {leverage}"
    if d.margin is not None:
        pnl += f" · Margin: {code(amount(d.margin, d.currency))}"
    lines.append(pnl)
    lines.append(f"Entry: {code(price(d.entry_price, d.price_tick))} · Mark: {code(price(d.mark_price, d.price_tick))}")
    if d.liquidation_price is not None:
        away = f" ({percent(d.liquidation_distance_pct)} from mark)" if d.liquidation_distance_pct else ""
        lines.append(f"Liquidation: {code(price(d.liquidation_price, d.price_tick))}{away}")
    lines.append(protection_line(d))
    return lines


def _age_line(finding: StoredFinding) -> str:
    """How long the position had been open when it was found (the venue's opening time), else when it was
    first seen; both fixed, so every copy of the alert reads the same."""
    opened = finding.details.venue_opened_at
    if opened is not None:
        return f"Open since {when(opened)} ({duration(finding.first_seen - opened)} when found)"
    return f"First seen {when(finding.first_seen)}"


def _db_rows(details: FindingDetails) -> str:
    return ", ".join(f"#{quote(r.id)}" for r in details.db_rows) or "none"


def _db_value(d: FindingDetails) -> str:
    return f" (≈ {quote(amount(d.db_value, d.currency))})" if d.db_value is not None else ""


_CAUSE_MARK = {
    CloseKind.LIQUIDATION: "💥",
    CloseKind.ADL: "💥",
    CloseKind.STOP_LOSS: "🛑",
    CloseKind.TAKE_PROFIT: "🎯",
    CloseKind.MANUAL_OR_OTHER: "✋",
    CloseKind.SETTLEMENT: "📅",
    CloseKind.UNKNOWN: "❔",
}


def finding_body(finding: StoredFinding) -> list[str]:
    """The lines that describe a finding, as detected."""
    d = finding.details
    grew = growth_line(finding)
    lines = [*([grew] if grew else []), first_line(finding), finding_headline(finding)]
    if finding.kind is FindingKind.ORPHAN:
        lines += [*_position_lines(d), _age_line(finding)]
    elif finding.kind is FindingKind.UNPROTECTED:
        lines += [*_position_lines(d), f"DB position {_db_rows(d)}", _age_line(finding)]
        belief = db_belief_text(d)
        if belief:
            lines.append(quote(belief))
    elif finding.kind is FindingKind.STRAY_ORDER:
        lines.append("No position on the exchange for these orders to close; one can open a position when it triggers:")
        lines += [f"• {quote(order_text(order))}" for order in d.orders]
    elif finding.kind is FindingKind.GHOST:
        lines += [
            f"DB position {_db_rows(d)} · size {code(size(d.db_quantity))}{_db_value(d)}",
            f"In the DB since: {when(d.opened_at)}",
        ]
    elif finding.kind is FindingKind.UNKNOWN_SYMBOL:
        lines += [
            f"{quote(d.note or '')}: reconbot cannot compare it, so it never calls it a ghost or fixes it.",
            f"To fix: {quote(SYMBOL_MAPPING_HINT)}.",
        ]
    else:
        lines += [
            f"Exchange: {code(size(d.exchange_quantity))} ({quote(amount(d.notional, d.currency))}) · "
            f"DB: {code(size(d.db_quantity))}{_db_value(d)} ({_db_rows(d)})",
            f"Difference: {code(decimal_text(d.difference))}",
            protection_line(d),
        ]
    if d.cause is not None:
        subject = cause_subject(finding.market, finding.side, d.db_position_ids)
        sentence = explain(finding.kind is FindingKind.GHOST, d.cause, subject, d.price_tick)
        if sentence:
            lines.append(f"{_CAUSE_MARK[d.cause.kind]} {quote(sentence)}")
    if KINDS[finding.kind].todo and finding.live:
        lines.append(f"<i>{quote(KINDS[finding.kind].todo)}</i>")
    lines.append(f"Detected: {when(finding.first_seen)} · finding #{finding.id}")
    return lines


def finding_state_line(finding: StoredFinding) -> str | None:
    """What happened to a finding since it was announced; None while it is simply open."""
    by = quote(finding.closed_by or "")
    if finding.state is FindingState.RESOLVED:
        return f"✅ <b>Resolved</b> {when(finding.closed_at)}: {quote(finding.resolution or '')}"
    if finding.state is FindingState.FIXED:
        return f"✅ <b>Fixed</b> by {by} {when(finding.closed_at)}: {quote(finding.resolution or '')}"
    if finding.state is FindingState.SNOOZED:
        return f"🔕 Snoozed by {by} until {when(finding.snoozed_until)}"
    if finding.state is FindingState.ACKNOWLEDGED:
        return f"👍 Acknowledged by {by}: no reminders"
    return None


def finding_message(finding: StoredFinding) -> str:
    """The alert; once fixed or resolved its first line says so, so a scroll through the chat shows what is
    still open."""
    lines = finding_body(finding)
    state = finding_state_line(finding)
    if state and not finding.live:
        return "\n".join([state, *lines])
    if state:
        lines += ["", state]
    return "\n".join(lines)


def details_message(finding: StoredFinding) -> str:
    """The answer to the Details button: every value the finding holds."""
    d = finding.details
    lines = [
        f"<b>Finding #{finding.id}</b> · {KINDS[finding.kind].chat_noun} · state {quote(finding.state)}",
        finding_headline(finding),
    ]
    labels = [
        ("severity", "severity"),
        ("exchange size", "exchange_quantity"),
        ("DB size", "db_quantity"),
        ("difference", "difference"),
        ("notional", "notional"),
        ("currency", "currency"),
        ("exposure in USD", "exposure_usd"),
        ("entry price", "entry_price"),
        ("mark price", "mark_price"),
        ("unrealized PnL", "unrealized_pnl"),
        ("leverage", "leverage"),
        ("margin", "margin"),
        ("liquidation price", "liquidation_price"),
        ("liquidation distance %", "liquidation_distance_pct"),
        ("stop-loss", "stop_loss"),
        ("stop distance %", "stop_distance_pct"),
        ("protection", "protection"),
        ("protected size", "protected_quantity"),
        ("protection note", "protection_note"),
        ("DB stop-loss", "db_stop_loss"),
        ("category", "category"),
    ]
    for label, key in labels:
        value = getattr(d, key)
        if value not in (None, ""):
            lines.append(f"{label}: {code(decimal_text(value) if isinstance(value, Decimal) else value)}")
    lines += [f"order: {quote(order_text(order))}" for order in d.orders]
    for row in d.db_rows:
        listed = "" if row.listed else " (symbol not listed on the venue)"
        lines.append(
            f"DB #{quote(row.id)}: {quote(row.symbol)} size {code(size(row.quantity))}, "
            f"opened {when(row.opened_at)}{listed}"
        )
    lines.append(f"first seen {when(finding.first_seen)}, last seen {when(finding.last_seen)}")
    state = finding_state_line(finding)
    if state:
        lines.append(state)
    return "\n".join(lines)


# -- many findings in one message -----------------------------------------------------------------------------


def _list_line(index: int, finding: StoredFinding, *, grown: bool = False) -> str:
    money = money_at_stake(finding) or "value unknown"
    mark = "📈 " if grown and finding.details.growth is not None else ""
    return (
        f"{index}. {EMOJI[severity(finding)]} {mark}{KINDS[finding.kind].short} "
        f"<b>{quote(finding.market)} {finding.side.upper()}</b> · {quote(finding.account)} · "
        f"{quote(money)}"
    )


def exposure_total(findings: Sequence[StoredFinding]) -> Decimal:
    return sum((f.details.exposure_usd or Decimal(0) for f in findings), Decimal(0))


def digest_message(findings: Sequence[StoredFinding]) -> str:
    """Many new (or grown: 📈) findings from one check, biggest exposure first, numbered as the digest's
    buttons."""
    worst = min((severity(f) for f in findings), key=lambda s: s.rank, default=Severity.INFO)
    total = compact(exposure_total(findings))
    grown = sum(1 for f in findings if f.details.growth is not None)
    what = "new" if not grown else "grown" if grown == len(findings) else "new or grown"
    lines = [
        f"{EMOJI[worst]} <b>{len(findings)} {what} findings</b> · {quote(total)} at risk",
        quote(counts(findings, chat=True)),
        "",
    ]
    lines += [_list_line(i, f, grown=True) for i, f in enumerate(findings, 1)]
    lines += ["", "<i>Tap a number to see that finding with its buttons.</i>"]
    return "\n".join(lines)


def reminder_message(findings: Sequence[StoredFinding]) -> str:
    """One reminder for a chat: everything still open, biggest first."""
    total = compact(exposure_total(findings))
    lines = [
        f"⏰ <b>Still open: {len(findings)}</b> · {quote(total)} at risk",
        quote(counts(findings, chat=True)),
    ]
    lines += [_list_line(i, f) for i, f in enumerate(findings, 1)]
    lines.append("<i>/findings shows each with its buttons.</i>")
    return "\n".join(lines)


_STATE_WORDS = {
    FindingState.OPEN: "still open",
    FindingState.SNOOZED: "snoozed",
    FindingState.ACKNOWLEDGED: "acknowledged",
    FindingState.RESOLVED: "resolved",
    FindingState.FIXED: "fixed",
}


def catch_up_message(findings: Sequence[StoredFinding], since: datetime) -> str:
    """After a mute: every finding that arrived meanwhile, biggest first, each line leading with its money and
    ending with what became of it; the total at risk counts only those still live."""
    live = [f for f in findings if f.live]
    lines = [
        f"🔔 <b>Mute over</b> · {len(findings)} alert{'s' if len(findings) != 1 else ''} arrived since {when(since)}"
        f" · {quote(compact(exposure_total(live)))} still at risk",
        quote(counts(findings, chat=True)),
    ]
    for index, finding in enumerate(biggest_first(findings), 1):
        money = money_at_stake(finding) or "value unknown"
        lines.append(
            f"{index}. {EMOJI[severity(finding)]} {quote(money)} · {KINDS[finding.kind].short} "
            f"<b>{quote(finding.market)} {finding.side.upper()}</b> · {quote(finding.account)} · "
            f"{_STATE_WORDS[finding.state]}"
        )
    lines.append("<i>/findings shows each open one with its buttons.</i>")
    return "\n".join(lines)
