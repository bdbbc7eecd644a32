"""Telegram's side of the process: the Dispatcher with its middlewares and every router, and the lifecycle of
polling and alert delivery. Wiring the routers here keeps the one import that runs from plumbing to handlers
out of ``bot``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramServerError,
)
from aiogram.types import BotCommand, BotCommandScopeDefault
from aiogram.utils.backoff import BackoffConfig

from bot.client import DEFAULT_BACKOFF
from bot.commands import Scope, menus
from bot.context import BotContext
from bot.delivery import TelegramDelivery
from bot.middlewares import AuthMiddleware, InFlight, PressesFirst, RoleMiddleware
from bot.poll_conflicts import PollConflicts
from handlers import alerts, checks, common, digests, errors, fallback, fixes, mute, status, tables
from services.announcements import AlertPolicy
from services.leases import Lease
from services.mutes import MuteEnds

log = logging.getLogger(__name__)
T = TypeVar("T")
ROUTERS = (common, status, checks, tables, mute, fixes, alerts, digests, fallback)  # in the order they are asked
POLLING_LOCK = zlib.crc32(b"reconbot-telegram-polling")
POLLING_STANDBY_S = 5.0  # after a 409 (or polling that ended), before this replica competes for polling again
POLLING_CHECK_S = 10.0  # how often the polling replica checks that its lock's session still answers
LOCK_LOST = "the polling lock's database session is gone"


def build_dispatcher(ctx: BotContext, in_flight: InFlight | None = None) -> Dispatcher:
    dispatcher = Dispatcher(ctx=ctx)
    if in_flight is not None:
        dispatcher.update.outer_middleware(in_flight)
    auth = AuthMiddleware(ctx.settings.telegram)
    dispatcher.message.outer_middleware(auth)
    dispatcher.callback_query.outer_middleware(auth)
    dispatcher.message.middleware(RoleMiddleware())
    dispatcher.callback_query.middleware(RoleMiddleware())
    dispatcher.callback_query.middleware(PressesFirst())
    dispatcher.include_routers(*(module.create_router() for module in ROUTERS))
    dispatcher.errors.register(errors.on_error)
    return dispatcher


class ChatOps:
    """The Telegram face of reconbot: answers commands and buttons, and delivers queued alerts."""

    def __init__(
        self, ctx: BotContext, bot: Bot, *, backoff: BackoffConfig = DEFAULT_BACKOFF, polling_timeout: int = 25
    ):
        self.ctx = ctx
        self.bot = bot
        self.in_flight = InFlight()
        self.dispatcher = build_dispatcher(ctx, self.in_flight)
        self.delivery = TelegramDelivery(
            bot,
            ctx.runtime.findings,
            ctx.runtime.outbox,
            exchange_orders={a.name: a.allow_exchange_orders for a in ctx.settings.accounts},
            policy=AlertPolicy.from_settings(ctx.settings.alerts),
            mutes=ctx.runtime.mutes,
            books=ctx.settings.positions.writes,
            telegram=ctx.settings.telegram,
        )
        self.mute_ends = MuteEnds(ctx.runtime.mutes, self.delivery.wake)
        ctx.reconciler.wakeups.append(self.delivery.wake)
        self._backoff = backoff
        self._polling_timeout = polling_timeout
        self._tasks: list[asyncio.Task[None]] = []
        self._mute_ends: asyncio.Task[None] | None = None
        self._polling = False
        self._stopping = asyncio.Event()
        self._conflicts = PollConflicts()
        bot.session.middleware(self._conflicts)

    @property
    def polling(self) -> bool:
        """Whether this replica answers Telegram now."""
        return self._polling

    async def start(self) -> None:
        """Start polling and delivery; a Telegram outage at start only delays them, it never stops reconbot."""
        self._tasks = [
            asyncio.create_task(self._poll(), name="telegram-polling"),
            asyncio.create_task(self.delivery.run(), name="telegram-delivery"),
        ]
        self._mute_ends = asyncio.create_task(self.mute_ends.run(), name="telegram-mute-ends")

    async def _register(self) -> None:
        """Introduce the bot and its menus, retrying while Telegram cannot be reached."""
        me = await self._reachable(self.bot.get_me)
        for scope, commands in menus(self.ctx.settings.telegram):
            await self._set_menu(scope, commands)
        log.info("telegram: running as @%s", me.username)

    async def _reachable(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` once Telegram answers: an outage at start only delays the bot, it never stops reconbot."""
        delay = self._backoff.min_delay
        while True:
            try:
                return await call()
            except (TelegramNetworkError, TelegramServerError) as exc:
                log.warning("telegram not reachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(self._backoff.max_delay, delay * self._backoff.factor)

    async def _set_menu(self, scope: Scope, commands: list[BotCommand]) -> None:
        """One scope's menu. A chat Telegram refuses (a user who never opened the bot: "chat not found") is
        skipped with one warning, never fatal; it gets its menu at a later start."""
        try:
            await self._reachable(lambda: self.bot.set_my_commands(commands, scope=scope))
        except (TelegramBadRequest, TelegramForbiddenError) as exc:
            if isinstance(scope, BotCommandScopeDefault):
                raise
            log.warning("telegram: no command menu for chat %s (%s); skipped", scope.chat_id, exc.message)

    async def _poll(self) -> None:
        """Answer Telegram from one replica only (Telegram refuses two getUpdates at once): the one holding the
        polling lease. The others stand by and take over the moment its session ends; the holder stops polling
        the moment it loses the lease, or when Telegram says another poller took over (409)."""
        lease = Lease(self.ctx.runtime.database.connect, "telegram-polling", POLLING_LOCK)
        registered = False

        def standby() -> None:
            log.info("another reconbot answers Telegram for this database; standing by")

        try:
            while await lease.acquire(self._stopping, standby):
                try:
                    if not registered:
                        await self._register()
                        registered = True
                    reason = await self._poll_while_held(lease)
                finally:
                    await lease.release()
                if reason is None:
                    return
                log.warning("telegram: %s; this replica stopped polling and stands by", reason)
                if reason != LOCK_LOST:  # the lock is free: give another replica the first chance at it
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), POLLING_STANDBY_S)
        finally:
            await lease.release()

    async def _poll_while_held(self, lease: Lease) -> str | None:
        """Poll until stopped (None) or until the lease is lost or Telegram reports a conflict (the reason)."""
        self._conflicts.conflict.clear()
        polling = asyncio.create_task(
            self.dispatcher.start_polling(
                self.bot,
                handle_signals=False,
                close_bot_session=False,
                polling_timeout=self._polling_timeout,
                backoff_config=self._backoff,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            ),
            name="telegram-getupdates",
        )
        self._polling = True
        watch = asyncio.ensure_future(lease.watch(POLLING_CHECK_S))
        stopping = asyncio.ensure_future(self._stopping.wait())
        conflict = asyncio.ensure_future(self._conflicts.conflict.wait())
        try:
            await asyncio.wait({polling, watch, stopping, conflict}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (watch, stopping, conflict):
                waiting.cancel()
            await self._end_polling(polling)
            self._polling = False
        if conflict.done() and not conflict.cancelled():
            return "getUpdates answered 409 Conflict (another bot instance polls with this token)"
        if stopping.done() and not stopping.cancelled():
            return None
        if not lease.held:
            return LOCK_LOST
        return "polling ended"

    async def _end_polling(self, polling: asyncio.Task[None]) -> None:
        """End polling through aiogram: cancelling start_polling would leave its polling loop running."""
        for _ in range(100):
            if polling.done():
                break
            try:
                await self.dispatcher.stop_polling()
                break
            except RuntimeError:  # start_polling entered but not yet holding its lock
                await asyncio.sleep(0.02)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(polling), 10.0)
        if polling.done() and not polling.cancelled() and polling.exception() is not None:
            log.error("telegram polling failed", exc_info=polling.exception())

    async def _finish_handlers(self, timeout_s: float) -> None:
        """Let commands and button presses already being handled finish their replies (bounded)."""
        pending = set(self.in_flight.tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout_s)
            for task in late:
                task.cancel()

    async def stop_polling(self) -> None:
        """Stop taking updates: polling ends through aiogram; a replica standing by, or still registering while
        Telegram is unreachable, just stops waiting."""
        task = next((t for t in self._tasks if t.get_name() == "telegram-polling"), None)
        if task is None or task.done():
            return
        self._stopping.set()
        if not self._polling:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 10.0)

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Stop taking updates, try to deliver what is queued, then close the session."""
        await self.stop_polling()
        await self._finish_handlers(flush_timeout_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.delivery.drain(), flush_timeout_s)
        self.delivery.stop()
        if self._mute_ends is not None:  # a mute that ends meanwhile is ended at the next start, or by another replica
            self._mute_ends.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mute_ends
            self._mute_ends = None
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 5.0)
        self._tasks = []
        await self.bot.session.close()
