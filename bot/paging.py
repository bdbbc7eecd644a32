"""Buttons that page through a table in place: ◀ Prev / Next ▶ under a /positions table, and under a findings
table its numbers (each opens that finding's card) with ◀ Prev / ⟳ Refresh / Next ▶."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import answers
from bot.callbacks import FindingsTable, OpenFinding, PositionsPage
from bot.findings_table import TablePage

NUMBERS_PER_ROW = 5
NUMBERED_AT_MOST = 50  # Telegram takes 100 buttons a message; a reminder lists its biggest first


def page_keyboard(account: int, page: int, pages: int) -> InlineKeyboardMarkup | None:
    """Buttons to the neighbouring pages, only those that exist; none for a table of one page."""
    targets = [(answers.PREV_PAGE, page - 1), (answers.NEXT_PAGE, page + 1)]
    targets = [(text, target) for text, target in targets if 0 <= target < pages]
    if not targets:
        return None
    builder = InlineKeyboardBuilder()
    for text, target in targets:
        builder.button(text=text, callback_data=PositionsPage(account=account, page=target))
    return builder.as_markup()


def _numbers(builder: InlineKeyboardBuilder, finding_ids: Sequence[int], first: int) -> list[int]:
    """A number per finding, as the message numbers it; returns the rows' widths."""
    shown = list(finding_ids)[:NUMBERED_AT_MOST]
    for number, finding_id in enumerate(shown, first):
        builder.button(text=str(number), callback_data=OpenFinding(finding_id=finding_id))
    full, rest = divmod(len(shown), NUMBERS_PER_ROW)
    return [NUMBERS_PER_ROW] * full + ([rest] if rest else [])


def open_keyboard(finding_ids: Sequence[int]) -> InlineKeyboardMarkup | None:
    """Numbers that open each listed finding's card (a reminder's); none for an empty list."""
    if not finding_ids:
        return None
    builder = InlineKeyboardBuilder()
    builder.adjust(*_numbers(builder, finding_ids, 1))
    return builder.as_markup()


def table_keyboard(table: FindingsTable, page: TablePage) -> InlineKeyboardMarkup | None:
    """The page's numbers, then the pages either side that exist and Refresh; none for a table with no rows."""
    if not page.shown:
        return None
    builder = InlineKeyboardBuilder()
    widths = _numbers(builder, [f.id for f in page.shown], page.first)
    targets = [(answers.PREV_PAGE, page.page - 1), (answers.REFRESH, page.page), (answers.NEXT_PAGE, page.page + 1)]
    targets = [(text, target) for text, target in targets if 0 <= target < page.pages]
    for text, target in targets:
        builder.button(text=text, callback_data=table.model_copy(update={"page": target}))
    builder.adjust(*widths, len(targets))
    return builder.as_markup()
