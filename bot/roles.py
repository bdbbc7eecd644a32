"""Who may do what: operators approve fixes, viewers look, everyone else is refused."""

from __future__ import annotations

from enum import IntEnum

from aiogram.types import User

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


def reader_of(chat_id: int, settings: TelegramSettings) -> Role:
    """Who reads a chat's copy of an alert, which decides its buttons. A private chat (a positive id) is one
    user's: their role. A group's members share one message and cannot be told apart on it, so a group gets an
    operator's buttons when operators are configured (they act there; a viewer's press is refused to that viewer
    alone) and a viewer's buttons otherwise."""
    if chat_id > 0:
        return role_of(chat_id, settings)
    return Role.OPERATOR if settings.operators else Role.VIEWER


def display_name(user_id: int, username: str | None, first_name: str | None = None) -> str:
    """How a Telegram user appears to traders, on edited alerts and questions: ``@trader``, else their first
    name; the id only when Telegram gave neither."""
    if username:
        return f"@{username}"
    return first_name.strip() if first_name and first_name.strip() else f"user {user_id}"


def actor_name(user_id: int, username: str | None, first_name: str | None = None) -> str:
    """How a Telegram user appears in the records (the audit trail, a confirmation, a mute): the name with the id,
    which stays."""
    shown = display_name(user_id, username, first_name)
    return shown if shown == f"user {user_id}" else f"{shown} ({user_id})"


def name_of(user: User) -> str:
    """``display_name`` of the user who pressed or wrote."""
    return display_name(user.id, user.username, user.first_name)


def record_of(user: User) -> str:
    """``actor_name`` of the user who pressed or wrote."""
    return actor_name(user.id, user.username, user.first_name)
