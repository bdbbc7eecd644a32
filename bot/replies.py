"""Replies that respect Telegram's message size and edits that tolerate a message that already changed."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Message

from bot.texts import split_message

# Telegram's answers to an edit that has nothing left to do: the message already shows this, or is gone.
HARMLESS_EDIT_ERRORS = (
    "message is not modified",
    "message to edit not found",
    "message can't be edited",
    "message to delete not found",
)


async def answer_long(message: Message, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> Message:
    """Send ``text`` in as many messages as it needs; the buttons go on the last one."""
    chunks = split_message(text)
    sent = message
    for index, chunk in enumerate(chunks):
        markup = reply_markup if index == len(chunks) - 1 else None
        sent = await message.answer(chunk, reply_markup=markup)
    return sent


def harmless(exc: TelegramBadRequest) -> bool:
    return any(reason in str(exc).lower() for reason in HARMLESS_EDIT_ERRORS)


async def edit_quietly(edit: Awaitable[Any]) -> bool:
    """Apply an edit; an edit with nothing left to do (already edited, deleted) is not an error. True if done."""
    try:
        await edit
    except TelegramBadRequest as exc:
        if not harmless(exc):
            raise
        return False
    return True
