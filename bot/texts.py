"""Every message the bot writes, as Telegram HTML with each dynamic value escaped: for HTML, and one line
whatever it held (``quote``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiogram import html

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


def aligned(rows: Sequence[Sequence[str]], right: Collection[int]) -> list[str]:
    """Rows of a monospace table, every column as wide as its widest cell: the columns in ``right`` (numbers)
    right-aligned, the rest left; trailing spaces dropped."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return [
        " ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


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
