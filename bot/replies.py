"""Replies that respect Telegram's message size, answers for one reader alone, and edits that tolerate a message
that already changed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import EphemeralMessageParameters, InlineKeyboardMarkup, Message

from bot.texts import split_message

log = logging.getLogger(__name__)

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


GROUPS = ("group", "supergroup")


async def answer_privately(message: Message, text: str) -> None:
    """An answer for the writer alone where the Bot API allows it: in a group, an ephemeral message to them (an
    administrator bot may send one to any member at any time). Where Telegram refuses one (the bot is no
    administrator there), and in a private chat, an ordinary reply."""
    user = message.from_user
    if user is not None and message.chat.type in GROUPS:
        try:
            await message.answer(
                text,
                disable_notification=True,
                ephemeral_message_parameters=EphemeralMessageParameters(receiver_user_id=user.id),
            )
            return
        except TelegramBadRequest as exc:
            log.debug("chat %s: no ephemeral answer (%s); an ordinary reply", message.chat.id, exc)
    await message.reply(text)


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
