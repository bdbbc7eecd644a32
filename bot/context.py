"""What handlers need, handed to them by aiogram as workflow data (``Dispatcher(ctx=...)``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.keyboards import ChatButtons
from services.outbox import Destination
from services.reconciler import Reconciler
from services.runtime import Runtime
from services.settings import Settings
from services.shards import ShardStatus


@dataclass
class BotContext:
    settings: Settings
    runtime: Runtime
    reconciler: Reconciler
    next_runs: Callable[[], dict[str, datetime | None]] = field(default=lambda: {})
    shards: Callable[[], Awaitable[ShardStatus]] | None = None  # the replicas sharing the accounts

    @property
    def buttons(self) -> ChatButtons:
        """The keyboards each chat's copies get (bot.keyboards.ChatButtons)."""
        return ChatButtons.of(self.settings)

    @property
    def destinations(self) -> list[Destination]:
        return self.reconciler.destinations

    def exchange_orders_allowed(self, account: str) -> bool:
        try:
            return self.settings.account(account).allow_exchange_orders
        except KeyError:
            return False
