"""Replies to commands and button presses (Telegram HTML, every dynamic value escaped): what a fix did, why a
press did nothing, /help, /status and /positions. Findings themselves are worded in ``bot.texts``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiogram import html

from bot.commands import CommandInfo
from bot.texts import aligned, quote, span, when
from services import money
from services.confirmations import Claim, ClaimRefused
from services.findings import StoredFinding
from services.fixes import FixOutcome, FixStatus
from services.kinds import count_text
from services.model import DbPosition, ExchangePosition, FindingKind, FindingState, PositionKey
from services.mutes import EndedMute, Mute, MuteArgumentError, MuteProblem
from services.protection import Protection
from services.report import decimal_text
from services.settings import AccountSettings
from services.severity import MutedCritical, Severity
from services.shards import ShardStatus
from services.snapshot import AccountSnapshot
from services.text_safety import escape_controls

_FIX_PREFIX = {FixStatus.DONE: "✅ Done: ", FixStatus.UNKNOWN: "❓ Unknown: "}


def fix_result(outcome: FixOutcome) -> str:
    """A fix's outcome under the question the operator confirmed (plain text; the caller quotes it)."""
    return _FIX_PREFIX.get(outcome.status, "Nothing changed: ") + str(outcome.reason)


def interrupted_result(reason: str) -> str:
    """What a re-read found of a confirmed fix whose process stopped before it could say (plain text)."""
    return f"⚠️ Interrupted: {reason}"


def fix_refused_early(outcome: FixOutcome) -> str:
    """``/closeghost`` refused before anyone was asked to confirm."""
    return f"Nothing changed: {quote(str(outcome.reason))}"


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
UNACKNOWLEDGED = "Open again: reminders resume."
DIGEST_GONE = "This digest is no longer known."
FINDING_GONE = "This finding is no longer known."
MUTE_USAGE = (
    "Usage: /mute [duration] [info|warning], e.g. /mute 30m, /mute 2h, /mute 1h info (at most 7d; default 1h, "
    "everything below critical); /mute off ends it."
)
NOT_MUTED = "This chat was not muted."
PREPARING_QUESTION = "The question follows below: nothing changes until you confirm it."
NOT_FIXABLE_THAT_WAY = "This finding cannot be fixed that way; fix it by hand."
CANCELLED = "Cancelled; nothing changed."
RECHECKING = "Checking both sides again…"
CLOSEGHOST_USAGE = "Usage: /closeghost &lt;position id&gt;, e.g. /closeghost 123"
SCAN_TITLE = "Orphan scan"
RECONCILE_TITLE = "Reconciliation"


def already_settled(finding: StoredFinding) -> str:
    return f"Finding #{finding.id} is already {finding.state}; nothing to do."


def snoozed_until(until: datetime, length: timedelta) -> str:
    return f"Snoozed for {span(length)}, until {when(until)}."


def orders_not_allowed(account: str) -> str:
    return f"{account} does not allow exchange orders."


def unknown_command(text: str) -> str:
    command = quote(text.split(maxsplit=1)[0] if text.strip() else text)
    return f"Unknown command {command}. /help lists what I understand."


def whoami(user_id: int | None, chat_id: int, thread_id: int | None = None) -> str:
    """The ids to put in the config; in a forum topic also the ``chat:thread`` address that sends alerts there."""
    lines = [f"Your user id: <code>{user_id}</code>", f"This chat's id: <code>{chat_id}</code>"]
    if thread_id is not None:
        address = f"{chat_id}:{thread_id}"
        lines += [
            f"This topic's address: <code>{address}</code>",
            f'To send alerts to this topic: <code>alert_chat_ids: ["{address}"]</code>',
        ]
    return "\n".join(lines)


def checking(accounts: int) -> str:
    return f"Checking {accounts} account(s)…"


def no_such_position(position_id: str) -> str:
    return f"No position #{quote(position_id)} in the DB."


def confirmation_question(question: str, minutes: float, who: str) -> str:
    return f"{quote(question)}\n<i>Valid for {minutes:g} min, for {quote(who)} only.</i>"


def question_and_result(question: str, result: str) -> str:
    """The confirmed question with what came of it, in place of its buttons."""
    return f"{quote(question)}\n{quote(result)}"


# -- /start and /help ------------------------------------------------------------------------------------------


def help_text(commands: Iterable[CommandInfo], watching: Iterable[str]) -> str:
    """What the bot does, what it watches, and one line for each command the asker may use."""
    accounts = ", ".join(quote(a) for a in watching) or "no accounts"
    lines = [
        "<b>reconbot</b> keeps the trading bot's database honest about its futures positions.",
        f"Watching: {accounts}.",
        "",
        "It alerts on <b>orphans</b> (open on the exchange, not in the DB: no stop-loss, nobody watching), "
        "<b>ghosts</b> (active in the DB, gone from the exchange) and <b>size mismatches</b>. "
        "Fixes always ask for confirmation; only operators may approve them.",
        "",
    ]
    lines += [f"/{command.name} — {quote(command.description)}" for command in commands]
    return "\n".join(lines)


