"""A running reconbot Telegram face for end-to-end tests: real aiogram against the loopback Bot API, real ccxt
against the loopback venues, real PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiogram.utils.backoff import BackoffConfig

from app.telegram import ChatOps
from bot.client import build_bot
from bot.context import BotContext
from bot.flood import FloodControl
from emulator.exchange import EmulatedAccount
from emulator.telegram import ApiCall, BotApiEmulator, StoredMessage
from services.model import RECONCILIATION
from services.reconciler import Reconciler
from services.runtime import Runtime
from services.settings import Settings
from tests.conftest import TELEGRAM_TOKEN
from tests.helpers import config_dict, insert_positions, position_row, prepare_database

OPERATOR = 111
OPERATOR_2 = 112
VIEWER = 222
STRANGER = 999
ALERT_CHAT = -100500
FAST_BACKOFF = BackoffConfig(min_delay=0.05, max_delay=0.2, factor=1.5, jitter=0.01)
PRESENCE = ("👀 Watching ", "⏹️ Watching stopped")  # what `run` says when it starts and stops (test_presence)


def without_presence(messages: Sequence[StoredMessage]) -> list[StoredMessage]:
    """A chat's messages less the start and stop notices, for tests about everything else."""
    return [m for m in messages if not m.text.startswith(PRESENCE)]


def telegram_settings(
    database_url: str, accounts: Sequence[EmulatedAccount], bot_api: BotApiEmulator, **overrides: Any
) -> Settings:
    config = config_dict(database_url, accounts)
    config["telegram"] = {
        "token": TELEGRAM_TOKEN,
        "api_base_url": bot_api.base_url,
        "alert_chat_ids": [ALERT_CHAT],
        "operators": [OPERATOR, OPERATOR_2],
        "viewers": [VIEWER],
        **overrides.pop("telegram", {}),
    }
    for account in config["accounts"]:
        account.update(overrides.pop("account", {}))
    config["scan"].update(overrides.pop("scan", {}))
    return Settings(**config, **overrides)


def findings_rows(message: StoredMessage) -> list[list[str]]:
    """The rows of a findings table (``#  KIND  SYMBOL …``), its header left out, each split into cells."""
    lines = message.text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "KIND"])
    return [line.split() for line in lines[start + 1 :] if line.split() and line.split()[0].isdigit()]


