"""Authorisation for every message and button press, and a record of the updates being handled.

The outer middleware runs before any filter: it works out the user's role from their *user* id (in private
chats and groups alike) and turns strangers away with one polite refusal. The inner middleware runs once a
handler is chosen and enforces the role the handler declares in its ``role`` flag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from bot import texts
from bot.flood import interactive
from bot.replies import answer_privately
from bot.roles import Role, role_of
from services.settings import TelegramSettings

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
OPEN_COMMANDS = ("/whoami",)


def _command(message: Message) -> str | None:
    text = message.text or ""
    if not text.startswith("/"):
        return None
    return text.split(maxsplit=1)[0].split("@", 1)[0].lower()


class AuthMiddleware(BaseMiddleware):
    """Outer: strangers get one refusal naming their user id (at most every ``refusal_interval_s``), and nothing
    else; every attempt is logged."""

    def __init__(self, settings: TelegramSettings, refusal_interval_s: float = 600.0):
        self.settings = settings
        self.refusal_interval_s = refusal_interval_s
        self._refused_at: dict[int, float] = {}

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        role = role_of(user.id if user else None, self.settings)
        data["role"] = role
        if role is not Role.STRANGER:
            return await handler(event, data)
        if isinstance(event, Message) and _command(event) in OPEN_COMMANDS:
            return await handler(event, data)
        user_id = user.id if user else None
        chat = data.get("event_chat")
        log.warning(
            "refused %s from user %s (@%s) in chat %s",
            type(event).__name__,
            user_id,
            user.username if user else None,
            chat.id if chat else None,
        )
        if isinstance(event, CallbackQuery):
            await event.answer(f"Not allowed. Your Telegram user id is {user_id}.", show_alert=True)
        elif isinstance(event, Message) and (event.chat.type == "private" or _command(event)):
            now = time.monotonic()
            if user_id is not None and now - self._refused_at.get(user_id, -1e9) >= self.refusal_interval_s:
                self._refused_at[user_id] = now
                await answer_privately(event, texts.refusal(user_id))
        return None


class RoleMiddleware(BaseMiddleware):
    """Inner: a handler flagged ``role=Role.OPERATOR`` refuses viewers with a short explanation."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        required = get_flag(data, "role", default=Role.OPERATOR)
        role: Role = data.get("role", Role.STRANGER)
        if role >= required:
            return await handler(event, data)
        user = data.get("event_from_user")
        log.warning(
            "user %s (%s) tried an action that needs %s", user.id if user else None, role.name, Role(required).name
        )
        message = "Only operators can do this; you can look but not change anything."
        if isinstance(event, CallbackQuery):
            await event.answer(message, show_alert=True)
        elif isinstance(event, Message):
            await answer_privately(event, message)
        return None


class PressesFirst(BaseMiddleware):
    """Inner, on button presses: whatever a press sends — its confirmation prompt, the edit of the pressed
    message — goes first in its chat's lane (``bot.flood``), ahead of edits and reminders queued there, because
    an operator is waiting for it. A handler that shows many findings opts back into the background."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        with interactive():
            return await handler(event, data)


class InFlight(BaseMiddleware):
    """Outer, on every update: remembers the tasks handling updates right now, so a graceful stop can let them
    finish their replies (through aiogram's public middleware API, not its private task set)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        task = asyncio.current_task()
        if task is None:
            return await handler(event, data)
        self.tasks.add(task)
        try:
            return await handler(event, data)
        finally:
            self.tasks.discard(task)
