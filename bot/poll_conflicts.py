"""Notice when Telegram ends this process's long poll because another one polls with the same token.

Telegram answers the older of two getUpdates 409 Conflict ("terminated by other getUpdates request"). aiogram's
polling loop only logs that and retries after its backoff, so two pollers would knock each other out for as
long as both run. This request middleware sets ``conflict`` instead, for the polling loop to stop.
"""

from __future__ import annotations

import asyncio

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramConflictError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType


class PollConflicts(BaseRequestMiddleware):
    def __init__(self) -> None:
        self.conflict = asyncio.Event()

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        try:
            return await make_request(bot, method)
        except TelegramConflictError:
            if isinstance(method, GetUpdates):
                self.conflict.set()
            raise
