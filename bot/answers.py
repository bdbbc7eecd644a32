"""Replies to commands and button presses (Telegram HTML, every dynamic value escaped): what a fix did, why a
press did nothing, /help, /status and /positions. Findings themselves are worded in ``bot.texts``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiogram import html

from bot.commands import CommandInfo
from bot.texts import when
from services import money
from services.confirmations import Claim, ClaimRefused
from services.findings import StoredFinding
from services.fixes import FixOutcome, FixStatus
from services.kinds import count_text
from services.model import DbPosition, FindingKind, FindingState, PositionKey
from services.protection import Protection
from services.report import decimal_text
from services.settings import AccountSettings
from services.snapshot import AccountSnapshot

_FIX_PREFIX = {FixStatus.DONE: "✅ Done: ", FixStatus.UNKNOWN: "❓ Unknown: "}


def fix_result(outcome: FixOutcome) -> str:
    """A fix's outcome under the question the operator confirmed (plain text; the caller quotes it)."""
    return _FIX_PREFIX.get(outcome.status, "Nothing changed: ") + str(outcome.reason)


def fix_refused_early(outcome: FixOutcome) -> str:
    """``/closeghost`` refused before anyone was asked to confirm."""
    return f"Nothing changed: {html.quote(str(outcome.reason))}"


DAMAGED_CONFIRMATION = "Nothing changed: this confirmation is damaged."


_CLAIM_REFUSED = {
    ClaimRefused.MISSING: "This confirmation does not exist.",
    ClaimRefused.NOT_YOURS: "Only the person who asked for this change can confirm it.",
    ClaimRefused.USED: "This confirmation was already used ({used_as}); nothing changed.",
    ClaimRefused.EXPIRED: "This confirmation expired; nothing changed. Ask again to get a fresh one.",
}


def claim_refused(claim: Claim) -> str:
    """Why Confirm or Cancel did nothing (plain text)."""
    if claim.refused is None:
        return "Not possible."
    return _CLAIM_REFUSED[claim.refused].format(used_as=claim.used_as)


# -- answers to commands and buttons ---------------------------------------------------------------------------

APOLOGY = "Something went wrong on reconbot's side; nothing was changed. Please try again in a moment."
NOT_A_BUTTON_OF_FINDING = "This button does not belong to any finding."
STALE_BUTTON = "This button is not valid (any more)."
CHANGED_MEANWHILE = "It changed meanwhile; nothing to do."
ACKNOWLEDGED = "Acknowledged: no more reminders for this finding."
NOT_FIXABLE_THAT_WAY = "This finding cannot be fixed that way; fix it by hand."
CANCELLED = "Cancelled; nothing changed."
RECHECKING = "Checking both sides again…"
CLOSEGHOST_USAGE = "Usage: /closeghost &lt;position id&gt;, e.g. /closeghost 123"
NO_FINDINGS = "✅ No open findings."
SCAN_TITLE = "Orphan scan"
RECONCILE_TITLE = "Reconciliation"


def already_settled(finding: StoredFinding) -> str:
    return f"Finding #{finding.id} is already {finding.state}; nothing to do."


def snoozed_until(until: datetime) -> str:
    return f"Snoozed until {when(until)}."


def orders_not_allowed(account: str) -> str:
    return f"{account} does not allow exchange orders."


def unknown_command(text: str) -> str:
    command = html.quote(text.split(maxsplit=1)[0] if text.strip() else text)
    return f"Unknown command {command}. /help lists what I understand."


def whoami(user_id: int | None, chat_id: int) -> str:
    return f"Your user id: <code>{user_id}</code>\nThis chat's id: <code>{chat_id}</code>"


def checking(accounts: int) -> str:
    return f"Checking {accounts} account(s)…"


def no_such_position(position_id: str) -> str:
    return f"No position #{html.quote(position_id)} in the DB."


def confirmation_question(question: str, minutes: float, who: str) -> str:
    return f"{html.quote(question)}\n<i>Valid for {minutes:g} min, for {html.quote(who)} only.</i>"


def question_and_result(question: str, result: str) -> str:
    """The confirmed question with what came of it, in place of its buttons."""
    return f"{html.quote(question)}\n{html.quote(result)}"


def findings_count(count: int) -> str:
    return f"{count} open finding(s):"


# -- /start and /help ------------------------------------------------------------------------------------------


def help_text(commands: Iterable[CommandInfo], watching: Iterable[str]) -> str:
    """What the bot does, what it watches, and one line for each command the asker may use."""
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
    lines += [f"/{command.name} — {html.quote(command.description)}" for command in commands]
    return "\n".join(lines)


# -- /status ---------------------------------------------------------------------------------------------------


def _account_line(account: AccountSettings, check: Mapping[str, Any] | None) -> str:
    name = html.quote(account.name)
    if check is None:
        return f"• {name} ({account.exchange}): not checked yet"
    if check["ok"]:
        return f"✔️ {name}: ok at {when(check['checked_at'])}, {check['positions']} open position(s)"
    return (
        f"❓ {name}: <b>not checked</b> since {when(check['failing_since'])} "
        f"({check['failures_in_row']} round(s)): {html.quote(check['error'] or '')}"
    )


