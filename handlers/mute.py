"""/mute: an operator quiets the chat they are in for a while (default one hour, everything below critical;
``/mute 1h info`` quiets only info-level alerts); /mute off ends it and brings the catch-up of what arrived."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import answers
from bot.commands import role_flag
from bot.context import BotContext
from bot.roles import actor_name
from services.mutes import MuteArgumentError, parse_request


async def mute(message: Message, command: CommandObject, ctx: BotContext) -> None:
    mutes = ctx.runtime.mutes
    try:
        request = parse_request(command.args or "")
    except MuteArgumentError as exc:
        await message.answer(answers.mute_refused(exc))
        return
    if request is None:
        ended = await mutes.unmute(message.chat.id)
        await message.answer(answers.unmuted(ended) if ended else answers.NOT_MUTED)
        if ended and ended.arrived:
            ctx.reconciler.wake()  # the catch-up waits in the outbox, after this answer
        return
    assert message.from_user is not None
    by = actor_name(message.from_user.id, message.from_user.username)
    muted = await mutes.mute(message.chat.id, request.span, request.scope, by)
    await message.answer(answers.muted(muted, ctx.settings.telegram.mute_critical))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="mute")
    router.message(Command("mute"), flags=role_flag("mute"))(mute)
    return router
