"""Replies that respect Telegram's message size: long texts go out as several messages, split on lines."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup, Message

from bot.texts import split_message


async def answer_long(message: Message, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> Message:
    """Send ``text`` in as many messages as it needs; the buttons go on the last one."""
    chunks = split_message(text)
    sent = message
    for index, chunk in enumerate(chunks):
        markup = reply_markup if index == len(chunks) - 1 else None
        sent = await message.answer(chunk, reply_markup=markup)
    return sent
