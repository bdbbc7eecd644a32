"""Every message the bot writes, as Telegram HTML with each dynamic value escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiogram import html

from services.finding_details import FindingDetails
from services.findings import StoredFinding
from services.kinds import KINDS, SYMBOL_MAPPING_HINT, count_text
from services.model import CheckResult, FindingKind, FindingState
from services.notices import Notice
from services.plain_text import notice_text
from services.protection import Protection
from services.protection_text import db_belief_text, order_text, protection_text
from services.report import decimal_text, fix_question

__all__ = ["fix_question"]

MESSAGE_LIMIT = 4096

COMMANDS: tuple[tuple[str, str], ...] = (
    ("status", "accounts, last checks, open findings"),
    ("findings", "open findings with their buttons"),
    ("positions", "exchange vs DB side by side: /positions [account]"),
    ("scan", "look for orphans now"),
    ("reconcile", "look for ghosts and size mismatches now"),
    ("closeghost", "mark a ghost closed: /closeghost <position id>"),
    ("whoami", "your Telegram user id and this chat's id"),
    ("help", "what this bot does"),
)


def kind_title(kind: FindingKind) -> str:
    names = KINDS[kind]
    return f"{names.emoji} <b>{names.alert}</b>: {names.headline}"


def when(moment: datetime | str | None) -> str:
    if moment is None:
        return "unknown"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def code(value: Any) -> str:
    return html.code(str(value)) if value not in (None, "") else "unknown"


def finding_headline(finding: StoredFinding) -> str:
    return (
        f"<b>{html.quote(finding.market)} {finding.side.upper()}</b> · {html.quote(finding.account)} "
        f"({html.quote(finding.exchange)})"
    )


def _db_rows(details: FindingDetails) -> str:
    return ", ".join(f"#{html.quote(r.id)}" for r in details.db_rows) or "none"


def num(value: Decimal | None) -> str:
    return code(decimal_text(value))


def protection_line(details: FindingDetails) -> str:
    """The stop, the lack of one, or why it is not known: never "no stop" for a position whose orders could not
    be read."""
    if details.protection is Protection.NONE:
        return "⚠️ <b>NO STOP LOSS</b> on the exchange"
    text = html.quote(protection_text(details) or "")
    if details.protection is Protection.PARTIAL:
        return f"⚠️ <b>Stop-loss</b>: {text}"
    if details.protection is Protection.UNKNOWN:
        return f"❓ Stop-loss {text}"
    return f"🛡️ Stop-loss: {text}"


def finding_body(finding: StoredFinding) -> list[str]:
    """The lines that describe a finding, as detected."""
    d = finding.details
    lines = [kind_title(finding.kind), finding_headline(finding)]
    if finding.kind is FindingKind.ORPHAN:
        lines += [
            f"Contracts: {num(d.exchange_quantity)}",
            f"Entry: {num(d.entry_price)} · Mark: {num(d.mark_price)}",
            f"Unrealized PnL: {num(d.unrealized_pnl)} · Leverage: "
            + (html.code(f"{decimal_text(d.leverage)}x") if d.leverage else "unknown"),
            protection_line(d),
        ]
    elif finding.kind is FindingKind.UNPROTECTED:
        lines += [
            f"Contracts: {num(d.exchange_quantity)} · DB position {_db_rows(d)}",
            f"Entry: {num(d.entry_price)} · Mark: {num(d.mark_price)}",
            protection_line(d),
        ]
        belief = db_belief_text(d)
        if belief:
            lines.append(html.quote(belief))
    elif finding.kind is FindingKind.STRAY_ORDER:
        lines.append("No position on the exchange for these orders to close; one can open a position when it triggers:")
        lines += [f"• {html.quote(order_text(order))}" for order in d.orders]
    elif finding.kind is FindingKind.GHOST:
        lines += [
            f"DB position {_db_rows(d)} · size {num(d.db_quantity)}",
            f"In the DB since: {when(d.opened_at)}",
        ]
    elif finding.kind is FindingKind.UNKNOWN_SYMBOL:
        lines += [
            f"{html.quote(d.note or '')}: reconbot cannot compare it, so it never calls it a ghost or fixes it.",
            f"To fix: {html.quote(SYMBOL_MAPPING_HINT)}.",
        ]
    else:
        lines += [
            f"Exchange: {num(d.exchange_quantity)} · DB: {num(d.db_quantity)} ({_db_rows(d)})",
            f"Difference: {num(d.difference)}",
            protection_line(d),
        ]
    lines.append(f"Detected: {when(finding.first_seen)} · finding #{finding.id}")
    return lines


def finding_state_line(finding: StoredFinding) -> str | None:
    """What happened to a finding since it was announced; None while it is simply open."""
    by = html.quote(finding.closed_by or "")
    if finding.state is FindingState.RESOLVED:
        return f"✅ <b>Resolved</b> {when(finding.closed_at)}: {html.quote(finding.resolution or '')}"
    if finding.state is FindingState.FIXED:
        return f"✅ <b>Fixed</b> by {by} {when(finding.closed_at)}: {html.quote(finding.resolution or '')}"
    if finding.state is FindingState.SNOOZED:
        return f"🔕 Snoozed by {by} until {when(finding.snoozed_until)}"
    if finding.state is FindingState.ACKNOWLEDGED:
        return f"👍 Acknowledged by {by}: no reminders"
    return None


def finding_message(finding: StoredFinding) -> str:
    lines = finding_body(finding)
    state = finding_state_line(finding)
    if state:
        lines += ["", state]
    return "\n".join(lines)


def details_message(finding: StoredFinding) -> str:
    """The answer to the Details button: every value the finding holds."""
    d = finding.details
    lines = [
        f"<b>Finding #{finding.id}</b> · {KINDS[finding.kind].chat_noun} · state {html.quote(finding.state)}",
        finding_headline(finding),
    ]
    labels = [
        ("exchange size", "exchange_quantity"),
        ("DB size", "db_quantity"),
        ("difference", "difference"),
        ("entry price", "entry_price"),
        ("mark price", "mark_price"),
        ("unrealized PnL", "unrealized_pnl"),
        ("leverage", "leverage"),
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
    lines += [f"order: {html.quote(order_text(order))}" for order in d.orders]
    for row in d.db_rows:
        listed = "" if row.listed else " (symbol not listed on the venue)"
        lines.append(
            f"DB #{html.quote(row.id)}: {html.quote(row.symbol)} size {num(row.quantity)}, "
            f"opened {when(row.opened_at)}{listed}"
        )
    lines.append(f"first seen {when(finding.first_seen)}, last seen {when(finding.last_seen)}")
    state = finding_state_line(finding)
    if state:
        lines.append(state)
    return "\n".join(lines)


def check_summary(result: CheckResult, title: str, findings: Sequence[StoredFinding]) -> str:
    """The answer to /scan and /reconcile: all clear or what was found, and which accounts were not read."""
    lines = [f"<b>{html.quote(title)}</b>: {len(result.accounts)} account(s) checked"]
    for status in result.accounts:
        if status.checked:
            lines.append(f"✔️ {html.quote(status.account)}: {status.positions} open position(s)")
        else:
            lines.append(f"❓ {html.quote(status.account)}: <b>not checked</b>: {html.quote(status.error or '')}")
    if findings:
        counts: dict[FindingKind, int] = {}
        for finding in findings:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
        lines.append("Found: " + ", ".join(count_text(k, n, chat=True) for k, n in counts.items()) + " (below)")
    elif result.unchecked:
        lines.append("Nothing found on the accounts that could be read.")
    else:
        lines.append("✅ All clear.")
    if result.pending:
        lines.append(f"{len(result.pending)} position(s) too new to judge; checked again next round.")
    return "\n".join(lines)


def help_text(watching: Iterable[str]) -> str:
    accounts = ", ".join(html.quote(a) for a in watching) or "no accounts"
    lines = [
        "<b>reconbot</b> keeps the trading bot's database honest about its futures positions.",
        f"Watching: {accounts}.",
        "",
        "It alerts on <b>orphans</b> (open on the exchange, not in the DB: no stop-loss, nobody watching), "
        "<b>ghosts</b> (active in the DB, gone from the exchange) and <b>size mismatches</b>. "
        "Fixes always ask for confirmation; only operators may approve them.",
        "",
    ]
    lines += [f"/{name} — {html.quote(description)}" for name, description in COMMANDS]
    return "\n".join(lines)


def refusal(user_id: int | None) -> str:
    return (
        "Sorry, you are not allowed to use this bot. "
        f"Your Telegram user id is <code>{user_id}</code>; ask an admin to add it to the configuration."
    )


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split on line boundaries into chunks Telegram accepts; a single overlong line is cut as a last resort."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        chunks.append(current)
    return chunks or [text[:limit]]


def notice_message(notice: Notice) -> str:
    """A notice for Telegram: the plain line, escaped."""
    return html.quote(notice_text(notice))