VALUE_UNKNOWN = money.compact(None)  # "value unknown", as the money module says it


@dataclass
class _KindTotal:
    """One kind's live findings: how many, the USD exposure of those whose value is known, how many are not."""

    count: int = 0
    usd: Decimal = Decimal(0)
    unknown: int = 0

    def add(self, exposure_usd: Decimal | None) -> None:
        self.count += 1
        if exposure_usd is None:
            self.unknown += 1
        else:
            self.usd += exposure_usd

    @property
    def worth(self) -> str:
        """``1.2M USDT``, ``value unknown``, or ``1.2M USDT; 1 value unknown``."""
        if self.unknown == self.count:
            return VALUE_UNKNOWN
        known = money.compact(self.usd)
        return f"{known}; {self.unknown} {VALUE_UNKNOWN}" if self.unknown else known


def _exposure_by_kind(live: Sequence[StoredFinding]) -> str:
    """``3 orphans (1.2M USDT), 1 unprotected position (44k USDT)``: the most money at risk first."""
    totals: dict[FindingKind, _KindTotal] = {}
    for finding in live:
        totals.setdefault(finding.kind, _KindTotal()).add(finding.details.exposure_usd)
    ranked = sorted(totals.items(), key=lambda item: (item[1].unknown == item[1].count, -item[1].usd))
    return ", ".join(f"{count_text(kind, t.count, chat=True)} ({t.worth})" for kind, t in ranked) or "none"


def status_message(
    accounts: Sequence[AccountSettings],
    checks: Mapping[str, Mapping[str, Any]],
    live: Sequence[StoredFinding],
    runs: Mapping[str, datetime],
) -> str:
    lines = ["<b>reconbot status</b>", "Accounts:"]
    lines += [_account_line(account, checks.get(account.name)) for account in accounts]
    quiet = sum(finding.state is not FindingState.OPEN for finding in live)
    summary = _exposure_by_kind(live)
    lines.append(f"Open findings: {summary}" + (f" ({quiet} snoozed or acknowledged)" if quiet else ""))
    if runs:
        lines.append("Next runs: " + ", ".join(f"{html.quote(job)} {when(at)}" for job, at in runs.items()))
    else:
        lines.append("No scheduled runs in this process: checks run on /scan and /reconcile.")
    return "\n".join(lines)


# -- /positions ------------------------------------------------------------------------------------------------

PRE_BLOCK_LIMIT = 3800


def positions_usage(names: Sequence[str]) -> str:
    return "Usage: /positions [account]\nAccounts: " + ", ".join(html.quote(n) for n in names)


_STOP_COLUMN = {
    Protection.STOP: "stop",
    Protection.PARTIAL: "PARTIAL",
    Protection.NONE: "NONE",
    Protection.UNKNOWN: "?",
}


def _positions_rows(snapshot: AccountSnapshot) -> list[str]:
    exchange = {p.key: p for p in snapshot.exchange_positions}
    db: dict[PositionKey, list[DbPosition]] = {}
    for row in snapshot.db_positions:
        db.setdefault(row.key, []).append(row)
    rows = [f"{'MARKET':<16} {'SIDE':<5} {'EXCHANGE':>12} {'DB':>12} {'STOP':<7}"]
    for key in sorted(exchange.keys() | db.keys()):
        ex = exchange.get(key)
        rows_db = db.get(key, [])
        ex_size = decimal_text(ex.quantity) if ex else "-"
        db_size = decimal_text(sum((r.quantity for r in rows_db), Decimal(0))) if rows_db else "-"
        stop = _STOP_COLUMN[ex.protection.level] if ex and ex.protection else "-"
        mark = "" if ex and rows_db and ex_size == db_size else "  ≠"
        rows.append(f"{key.market:<16} {key.side.upper():<5} {ex_size:>12} {db_size:>12} {stop:<7}{mark}".rstrip())
    if len(rows) == 1:
        rows.append("(no positions on either side)")
    return rows


def _pre_blocks(rows: list[str]) -> list[str]:
    """Table rows as <pre> blocks small enough for one message each."""
    blocks: list[str] = []
    current: list[str] = []
    for row in rows:
        if current and sum(len(r) + 1 for r in current) + len(row) > PRE_BLOCK_LIMIT:
            blocks.append("<pre>" + html.quote("\n".join(current)) + "</pre>")
            current = [rows[0]]
        current.append(row)
    blocks.append("<pre>" + html.quote("\n".join(current)) + "</pre>")
    return blocks


def positions_messages(snapshot: AccountSnapshot) -> list[str]:
    """One account's table, both sides side by side, as messages (the title on the first)."""
    title = f"<b>{html.quote(snapshot.account.name)}</b> ({snapshot.account.exchange}), read {when(snapshot.read_at)}"
    if not snapshot.checked:
        return [f"{title}\n❓ not checked: {html.quote(snapshot.error or '')}"]
    blocks = _pre_blocks(_positions_rows(snapshot))
    return [f"{title}\n{blocks[0]}", *blocks[1:]]
