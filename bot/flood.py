"""Flood control for every Bot API call, as an aiogram request middleware.

Telegram's limits are per chat (one message a second in a private chat, twenty a minute in a group) plus about
thirty a second overall. Each chat gets a lane of its own: its sends wait only for that chat's budget, so one
busy chat never delays another chat's alert, and within a chat the most urgent send goes first: answers to button
presses and confirmation prompts, then alerts, then command replies, and edits and reminders last, in the
background. Replies and background sends leave the last sends of a group's window to presses and alerts, so a
queue of edits can never hold back a prompt an operator is waiting for. The overall limit counts sends actually
made, never reservations, so a long queue in one chat holds no capacity another chat could use. A 429 is waited
out for the ``retry_after`` Telegram names, in that chat's lane only; network and server errors are retried with
backoff. Long polling is left to aiogram's own backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import EditMessageReplyMarkup, EditMessageText, GetUpdates, SendMessage, TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger(__name__)

PACED_METHODS = (SendMessage, EditMessageText, EditMessageReplyMarkup)


class Priority(IntEnum):
    """Lower goes first within a chat."""

    INTERACTIVE = 0  # what answers a button press: confirmation prompts, fix outcomes, the pressed message's edit
    ALERT = 1  # new alerts, digests and notices
    REPLY = 2  # answers to commands
    DETAIL = 3  # edits of earlier alerts, reminders, catch-ups, a digest's findings shown one by one

    def reserve(self, group_reserve: int) -> int:
        """Sends of a group's window this rank leaves to presses and alerts, which may use all of it."""
        return 0 if self <= Priority.ALERT else group_reserve


_priority: ContextVar[Priority] = ContextVar("reconbot_send_priority", default=Priority.REPLY)


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Sends made inside this block go before command replies waiting in the same chat."""
    with sending_as(Priority.ALERT):
        yield


@contextlib.contextmanager
def in_background() -> Iterator[None]:
    """Sends made inside this block wait behind every reply and alert in the same chat."""
    with sending_as(Priority.DETAIL):
        yield


@contextlib.contextmanager
def interactive() -> Iterator[None]:
    """Sends made inside this block answer an operator who is waiting: they go first in their chat."""
    with sending_as(Priority.INTERACTIVE):
        yield


@contextlib.contextmanager
def sending_as(priority: Priority) -> Iterator[None]:
    """Sends made inside this block take ``priority`` in their chat's lane."""
    token = _priority.set(priority)
    try:
        yield
    finally:
        _priority.reset(token)


@dataclass(frozen=True)
class Limit:
    """At most ``count`` sends in any ``window_s`` seconds."""

    count: int
    window_s: float


PRIVATE_CHAT = Limit(1, 1.0)
GROUP_CHAT = Limit(20, 60.0)
EVERYWHERE = Limit(30, 1.0)


class SlidingWindow:
    """The times of sends made, so no window of ``limit.window_s`` holds more than ``limit.count`` of them."""

    def __init__(self, limit: Limit):
        self.limit = limit
        self._times: deque[float] = deque()

    def earliest(self, now: float, reserve: int = 0) -> float:
        """When the next send may go; ``reserve`` sends of the window are kept back for more urgent ones."""
        while self._times and self._times[0] <= now - self.limit.window_s:
            self._times.popleft()
        count = max(1, self.limit.count - reserve)
        if len(self._times) < count:
            return now
        return self._times[-count] + self.limit.window_s

    def take(self, moment: float) -> None:
        self._times.append(moment)


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class ChatLane:
    """One chat's sends: granted one at a time, most urgent first, as the chat's own budget allows. Replies and
    background sends may use all but ``reserve`` sends of the chat's window, so an alert finds room even after a
    burst of commands, and a prompt even after a burst of edits."""

    def __init__(self, limit: Limit, reserve: int = 0):
        self.window = SlidingWindow(limit)
        self.reserve = reserve
        self.blocked_until = 0.0
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    async def turn(self, priority: Priority) -> None:
        """Wait until this send may go; the chat's budget is charged when it is granted."""
        waiter = _Waiter(int(priority), next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, waiter)
        self._grant()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._grant()  # granted just as it was cancelled: pass the turn on
            raise

    def block(self, seconds: float) -> None:
        """Telegram said 429 for this chat: nothing more goes to it until ``retry_after`` has passed."""
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)
        self._grant()

    def _grant(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                heapq.heappop(self._waiters)
                continue
            now = time.monotonic()
            reserve = Priority(head.priority).reserve(self.reserve)
            due = max(self.window.earliest(now, reserve), self.blocked_until)
            if due > now:
                self._timer = asyncio.get_running_loop().call_later(due - now, self._grant)
                return
            heapq.heappop(self._waiters)
            self.window.take(now)
            head.future.set_result(None)


class GlobalBudget:
    """The bot-wide limit, counting only sends that are going out now."""

    def __init__(self, limit: Limit):
        self.window = SlidingWindow(limit)
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                due = self.window.earliest(now)
                if due <= now:
                    self.window.take(now)
                    return
                await asyncio.sleep(due - now)


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
        priorities: bool = True,
        group_reserve: int = 5,
    ):
        self.private = private
        self.group = group
        self.group_reserve = group_reserve if priorities else 0
        self.max_retry_after_s = max_retry_after_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.priorities = priorities
        self._lanes: dict[Any, ChatLane] = {}
        self._everywhere = GlobalBudget(everywhere)

    def lane(self, chat_id: Any) -> ChatLane:
        lane = self._lanes.get(chat_id)
        if lane is None:
            group = str(chat_id).startswith("-")
            lane = ChatLane(self.group, self.group_reserve) if group else ChatLane(self.private)
            self._lanes[chat_id] = lane
        return lane

    async def _pace(self, chat_id: Any) -> ChatLane:
        lane = self.lane(chat_id)
        await lane.turn(_priority.get() if self.priorities else Priority.REPLY)
        await self._everywhere.take()
        return lane

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        if isinstance(method, GetUpdates):
            return await make_request(bot, method)
        paced = isinstance(method, PACED_METHODS)
        for attempt in range(1, self.attempts + 1):
            lane = await self._pace(getattr(method, "chat_id", None)) if paced else None
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if exc.retry_after > self.max_retry_after_s or attempt == self.attempts:
                    raise
                log.warning("telegram flood control: waiting %ss before %s", exc.retry_after, type(method).__name__)
                if lane is not None:
                    lane.block(exc.retry_after)
                else:
                    await asyncio.sleep(exc.retry_after)
            except (TelegramNetworkError, TelegramServerError) as exc:
                if attempt == self.attempts:
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("telegram %s failed (%s); retrying in %.1fs", type(method).__name__, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
