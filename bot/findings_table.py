"""The one compact answer to /findings, /scan, /reconcile and a digest's Show all (Telegram HTML, every dynamic
value escaped): a heading with what was asked, then a table of what is open — kind, symbol, side, account,
money, age, state — biggest first, one page of it, numbered as the buttons that open each finding's card.

A check's answer says what it found this time and what is still open; "all clear" only when nothing is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aiogram import html

from bot.finding_texts import exposure_total
from bot.texts import aligned, quote, span, when
from services import money
from services.announcements import biggest_first
from services.findings import StoredFinding
from services.kinds import KINDS
from services.model import FindingKind, FindingState
from services.plain_text import counts
from services.protection_text import ORDER_SIDE
from services.text_safety import escape_controls

PAGE_ROWS = 10  # a phone screen; the numbered buttons stay two rows of five
SYMBOL_WIDTH = 14
ACCOUNT_WIDTH = 12
UNCHECKED_SHOWN = 5  # unreadable accounts named in a heading; the rest are counted
ERROR_WIDTH = 160

_STATE = {FindingState.OPEN: "open", FindingState.SNOOZED: "snoozed", FindingState.ACKNOWLEDGED: "acked"}
NEW = "NEW"
NO_FINDINGS = "✅ No open findings."


@dataclass(frozen=True, slots=True)
class CheckFacts:
    """What a /scan or /reconcile saw when it ran, which the findings store does not keep: when, how many
    findings of its kinds it found, how many positions were too new to judge, which accounts it could not read,
    and the first finding it filed (every finding from there on is new since that check)."""

    title: str
    at: datetime
    accounts: int
    found: int
    pending: int
    unchecked: tuple[tuple[str, str], ...] = ()
    new_from: int = 0  # 0: the check filed nothing new


@dataclass(frozen=True, slots=True)
class TablePage:
    """One page of a table answer: its text, the findings on it (numbered from ``first``), and where it is."""

    text: str
    shown: tuple[StoredFinding, ...]
    first: int
    page: int
    pages: int


def _clip(value: str, width: int) -> str:
    shown = escape_controls(value)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def _age(finding: StoredFinding, now: datetime) -> str:
    """The largest unit only (``45s``, ``12m``, ``3h``, ``2d``): a column, not a sentence."""
    return span(now - finding.first_seen).split()[0]


def _money(finding: StoredFinding) -> str:
    """The USD exposure, short (``19.8k``); ``-`` for orders, ``?`` when a position's value is unknown."""
    if finding.kind is FindingKind.STRAY_ORDER:
        return "-"
    usd = finding.details.exposure_usd
    return money.compact(usd, "") if usd is not None else "?"


def _side(finding: StoredFinding) -> str:
    """A position's side; a stray order's own side (it holds no position)."""
    orders = finding.details.orders
    if finding.kind is FindingKind.STRAY_ORDER and orders:
        return ORDER_SIDE[orders[0].closes]
    return finding.side.upper()


def _state(finding: StoredFinding, new_from: int) -> str:
    if new_from and finding.id >= new_from and finding.state is FindingState.OPEN:
        return NEW
    return _STATE.get(finding.state, str(finding.state))


def _cells(number: int, finding: StoredFinding, now: datetime, new_from: int, accounts: bool) -> tuple[str, ...]:
    account = (_clip(finding.account, ACCOUNT_WIDTH),) if accounts else ()
    return (
        str(number),
        KINDS[finding.kind].column_word,
        _clip(finding.market, SYMBOL_WIDTH),
        _side(finding),
        *account,
        _money(finding),
        _age(finding, now),
        _state(finding, new_from),
    )


def _table(rows: Sequence[tuple[str, ...]], accounts: bool) -> str:
    header = ("#", "KIND", "SYMBOL", "SIDE", *(("ACCOUNT",) if accounts else ()), "USD", "AGE", "STATE")
    return "\n".join(aligned([header, *rows], right={0, len(header) - 3, len(header) - 2}))