# -- /status ---------------------------------------------------------------------------------------------------


def _account_line(account: AccountSettings, check: Mapping[str, Any] | None) -> str:
    name = quote(account.name)
    if check is None:
        return f"• {name} ({account.exchange}): not checked yet"
    if check["ok"]:
        return f"✔️ {name}: ok at {when(check['checked_at'])}, {check['positions']} open position(s)"
    return (
        f"❓ {name}: <b>not checked</b> since {when(check['failing_since'])} "
        f"({check['failures_in_row']} round(s)): {quote(check['error'] or '')}"
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
    shards: ShardStatus | None = None,
) -> str:
    lines = ["<b>reconbot status</b>", "Accounts:"]
    lines += [_account_line(account, checks.get(account.name)) for account in accounts]
    quiet = sum(finding.state is not FindingState.OPEN for finding in live)
    summary = _exposure_by_kind(live)
    lines.append(f"Open findings: {summary}" + (f" ({quiet} snoozed or acknowledged)" if quiet else ""))
    if runs:
        lines.append("Next runs: " + ", ".join(f"{quote(job)} {when(at)}" for job, at in runs.items()))
    else:
        lines.append("No scheduled runs in this process: checks run on /scan and /reconcile.")
    if shards is not None and (shards.replicas > 1 or len(shards.holders) > 1):
        lines.append(f"Replicas: {shards.replicas}, sharing {shards.shards} shards")
        lines += [f"  {quote(h.replica)}: {len(h.shards)} shard(s)" for h in shards.holders]
    return "\n".join(lines)


# -- /positions ------------------------------------------------------------------------------------------------

PAGE_ROWS = 15  # rows of a /positions page: a phone screen, and far inside Telegram's 4 096 characters
PRE_BLOCK_LIMIT = 3800  # a page also ends before its table would outgrow one message
MARKET_WIDTH = 40  # a longer DB symbol (no market id is) is clipped, or it would widen every row of its page
PREV_PAGE = "◀ Prev"
NEXT_PAGE = "Next ▶"
REFRESH = "⟳ Refresh"
NO_SUCH_ACCOUNT = "That account is no longer in the configuration; send /positions again."


def positions_usage(names: Sequence[str]) -> str:
    return "Usage: /positions [account]\nAccounts: " + ", ".join(quote(n) for n in names)


def not_read(account: str, error: str | None) -> str:
    """A page button pressed while the account cannot be read (plain text: a press's answer)."""
    why = escape_controls(error or "unknown error")
    return f"{account} could not be read just now ({why}); nothing changed. Try again."


def no_such_page(page: int, pages: int, command: str = "/positions") -> str:
    return f"There is no page {page + 1} now ({pages} page(s)); nothing changed. Send {command} again."


_STOP_COLUMN = {
    Protection.STOP: "stop",
    Protection.PARTIAL: "PARTIAL",
    Protection.NONE: "NONE",
    Protection.UNKNOWN: "?",
}
_HEADER = ("MARKET", "SIDE", "EXCHANGE", "DB", "NOTIONAL", "STOP")


@dataclass(frozen=True, slots=True)
class _Line:
    """One market and side on either side of the books, with what the exchange position is worth."""

    key: PositionKey
    exchange: ExchangePosition | None
    db: tuple[DbPosition, ...]
    exposure: money.Exposure | None

    @classmethod
    def of(cls, key: PositionKey, exchange: ExchangePosition | None, db: Sequence[DbPosition]) -> _Line:
        return cls(key, exchange, tuple(db), money.exposure_of(exchange) if exchange else None)

    def rank(self) -> tuple[bool, Decimal, PositionKey]:
        """Biggest USD value first; a row whose value cannot be told (a DB-only row) last."""
        usd = self.exposure.usd if self.exposure else None
        return usd is None, -(usd or Decimal(0)), self.key

    def cells(self) -> tuple[str, ...]:
        """The row's columns, in the order of ``_HEADER``."""
        ex = self.exchange
        stop = _STOP_COLUMN[ex.protection.level] if ex and ex.protection else "-"
        shown = escape_controls(self.key.market)  # the table is one <pre> block: each cell stays on its line
        market = shown if len(shown) <= MARKET_WIDTH else shown[: MARKET_WIDTH - 1] + "…"
        return market, self.key.side.upper(), self._ex_size, self._db_size, _notional(self.exposure), stop

    @property
    def differs(self) -> bool:
        return not (self.exchange and self.db and self._ex_size == self._db_size)

    @property
    def _ex_size(self) -> str:
        return decimal_text(self.exchange.quantity) if self.exchange else "-"

    @property
    def _db_size(self) -> str:
        return decimal_text(sum((r.quantity for r in self.db), Decimal(0))) if self.db else "-"


