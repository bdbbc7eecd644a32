"""A finding as Telegram shows it (HTML, every dynamic value escaped): the first line is what a phone's
notification preview shows — severity, what is wrong, the money at stake and the stop — then where, the
figures a trader decides on, and what to do. Digests and reminders list many findings in one message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from aiogram import html

from bot.texts import code, moment, quote, span
from services.announcements import biggest_first
from services.cause_text import cause_subject, explain
from services.causes import CloseKind, told_cause
from services.finding_details import FindingDetails
from services.findings import StoredFinding
from services.kinds import KINDS, SYMBOL_MAPPING_HINT
from services.model import FindingKind, FindingState
from services.money import amount, compact, percent, price, size
from services.plain_text import counts, growth_text
from services.protection import Protection
from services.protection_text import (
    beyond_liquidation_text,
    db_belief_text,
    order_text,
    orders_label,
    protection_text,
)
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


def side_label(finding: StoredFinding) -> str:
    """``LONG`` or ``SHORT`` for a position; a stray order's own side and flag (``SELL stop, reduce-only``), as
    it holds no position."""
    if finding.kind is FindingKind.STRAY_ORDER and finding.details.orders:
        return orders_label(finding.details.orders)
    return finding.side.upper()


# What the venue's risk engine did to a whole position, and to part of one.
_FORCED_WORDS = {
    CloseKind.LIQUIDATION: ("Liquidated", "Partly liquidated"),
    CloseKind.ADL: ("Auto-deleveraged", "Partly auto-deleveraged"),
}


def forced_line(finding: StoredFinding) -> str | None:
    """``💥 Liquidated: ETHUSDT LONG 10 on by-main · −1,400.00 USDT realized``: a position the venue's risk engine
    ended or cut is the news, so it leads the alert (which rings: services.severity) — a ghost with its DB size,
    a cut size from the DB's to the exchange's."""
    d = finding.details
    cause = d.cause.kind if d.cause else None
    if d.cause is None or cause not in _FORCED_WORDS or told_cause(finding.kind, cause) is None:
        return None
    whole, part = _FORCED_WORDS[cause]
    where = f"{finding.market} {finding.side.upper()}"
    if finding.kind is FindingKind.GHOST:
        what = f"{whole}: {where} {size(d.db_quantity)}"
    else:
        what = f"{part}: {where} {size(d.db_quantity)} → {size(d.exchange_quantity)}"
    line = f"💥 <b>{quote(what)}</b> on {quote(finding.account)}"
    if d.cause.realized_pnl is not None:
        line += f" · {quote(amount(d.cause.realized_pnl, d.cause.currency, sign=True))} realized"
    return line


def finding_headline(finding: StoredFinding) -> str:
    where = f"{quote(finding.account)} ({quote(finding.exchange)})"
    return f"<b>{quote(finding.market)} {quote(side_label(finding))}</b> · {where}"


def protection_line(details: FindingDetails) -> str:
    """The stop, the lack of one, or why it is not known: never "no stop" for a position whose orders could not
    be read."""
    beyond = beyond_liquidation_text(details)
    if details.protection is Protection.NONE:
        return (
            f"⚠️ <b>NO STOP LOSS</b> that can fire: {quote(beyond)}"
            if beyond
            else "⚠️ <b>NO STOP LOSS</b> on the exchange"
        )
    text = quote(protection_text(details) or "")
    if details.protection is Protection.PARTIAL:
        return f"⚠️ <b>Stop-loss</b>: {text}"
    if details.protection is Protection.UNKNOWN:
        return f"❓ Stop-loss {text}"
    return f"🛡️ Stop-loss: {text}"


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


def _age(finding: StoredFinding, since: datetime | None, what: str) -> list[str]:
    """``Open for 3h 12m when found``: an age as a span from the one moment the alert states (when it was
    detected), never a second timestamp; fixed, so every copy of the alert reads the same."""
    return [f"{what} for {span(finding.first_seen - since)} when found"] if since is not None else []


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


def _stray_risk(d: FindingDetails) -> str:
    """What a stray order can do: a reduce-only or close-position order cannot open a position, but closes one
    opened there later; any other (or one whose flag is not known) can open one when it triggers."""
    if d.orders and all(order.reduce_only or order.quantity is None for order in d.orders):
        return (
            "No position on the exchange for these orders to close. Reduce-only, they cannot open one, but they "
            "will close a position opened there later:"
        )
    return (
        "No position on the exchange for these orders to close; one that is not reduce-only can open a position "
        "when it triggers:"
    )


def finding_body(finding: StoredFinding) -> list[str]:
    """The lines that describe a finding, as detected."""
    d = finding.details
    leading = [line for line in (growth_line(finding), forced_line(finding)) if line]
    lines = [*leading, first_line(finding), finding_headline(finding)]
    if finding.kind is FindingKind.ORPHAN:
        lines += [*_position_lines(d), *_age(finding, d.venue_opened_at, "Open")]
    elif finding.kind is FindingKind.UNPROTECTED:
        lines += [*_position_lines(d), f"DB position {_db_rows(d)}", *_age(finding, d.venue_opened_at, "Open")]
        belief = db_belief_text(d)
        if belief:
            lines.append(quote(belief))
    elif finding.kind is FindingKind.STRAY_ORDER:
        lines.append(_stray_risk(d))
        lines += [f"• {quote(order_text(order))}" for order in d.orders]
    elif finding.kind is FindingKind.GHOST:
        lines += [
            f"DB position {_db_rows(d)} · size {code(size(d.db_quantity))}{_db_value(d)}",
            *_age(finding, d.opened_at, "In the DB"),
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
        ghost = finding.kind is FindingKind.GHOST
        sentence = explain(ghost, d.cause, subject, d.price_tick, at=moment, escape=quote)
        if sentence:
            lines.append(f"{_CAUSE_MARK[d.cause.kind]} {sentence}")
    if KINDS[finding.kind].todo and finding.live:
        lines.append(f"<i>{quote(KINDS[finding.kind].todo)}</i>")
    lines.append(f"Detected {moment(finding.first_seen)} · finding #{finding.id}")
    return lines


def finding_state_line(finding: StoredFinding) -> str | None:
    """What happened to a finding since it was announced; None while it is simply open."""
    by = quote(finding.closed_by or "")
    if finding.state is FindingState.RESOLVED:
        return f"✅ <b>Resolved</b> {moment(finding.closed_at)}: {quote(finding.resolution or '')}"
    if finding.state is FindingState.FIXED:
        return f"✅ <b>Fixed</b> by {by} {moment(finding.closed_at)}: {quote(finding.resolution or '')}"
    if finding.state is FindingState.SNOOZED:
        return f"🔕 Snoozed by {by} until {moment(finding.snoozed_until)}"
    if finding.state is FindingState.ACKNOWLEDGED:
        return f"👍 Acknowledged by {by}: no reminders"
    return None


def finding_message(finding: StoredFinding) -> str:
    """The alert; once snoozed, acknowledged, fixed or resolved its first line says so, so a scroll through the
    chat shows what is still open and who took care of the rest."""
    state = finding_state_line(finding)
    return "\n".join([*([state] if state else []), *finding_body(finding)])


# -- many findings in one message -----------------------------------------------------------------------------


def pnl_at_stake(finding: StoredFinding) -> str | None:
    """What the position is making or losing: an exchange position's unrealized PnL, else what a close the
    venue reported realized."""
    d = finding.details
    if d.unrealized_pnl is not None:
        return f"PnL {amount(d.unrealized_pnl, d.currency, sign=True)}"
    if d.cause is not None and d.cause.realized_pnl is not None:
        return f"{amount(d.cause.realized_pnl, d.cause.currency or d.currency, sign=True)} realized"
    return None


def _list_line(index: int, finding: StoredFinding, *, grown: bool = False) -> str:
    """``1. 🔴 Orphan SOLUSDT LONG · bn-main · 44,025.00 USDT · PnL −1,575.00 USDT``."""
    figures = [money_at_stake(finding) or "value unknown", *filter(None, [pnl_at_stake(finding)])]
    mark = "📈 " if grown and finding.details.growth is not None else ""
    return (
        f"{index}. {EMOJI[severity(finding)]} {mark}{KINDS[finding.kind].short} "
        f"<b>{quote(finding.market)} {quote(side_label(finding))}</b> · {quote(finding.account)} · "
        + " · ".join(quote(figure) for figure in figures)
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
    lines.append("<i>Tap a number to see that finding with its buttons.</i>")
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
        f"🔔 <b>Mute over</b> · {len(findings)} alert{'s' if len(findings) != 1 else ''} arrived since {moment(since)}"
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
