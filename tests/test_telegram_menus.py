"""Menus, /help and /status by what a trader needs: each role is offered what it may do, money at risk comes
first. End to end through the loopback Bot API and venues."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

from aiogram.filters import Command

from app.telegram import ROUTERS
from bot.commands import BY_NAME
from tests.chatops import (
    ALERT_CHAT,
    OPERATOR,
    OPERATOR_2,
    STRANGER,
    VIEWER,
    Harness,
    running_chatops,
    telegram_settings,
)
from tests.helpers import insert_positions
from tests.helpers import position_row as row

PUBLIC = ["start", "help", "whoami"]
VIEWER_COMMANDS = ["status", "positions", "findings", "scan", "reconcile", "start", "help", "whoami"]
OPERATOR_COMMANDS = ["status", "positions", "findings", "scan", "reconcile", "closeghost", "mute", "start", "help"]
OPERATOR_COMMANDS += ["whoami"]


@contextlib.asynccontextmanager
async def chatops(database_url, telegram, accounts) -> AsyncIterator[Harness]:
    async with running_chatops(telegram_settings(database_url, accounts, telegram), telegram) as h:
        yield h


def names(commands: list[dict]) -> list[str]:
    return [c["command"] for c in commands]


# -- one table of commands --------------------------------------------------------------------------------------


def registered_commands() -> dict[str, object]:
    """Every command a router answers, with the role its handler is flagged with."""
    found: dict[str, object] = {}
    for module in ROUTERS:
        for handler in module.create_router().message.handlers:
            for command_filter in (f.callback for f in handler.filters or () if isinstance(f.callback, Command)):
                for name in command_filter.commands:
                    found[str(name)] = handler.flags.get("role")
    return found


def test_every_registered_command_is_in_the_table_with_its_role():
    registered = registered_commands()
    assert registered, "the routers answer commands"
    for name, role in registered.items():
        assert name in BY_NAME, f"/{name} is answered but not in bot/commands.py"
        assert role == BY_NAME[name].role, f"/{name}: the router and the table disagree on who may use it"
    assert set(BY_NAME) - set(registered) <= {"mute"}, "every command in the table is answered (/mute: on main)"


# -- menus by role ------------------------------------------------------------------------------------------------


async def test_each_role_is_offered_the_commands_it_may_use(database_url, new_account, telegram):
    async with chatops(database_url, telegram, [new_account("binance")]):
        assert names(telegram.commands_for(STRANGER, STRANGER)) == PUBLIC
        assert names(telegram.commands_for(VIEWER, VIEWER)) == VIEWER_COMMANDS
        assert names(telegram.commands_for(OPERATOR, OPERATOR)) == OPERATOR_COMMANDS
        assert names(telegram.commands_for(VIEWER, ALERT_CHAT)) == VIEWER_COMMANDS, "viewers look in alert chats"
        assert names(telegram.commands_for(STRANGER, ALERT_CHAT)) == VIEWER_COMMANDS
        menu = {c["command"]: c["description"] for c in telegram.commands_for(OPERATOR, OPERATOR)}
        assert menu["closeghost"] == "mark a ghost closed: /closeghost <position id>"
        assert all(0 < len(text) <= 256 for text in menu.values())


async def test_a_chat_telegram_does_not_know_is_skipped_with_one_warning(
    database_url, new_account, telegram, monkeypatch, caplog
):
    """A viewer who never opened the bot: Telegram says "chat not found"; everyone else still gets a menu."""
    monkeypatch.setattr(telegram, "strict_chats", True)
    telegram.add_chat(OPERATOR, "private")
    telegram.add_chat(OPERATOR_2, "private")
    telegram.add_chat(ALERT_CHAT, "supergroup")
    with caplog.at_level(logging.WARNING, logger="app.telegram"):
        async with chatops(database_url, telegram, [new_account("binance")]) as h:
            assert names(telegram.commands_for(OPERATOR, OPERATOR)) == OPERATOR_COMMANDS
            assert names(telegram.commands_for(VIEWER, ALERT_CHAT)) == VIEWER_COMMANDS
            assert names(telegram.commands_for(VIEWER, VIEWER)) == PUBLIC
            [reply] = await h.say(OPERATOR, "/whoami")
            assert reply.text.startswith(f"Your user id: {OPERATOR}"), "the bot runs on"
    skipped = [r.getMessage() for r in caplog.records if "no command menu" in r.getMessage()]
    assert len(skipped) == 1 and f"chat {VIEWER}" in skipped[0] and "chat not found" in skipped[0], skipped


# -- /help by role ------------------------------------------------------------------------------------------------


async def test_help_lists_only_what_the_asker_may_do(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        [viewer_help] = await h.say(VIEWER, "/help")
        [operator_help] = await h.say(OPERATOR, "/help")
    for reply, expected in ((viewer_help, VIEWER_COMMANDS), (operator_help, OPERATOR_COMMANDS)):
        assert f"Watching: {binance.name}." in reply.text
        listed = [line.split(" — ")[0] for line in reply.text.splitlines() if line.startswith("/")]
        assert listed == [f"/{name}" for name in expected]
    assert "/status — accounts, last checks, open findings and the money at stake" in viewer_help.text
    assert "/closeghost" not in viewer_help.text and "/mute" not in viewer_help.text


# -- /status: money at risk by kind -------------------------------------------------------------------------------


async def test_status_shows_the_exposure_at_risk_by_kind(database_url, new_account, telegram):
    binance, bybit = new_account("binance"), new_account("bybit")
    binance.set_position("BTCUSDT", "long", Decimal("10"), mark_price=Decimal("65000"))  # orphan, 650k
    binance.set_position("ETHUSDT", "long", Decimal("150"), mark_price=Decimal("3700"))  # orphan, 555k
    binance.set_position("SOLUSDT", "long", Decimal("300"), mark_price=Decimal("146.75"))  # tracked, no stop: 44k
    async with chatops(database_url, telegram, [binance, bybit]) as h:
        await insert_positions(
            database_url,
            [
                row(binance, "SOLUSDT", "long", "300"),
                row(bybit, "BTCUSDT", "long", "0.2", entry_price=Decimal("60000")),  # ghost, 12k
                row(bybit, "ETHUSDT", "short", "2"),  # ghost of unknown value: no price anywhere
            ],
        )
        await h.reconciler.check()
        [reply] = await h.say(VIEWER, "/status")
    [line] = [line for line in reply.text.splitlines() if line.startswith("Open findings: ")]
    assert line == (
        "Open findings: 2 orphans (1.2M USDT), 1 unprotected position (44k USDT), 2 ghosts (12k USDT; 1 value unknown)"
    )
    assert reply.text.splitlines()[:2] == ["reconbot status", "Accounts:"], "the rest of /status stays"


async def test_status_says_when_no_value_is_known(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        await insert_positions(database_url, [row(binance, "BTCUSDT", "long", "1")])
        await h.reconciler.check()
        [reply] = await h.say(VIEWER, "/status")
    assert "Open findings: 1 ghost (value unknown)" in reply.text.splitlines()
