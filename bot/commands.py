"""The one table of commands: who may use each and what it does, in one line.

Routers take each command's ``role`` flag from here, menus (``set_my_commands`` per scope) and /help are drawn
from it, so what a person is offered, what /help lists and what a handler admits cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault

from bot.roles import Role
from services.settings import TelegramSettings


@dataclass(frozen=True, slots=True)
class CommandInfo:
    name: str
    role: Role  # the least role that may use it
    description: str  # one line, shown in the menu and by /help
    public: bool = False  # in the menu of anyone who opens the bot


COMMANDS: tuple[CommandInfo, ...] = (
    CommandInfo("status", Role.VIEWER, "accounts, last checks, open findings and the money at stake"),
    CommandInfo("positions", Role.VIEWER, "exchange vs DB with notionals, biggest first: /positions [account]"),
    CommandInfo("findings", Role.VIEWER, "open findings with their buttons"),
    CommandInfo("scan", Role.VIEWER, "look for orphans now"),
    CommandInfo("reconcile", Role.VIEWER, "look for ghosts and size mismatches now"),
    CommandInfo("closeghost", Role.OPERATOR, "mark a ghost closed: /closeghost <position id>"),
    CommandInfo("mute", Role.OPERATOR, "silence this chat's alerts for a while: /mute 1h"),
    CommandInfo("start", Role.VIEWER, "what this bot does and what you may do", public=True),
    CommandInfo("help", Role.VIEWER, "what this bot does and what you may do", public=True),
    CommandInfo("whoami", Role.STRANGER, "your Telegram user id and this chat's id", public=True),
)
BY_NAME = {command.name: command for command in COMMANDS}

Scope = BotCommandScopeDefault | BotCommandScopeChat


def role_flag(name: str) -> dict[str, Role]:
    """The handler flag for a command, from the table; a command missing from it fails at start-up."""
    return {"role": BY_NAME[name].role}


def commands_for(role: Role) -> tuple[CommandInfo, ...]:
    return tuple(command for command in COMMANDS if command.role <= role)


def _menu(commands: tuple[CommandInfo, ...]) -> list[BotCommand]:
    return [BotCommand(command=c.name, description=c.description) for c in commands]


def chat_roles(settings: TelegramSettings) -> dict[int, Role]:
    """Which menu each configured chat gets: a person's private chat their role, an alert chat at least the
    viewer's (viewers look there); a chat named twice gets the larger. Chats are keyed by their numeric id, so
    ``5001``, ``"5001"`` and a topic ``"-100…:42"`` of a group are one chat: Telegram keeps one menu per chat
    (a topic has none of its own), and a second call for the same chat would replace the first."""
    roles: dict[int, Role] = {}
    for chat_id, role in (
        *((user, Role.OPERATOR) for user in settings.operators),
        *((user, Role.VIEWER) for user in settings.viewers),
        *((chat, Role.VIEWER) for chat in settings.alert_chats),
    ):
        roles[chat_id] = max(role, roles.get(chat_id, Role.STRANGER))
    return roles


def menus(settings: TelegramSettings) -> list[tuple[Scope, list[BotCommand]]]:
    """Every menu to register: the default scope's first, then one per configured chat."""
    default = _menu(tuple(c for c in COMMANDS if c.public))
    chats = chat_roles(settings).items()
    return [
        (BotCommandScopeDefault(), default),
        *((BotCommandScopeChat(chat_id=chat), _menu(commands_for(role))) for chat, role in chats),
    ]
