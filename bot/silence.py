"""Only new risk rings. An alert says whether it rings (``bot.delivery`` decides, by kind, severity and growth);
every other message the bot sends — an answer to a command, a card opened from a table, a confirmation — arrives
silently unless its sender says otherwise. aiogram 3.31 applies no default ``disable_notification`` to
``sendMessage`` (``DefaultBotProperties.disable_notification`` is not wired to it), so it is set here, on every
send that left it unset."""

from __future__ import annotations

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.methods.base import Response, TelegramType


class SilentUnlessSaid(BaseRequestMiddleware):
    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        if isinstance(method, SendMessage) and method.disable_notification is None:
            method = method.model_copy(update={"disable_notification": True})
        return await make_request(bot, method)
