"""The ◀ Prev / Next ▶ buttons under a /positions table that has more than one page."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import answers
from bot.callbacks import PositionsPage


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
