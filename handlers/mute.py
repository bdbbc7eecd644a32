"""/mute: an operator quiets the chat they are in for a while (default one hour); /mute off ends it."""

from __future__ import annotations

import re
from datetime import timedelta

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import answers
from bot.commands import role_flag
from bot.context import BotContext
from bot.roles import actor_name

DEFAULT_MUTE = timedelta(hours=1)
LONGEST_MUTE = timedelta(days=7)
_DURATION = re.compile(r"^(\d{1,4})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta | None:
    """``30m``, ``2h``, ``1d``; None for anything else or beyond a week."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        return None
    span = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return span if timedelta(0) < span <= LONGEST_MUTE else None


async def mute(message: Message, command: CommandObject, ctx: BotContext) -> None:
    argument = (command.args or "").strip()
    if argument.lower() == "off":
        ended = await ctx.runtime.mutes.unmute(message.chat.id)
        await message.answer(answers.UNMUTED if ended else answers.NOT_MUTED)
        return
    span = parse_duration(argument) if argument else DEFAULT_MUTE
    if span is None:
        await message.answer(answers.MUTE_USAGE)
        return
    assert message.from_user is not None
    until = ctx.runtime.monitor.now() + span
    await ctx.runtime.mutes.mute(message.chat.id, until, actor_name(message.from_user.id, message.from_user.username))
    await message.answer(answers.muted(until))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="mute")
    router.message(Command("mute"), flags=role_flag("mute"))(mute)
    return router
