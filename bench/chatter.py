"""Alerts under chatter: while one chat floods the bot with commands, how long does an orphan alert take to
reach a chat? Measured through the real `run` pipeline against the loopback Bot API, with reconbot's flood
control (per-chat lanes, alerts first, a reserve in groups) side by side with version 0.1's pacing (every send
reserved a future slot in one shared window, first come first served).

Two cases: chat B (a private chat) floods and the alert goes to chat A; the alert group itself floods and the
alert goes to that group. The clock runs from the moment the check files the alert to the moment the Bot API
receives it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import EditMessageText, SendMessage, TelegramMethod
from aiogram.methods.base import Response, TelegramType

from app.service import start_service
from bench.common import Databases, accounts_for, scenario
from bot.flood import FloodControl
from emulator.exchange import ExchangeEmulator
from emulator.telegram import BotApiEmulator
from services.model import SCAN_KINDS
from services.settings import Settings

TOKEN = "123456:BENCH"
CHAT_A = 4242
CHAT_B = 5151
GROUP = -100777
QUIET = {"orphan_interval_s": 3600, "reconcile_interval_s": 3600, "grace_s": 0, "verify_delay_s": 0, "jitter_s": 0}


class SharedReservations(BaseRequestMiddleware):
    """Version 0.1's pacing, kept here as the baseline: a send reserves the first slot that both its chat's window
    and one shared window allow, including slots far in the future that other chats' queued sends took."""

    def __init__(self) -> None:
        self._chats: dict[Any, deque[float]] = {}
        self._everywhere: deque[float] = deque()
        self._lock = asyncio.Lock()

    @staticmethod
    def _earliest(times: deque[float], count: int, window: float, now: float) -> float:
        while times and times[0] <= now - window:
            times.popleft()
        return now if len(times) < count else times[-count] + window

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        if isinstance(method, SendMessage | EditMessageText):
            chat = method.chat_id
            count, window = (20, 60.0) if str(chat).startswith("-") else (1, 1.0)
            async with self._lock:
                now = time.monotonic()
                times = self._chats.setdefault(chat, deque())
                slot = max(self._earliest(times, count, window, now), self._earliest(self._everywhere, 30, 1.0, now))
                times.append(slot)
                self._everywhere.append(slot)
            await asyncio.sleep(max(0.0, slot - time.monotonic()))
        return await make_request(bot, method)


async def _one(databases: Databases, *, commands: int, flood_chat: int, alert_chat: int, current: bool) -> float:
    accounts = accounts_for(1)
    emulator = ExchangeEmulator.from_scenario(scenario(accounts, 0))
    telegram = BotApiEmulator(token=TOKEN)
    await emulator.start()
    await telegram.start()
    pacing = FloodControl() if current else SharedReservations()
    try:
        async with databases.fresh() as url:
            account = accounts[0]
            settings = Settings(
                database={"url": url},
                accounts=[
                    {
                        "name": account.name,
                        "exchange": account.exchange_id,
                        "api_key": account.api_key,
                        "secret": account.secret,
                        "api_base_url": emulator.account(account.name).base_url,
                    }
                ],
                scan=QUIET,
                telegram={
                    "token": TOKEN,
                    "api_base_url": telegram.base_url,
                    "alert_chat_ids": [alert_chat],
                    "operators": [CHAT_A],
                    "viewers": [CHAT_B],
                },
                alerts={"console": False},
                ops={"listen": None},
            )
            service = await start_service(settings, say=lambda _: None, flood_control=pacing)
            try:
                await telegram.wait_until(lambda: service.reconciler.last is not None, timeout=30)
                chat_type = "private" if flood_chat > 0 else "supergroup"
                for _ in range(commands):
                    telegram.user_sends(CHAT_B, "/help", chat_id=flood_chat, chat_type=chat_type)
                await telegram.wait_until(lambda: len(telegram.messages(flood_chat)) >= 3, timeout=30)
                emulator.account(account.name).set_position("BTCUSDT", "long", "2")
                filed = time.monotonic()
                await service.reconciler.check(SCAN_KINDS)
                await telegram.wait_until(
                    lambda: any("Orphan" in m.text for m in telegram.messages(alert_chat)), timeout=600
                )
                alert = next(m for m in telegram.messages(alert_chat) if "Orphan" in m.text)
                return alert.sent_at - filed
            finally:
                await service.stop(check_timeout_s=5, flush_timeout_s=1)
    finally:
        await telegram.stop()
        await emulator.stop()


async def run(databases: Databases, commands: int = 200, samples: int = 3) -> list[dict[str, Any]]:
    rows = []
    cases = (("private chat B floods, alert to chat A", CHAT_B, CHAT_A), ("the alert group floods", GROUP, GROUP))
    for case, flood_chat, alert_chat in cases:
        for current in (True, False):
            latencies = [
                await _one(databases, commands=commands, flood_chat=flood_chat, alert_chat=alert_chat, current=current)
                for _ in range(samples)
            ]
            design = "per-chat lanes, alerts first" if current else "0.1: shared reservations"
            rows.append(
                {
                    "case": case,
                    "design": design,
                    "commands": commands,
                    "samples": samples,
                    "median_s": statistics.median(latencies),
                    "worst_s": max(latencies),
                }
            )
            print(f"  chatter: {case}, {design}: median {rows[-1]['median_s']:.2f}s", flush=True)
    return rows