def _notional(exposure: money.Exposure | None) -> str:
    """Dollars short (``44k USDT``), coins exact (``0.0123 BTC``), ``-`` when there is no exchange position."""
    if exposure is None or exposure.notional is None:
        return "-"
    if exposure.currency is None or exposure.currency in money.USD_LIKE:
        return money.compact(exposure.notional, exposure.currency)
    return money.amount(exposure.notional, exposure.currency)


def _lines(snapshot: AccountSnapshot) -> list[_Line]:
    exchange = {p.key: p for p in snapshot.exchange_positions}
    db: dict[PositionKey, list[DbPosition]] = {}
    for row in snapshot.db_positions:
        db.setdefault(row.key, []).append(row)
    lines = [_Line.of(key, exchange.get(key), db.get(key, [])) for key in exchange.keys() | db.keys()]
    return sorted(lines, key=_Line.rank)


_RIGHT = frozenset({"EXCHANGE", "DB", "NOTIONAL"})


def _table(lines: Sequence[_Line]) -> str:
    """The header and rows, every column as wide as its widest cell: names left, numbers right; ``≠`` ends a
    row whose two sides differ."""
    rows = [(*_HEADER, ""), *((*line.cells(), "≠" if line.differs else "") for line in lines)]
    return "\n".join(aligned(rows, {i for i, name in enumerate(_HEADER) if name in _RIGHT}))


def _paged(lines: list[_Line]) -> list[list[_Line]]:
    """At most PAGE_ROWS rows a page, fewer when the page's table (its columns as wide as its widest cell) would
    not fit one message."""
    pages: list[list[_Line]] = [[]]
    for line in lines:
        page = pages[-1]
        if page and (len(page) >= PAGE_ROWS or len(_table([*page, line])) > PRE_BLOCK_LIMIT):
            pages.append([])
        pages[-1].append(line)
    return pages


def _page_of(number: int, pages: int) -> str:
    return f" · page {number}/{pages}" if pages > 1 else ""


def positions_pages(snapshot: AccountSnapshot) -> list[str]:
    """One account's table, both sides side by side, biggest notional first, as pages (each with the title)."""
    title = f"<b>{quote(snapshot.account.name)}</b> ({snapshot.account.exchange}), read {when(snapshot.read_at)}"
    if not snapshot.checked:
        return [f"{title}\n❓ not checked: {quote(snapshot.error or '')}"]
    lines = _lines(snapshot)
    if not lines:
        return [f"{title}\n<pre>{html.quote(_table([]))}\n(no positions on either side)</pre>"]
    pages = _paged(lines)
    return [
        f"{title}{_page_of(n, len(pages))}\n<pre>{html.quote(_table(page))}</pre>" for n, page in enumerate(pages, 1)
    ]


def snoozed_many(count: int, until: datetime, length: timedelta) -> str:
    return f"Snoozed {count} finding{'s' if count != 1 else ''} for {span(length)}, until {when(until)}."


_MUTE_PROBLEMS = {
    MuteProblem.NOT_A_DURATION: "“{word}” is not a duration",
    MuteProblem.TOO_LONG: "“{word}” is longer than 7d",
    MuteProblem.NOT_A_LEVEL: "“{word}” is not a level (info or warning)",
    MuteProblem.TOO_MANY_WORDS: "too many words",
}
_MUTE_ENDS = "When the mute ends, one message lists what arrived meanwhile. /mute off ends it now."


def mute_refused(error: MuteArgumentError) -> str:
    return f"Nothing changed: {_MUTE_PROBLEMS[error.problem].format(word=quote(error.word))}. {MUTE_USAGE}"


def muted(mute: Mute, critical: MutedCritical) -> str:
    """What a mute does, in the chat it quiets: nothing is hidden, only the sound changes."""
    if mute.scope is Severity.INFO:
        return (
            f"🔕 This chat is muted until {when(mute.until)} for info-level alerts: they arrive silently; warnings "
            f"and critical ones ring as usual. {_MUTE_ENDS}"
        )
    rings = "critical ones still ring" if critical is MutedCritical.RING else "critical ones arrive silently too"
    arrive = f"new alerts still arrive here, silently; {rings}"
    return f"🔕 This chat is muted until {when(mute.until)}: {arrive}. {_MUTE_ENDS}"


def unmuted(ended: EndedMute) -> str:
    arrived = (
        f"{ended.arrived} alert{'s' if ended.arrived != 1 else ''} arrived while it was muted: listed below."
        if ended.arrived
        else "Nothing arrived while it was muted."
    )
    return f"🔔 This chat is no longer muted: alerts ring again. {arrived}"
