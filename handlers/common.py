"""/start, /help and /whoami."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot import answers, texts
from bot.context import BotContext
from bot.roles import Role


async def help_command(message: Message, ctx: BotContext) -> None:
    await message.answer(texts.help_text(a.name for a in ctx.settings.accounts))


async def whoami(message: Message) -> None:
    """Answers anyone, so a new user can tell an admin which id to add."""
    user_id = message.from_user.id if message.from_user else None
    await message.answer(answers.whoami(user_id, message.chat.id))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="common")
    router.message(CommandStart(), flags={"role": Role.VIEWER})(help_command)
    router.message(Command("help"), flags={"role": Role.VIEWER})(help_command)
    router.message(Command("whoami"), flags={"role": Role.STRANGER})(whoami)
    return router
