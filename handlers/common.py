"""/start, /help and /whoami."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot import answers
from bot.commands import commands_for, role_flag
from bot.context import BotContext
from bot.replies import answer_privately
from bot.roles import Role


async def help_command(message: Message, ctx: BotContext, role: Role) -> None:
    """Only what the asker may do, so a viewer is not offered buttons that will refuse them."""
    await message.answer(answers.help_text(commands_for(role), (a.name for a in ctx.settings.accounts)))


async def whoami(message: Message) -> None:
    """Answers anyone, so a new user can tell an admin which id to add; in a group, to them alone where the Bot
    API allows (bot.replies.answer_privately)."""
    user_id = message.from_user.id if message.from_user else None
    await answer_privately(message, answers.whoami(user_id, message.chat.id))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="common")
    router.message(CommandStart(), flags=role_flag("start"))(help_command)
    router.message(Command("help"), flags=role_flag("help"))(help_command)
    router.message(Command("whoami"), flags=role_flag("whoami"))(whoami)
    return router
