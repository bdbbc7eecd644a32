"""Who may do what: operators approve fixes, viewers look, everyone else is refused."""

from __future__ import annotations

from enum import IntEnum

from services.settings import TelegramSettings


class Role(IntEnum):
    """Ordered, so a handler that needs VIEWER also admits an OPERATOR."""

    STRANGER = 0
    VIEWER = 1
    OPERATOR = 2


def role_of(user_id: int | None, settings: TelegramSettings) -> Role:
    if user_id is None:
        return Role.STRANGER
    if user_id in settings.operators:
        return Role.OPERATOR
    if user_id in settings.viewers:
        return Role.VIEWER
    return Role.STRANGER


def actor_name(user_id: int, username: str | None) -> str:
    """How a Telegram user appears in the audit trail and on edited alerts."""
    return f"@{username} ({user_id})" if username else f"user {user_id}"
