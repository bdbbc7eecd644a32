"""Every message the bot writes, as Telegram HTML with each dynamic value escaped: for HTML, and one line
whatever it held (``quote``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from aiogram import html

from services.findings import StoredFinding
from services.kinds import count_text
from services.model import CheckResult, FindingKind
from services.notices import Notice
from services.plain_text import notice_text
from services.report import fix_question
from services.text_safety import escape_controls

__all__ = ["fix_question"]

MESSAGE_LIMIT = 4096


def when(moment: datetime | str | None) -> str:
    if moment is None:
        return "unknown"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def moment(at: datetime | None) -> str:
    """A point in time as a date-time entity: each reader's app shows it in their own zone and format (short date
    and time); the UTC text inside is what an app that predates the entity shows."""
    if at is None:
        return "unknown"
    return f'<tg-time unix="{int(at.timestamp())}" format="dt">{when(at)}</tg-time>'


def span(length: timedelta) -> str:
    """A length of time as a trader says it: ``30m``, ``1h``, ``3h 12m``, ``2d 4h``, ``45s``."""
    seconds = max(0, int(length.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    for major, major_unit, minor, minor_unit in ((days, "d", hours, "h"), (hours, "h", minutes, "m")):
        if major:
            return f"{major}{major_unit}" + (f" {minor}{minor_unit}" if minor else "")
    return f"{minutes}m" if minutes else f"{secs}s"


def quote(value: Any) -> str:
    """A dynamic value in a message: HTML-escaped, its control characters shown as escapes (``text_safety``), so a
    DB or venue string can neither add markup nor a line that passes for reconbot's words."""
    return html.quote(escape_controls(str(value)))


def code(value: Any) -> str:
    return html.code(quote(value)) if value not in (None, "") else "unknown"


def check_summary(result: CheckResult, title: str, findings: Sequence[StoredFinding]) -> str:
    """The answer to /scan and /reconcile: all clear or what was found, and which accounts were not read."""
    lines = [f"<b>{quote(title)}</b>: {len(result.accounts)} account(s) checked"]
    for status in result.accounts:
        if status.checked:
            lines.append(f"✔️ {quote(status.account)}: {status.positions} open position(s)")
        else:
            lines.append(f"❓ {quote(status.account)}: <b>not checked</b>: {quote(status.error or '')}")
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
    return quote(notice_text(notice))