@dataclass
class Harness:
    settings: Settings
    runtime: Runtime
    chatops: ChatOps
    telegram: BotApiEmulator

    @property
    def reconciler(self) -> Reconciler:
        return self.chatops.ctx.reconciler

    async def say(
        self, user_id: int, text: str, *, chat_id: int | None = None, replies: int = 1, timeout: float = 15.0
    ) -> list[StoredMessage]:
        """Send a message as a user and wait for the bot's replies in that chat."""
        chat = chat_id if chat_id is not None else user_id
        before = len(self.telegram.messages(chat))
        chat_type = "private" if chat > 0 else "supergroup"
        self.telegram.user_sends(user_id, text, chat_id=chat, chat_type=chat_type, username=f"user{user_id}")
        await self.telegram.wait_until(lambda: len(self.telegram.messages(chat)) >= before + replies, timeout=timeout)
        return self.telegram.messages(chat)[before:]

    async def press(
        self,
        user_id: int,
        message: StoredMessage,
        text: str | None = None,
        *,
        data: str | None = None,
        first_name: str | None = None,
    ) -> ApiCall:
        """Press a button (by its text, or raw callback data) and wait for the bot's answer to the press; the
        presser is ``@user<id>``, or only ``first_name`` when given (a user without a username)."""
        if data is None:
            data = message.button(text=text)["callback_data"]
        username = None if first_name else f"user{user_id}"
        query_id = self.telegram.user_presses(
            user_id, message, data, username=username, first_name=first_name, check_button=False
        )
        return await self.telegram.wait_for(
            lambda call: call.method == "answerCallbackQuery" and call.params.get("callback_query_id") == query_id,
            timeout=15,
        )

    async def opened(self, user_id: int, listing: StoredMessage, number: int) -> StoredMessage:
        """Press a number under a findings table (or a reminder) and return the card it opens."""
        finding = listing.button(text=str(number))["callback_data"].removeprefix("o:")
        chat = listing.chat_id
        before = max((m.message_id for m in self.telegram.messages(chat)), default=0)
        await self.press(user_id, listing, str(number))
        return await self.message_where(
            chat, lambda m: m.message_id > before and f"f:details:{finding}" in m.callback_data
        )

    async def message_where(
        self, chat_id: int, predicate: Callable[[StoredMessage], bool], timeout: float = 15.0
    ) -> StoredMessage:
        """The first bot message in a chat that satisfies ``predicate``, once there is one."""
        await self.telegram.wait_until(
            lambda: any(predicate(m) for m in self.telegram.messages(chat_id)), timeout=timeout
        )
        return next(m for m in self.telegram.messages(chat_id) if predicate(m))

    async def edited_to(self, message: StoredMessage, fragment: str, timeout: float = 15.0) -> StoredMessage:
        """Wait until a message's current text contains ``fragment``; returns its current state."""
        await self.telegram.wait_until(
            lambda: fragment in self.telegram.message(message.chat_id, message.message_id).text, timeout=timeout
        )
        return self.telegram.message(message.chat_id, message.message_id)

    async def shown_to(self, user_id: int, chat_id: int = ALERT_CHAT, timeout: float = 15.0) -> StoredMessage:
        """The latest ephemeral message in a chat that only ``user_id`` sees, once there is one."""
        await self.telegram.wait_until(
            lambda: self.telegram.ephemeral_messages(chat_id, user_id) != [], timeout=timeout
        )
        return self.telegram.ephemeral_messages(chat_id, user_id)[-1]

    def alerts(self) -> list[StoredMessage]:
        return self.telegram.messages(ALERT_CHAT)

    async def wait_alerts(self, count: int, timeout: float = 15.0) -> list[StoredMessage]:
        await self.telegram.wait_until(lambda: len(self.alerts()) >= count, timeout=timeout)
        return self.alerts()

    async def settled(self, timeout: float = 15.0) -> None:
        """Wait until every update the bot took has been handled to the end, including the calls a handler
        makes after answering a button press."""
        handling = self.chatops.in_flight.tasks
        await self.telegram.wait_until(lambda: not self.telegram.pending_updates and not handling, timeout=timeout)


@contextlib.asynccontextmanager
async def running_chatops(
    settings: Settings, telegram: BotApiEmulator, *, migrate: bool = True
) -> AsyncIterator[Harness]:
    if migrate:
        await prepare_database(settings.database.url.get_secret_value())
    runtime = await Runtime(settings).start()
    for gateway in runtime.gateways.values():
        gateway.client.timeout_on_exit = 0
    reconciler = Reconciler(runtime, runtime.destinations)
    bot = build_bot(settings.telegram, FloodControl(backoff_s=0.05))
    chatops = ChatOps(BotContext(settings, runtime, reconciler), bot, backoff=FAST_BACKOFF, polling_timeout=1)
    await chatops.start()
    await telegram.wait_until(lambda: telegram.active_polls > 0, timeout=5)
    try:
        yield Harness(settings, runtime, chatops, telegram)
    finally:
        await chatops.stop(flush_timeout_s=1)
        await runtime.close()


@contextlib.asynccontextmanager
async def chatops_for(
    database_url: str, bot_api: BotApiEmulator, accounts: Sequence[EmulatedAccount], **overrides: Any
) -> AsyncIterator[Harness]:
    """The running face for these accounts (settings as ``telegram_settings`` writes them), with ``h.db``."""
    settings = telegram_settings(database_url, accounts, bot_api, **overrides)
    async with running_chatops(settings, bot_api) as h:
        h.db = database_url  # type: ignore[attr-defined]
        yield h


async def ghost_alert(h: Harness, account: EmulatedAccount, quantity: str = "10") -> StoredMessage:
    """A DB row ETHUSDT LONG ``quantity`` at 3,500 that ``account`` does not hold, reconciled: its one alert."""
    await insert_positions(h.db, [position_row(account, "ETHUSDT", "long", quantity, entry_price=Decimal("3500"))])  # type: ignore[attr-defined]
    await h.reconciler.check(RECONCILIATION)
    [alert] = await h.wait_alerts(1)
    return alert
