"""What no other router recognised: forged or stale buttons, and unknown commands in a private chat.
Included last, so it only ever sees leftovers."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot import answers
from bot.roles import Role


async def unknown_button(query: CallbackQuery) -> None:
    await query.answer(answers.STALE_BUTTON, show_alert=True)


async def unknown_command(message: Message) -> None:
    await message.answer(answers.unknown_command(message.text or ""))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="fallback")
    router.callback_query(flags={"role": Role.VIEWER})(unknown_button)
    router.message(F.chat.type == "private", F.text.startswith("/"), flags={"role": Role.VIEWER})(unknown_command)
    return router