def _quiet(findings: Sequence[StoredFinding]) -> int:
    return sum(1 for f in findings if f.state is not FindingState.OPEN)


def _at_risk(findings: Sequence[StoredFinding]) -> str:
    return f"{money.compact(exposure_total(findings))} at risk"


def findings_heading(findings: Sequence[StoredFinding]) -> list[str]:
    """``📋 17 open findings · 1.2M USDT at risk``, what they are, and how many are quietened."""
    if not findings:
        return [NO_FINDINGS]
    noun = "finding" if len(findings) == 1 else "findings"
    lines = [f"📋 <b>{len(findings)} open {noun}</b> · {quote(_at_risk(findings))}", quote(counts(findings, chat=True))]
    quiet = _quiet(findings)
    if quiet:
        lines.append(f"{quiet} snoozed or acknowledged")
    return lines


def digest_heading(findings: Sequence[StoredFinding], listed: int) -> list[str]:
    """``📋 14 findings of this digest · …``; those no longer open are counted, not listed."""
    lines = [f"📋 <b>{len(findings)} findings of this digest</b> · {quote(_at_risk(findings))}"]
    gone = listed - len(findings)
    if gone:
        lines.append(f"{gone} of the {listed} listed no longer open")
    return lines


def _found_now(facts: CheckFacts, findings: Sequence[StoredFinding]) -> str:
    new = sum(1 for f in findings if _state(f, facts.new_from) == NEW)
    found = f"{facts.found} ({new} new)" if new else str(facts.found) if facts.found else "nothing"
    return f"Found now: {found} · still open: {len(findings)} · {quote(_at_risk(findings))}"


def check_heading(facts: CheckFacts, findings: Sequence[StoredFinding]) -> list[str]:
    """What the check found this time and what is still open, which accounts it could not read, and how many
    positions were too new to judge. "All clear" only when every account was read and nothing is open."""
    checked = f"{facts.accounts} account{'s' if facts.accounts != 1 else ''} checked"
    lines = [f"🔎 <b>{quote(facts.title)}</b> at {when(facts.at)} · {checked}"]
    for account, error in facts.unchecked[:UNCHECKED_SHOWN]:
        lines.append(f"❓ {quote(account)}: <b>not checked</b>: {quote(_clip(error, ERROR_WIDTH))}")
    if len(facts.unchecked) > UNCHECKED_SHOWN:
        lines.append(f"❓ {len(facts.unchecked) - UNCHECKED_SHOWN} more accounts not checked (/status)")
    if facts.pending:
        lines.append(f"{facts.pending} position(s) too new to judge; checked again next round.")
    if findings or facts.found:
        lines.append(_found_now(facts, findings))
    elif facts.unchecked:
        lines.append("Nothing found on the accounts that could be read, nothing open.")
    else:
        lines.append("✅ All clear: nothing found, nothing open.")
    return lines


def page_count(rows: int) -> int:
    return max(1, -(-rows // PAGE_ROWS))


def table_page(
    heading: Sequence[str], findings: Sequence[StoredFinding], page: int, now: datetime, new_from: int = 0
) -> TablePage | None:
    """One page of the table under its heading; None when there is no such page. No findings: the heading only."""
    ranked = biggest_first(findings)
    pages = page_count(len(ranked))
    if not 0 <= page < pages:
        return None
    if not ranked:
        return TablePage("\n".join(heading), (), 1, 0, 1)
    first = page * PAGE_ROWS
    shown = ranked[first : first + PAGE_ROWS]
    accounts = len({f.account for f in ranked}) > 1
    rows = [_cells(first + n, f, now, new_from, accounts) for n, f in enumerate(shown, 1)]
    where = f"Page {page + 1}/{pages} · " if pages > 1 else ""
    footer = f"<i>{where}as of {now.strftime('%H:%M:%S')} UTC · tap a number for its card</i>"
    text = "\n".join([*heading, f"<pre>{html.quote(_table(rows, accounts))}</pre>", footer])
    return TablePage(text, tuple(shown), first + 1, page, pages)
