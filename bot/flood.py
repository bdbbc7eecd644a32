"""Flood control for every Bot API call, as an aiogram request middleware.

Sends are paced under Telegram's published limits, each a sliding window: one message a second in a
private chat, twenty a minute in a group, thirty a second overall. A 429 is waited out for the
``retry_after`` Telegram names; network and server errors are retried with backoff. Long polling is left
to aiogram's own backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import (
    EditMessageReplyMarkup,
    EditMessageText,
    GetUpdates,
    SendMessage,
    TelegramMethod,
)
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger(__name__)

PACED_METHODS = (SendMessage, EditMessageText, EditMessageReplyMarkup)


@dataclass(frozen=True)
class Limit:
    """At most ``count`` sends in any ``window_s`` seconds."""

    count: int
    window_s: float


PRIVATE_CHAT = Limit(1, 1.0)
GROUP_CHAT = Limit(20, 60.0)
EVERYWHERE = Limit(30, 1.0)


class SlidingWindow:
    """Reserves send times so that no window of ``limit.window_s`` holds more than ``limit.count`` sends."""

    def __init__(self, limit: Limit):
        self.limit = limit
        self._times: deque[float] = deque()

    def earliest(self, now: float) -> float:
        while self._times and self._times[0] <= now - self.limit.window_s:
            self._times.popleft()
        if len(self._times) < self.limit.count:
            return now
        return self._times[-self.limit.count] + self.limit.window_s

    def take(self, moment: float) -> None:
        self._times.append(moment)


class FloodControl(BaseRequestMiddleware):
    def __init__(
        self,
        *,
        private: Limit = PRIVATE_CHAT,
        group: Limit = GROUP_CHAT,
        everywhere: Limit = EVERYWHERE,
        max_retry_after_s: float = 120.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
    ):
        self.private = private
        self.group = group
        self.max_retry_after_s = max_retry_after_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._chats: dict[Any, SlidingWindow] = {}
        self._everywhere = SlidingWindow(everywhere)
        self._lock = asyncio.Lock()

    async def _pace(self, chat_id: Any) -> None:
        """Reserve the first moment both this chat's and the global limit allow, then sleep until it comes."""
        async with self._lock:
            now = time.monotonic()
            window = self._chats.get(chat_id)
            if window is None:
                limit = self.group if str(chat_id).startswith("-") else self.private
                window = self._chats[chat_id] = SlidingWindow(limit)
            slot = max(window.earliest(now), self._everywhere.earliest(now))
            window.take(slot)
            self._everywhere.take(slot)
        if slot > now:
            await asyncio.sleep(slot - now)

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        if isinstance(method, GetUpdates):
            return await make_request(bot, method)
        paced = isinstance(method, PACED_METHODS)
        for attempt in range(1, self.attempts + 1):
            if paced:
                await self._pace(getattr(method, "chat_id", None))
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if exc.retry_after > self.max_retry_after_s or attempt == self.attempts:
                    raise
                log.warning("telegram flood control: waiting %ss before %s", exc.retry_after, type(method).__name__)
                await asyncio.sleep(exc.retry_after)
            except (TelegramNetworkError, TelegramServerError) as exc:
                if attempt == self.attempts:
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("telegram %s failed (%s); retrying in %.1fs", type(method).__name__, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
