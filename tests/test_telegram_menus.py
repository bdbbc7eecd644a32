"""Menus, /help, /status and /positions by what a trader needs: each role is offered what it may do, money at
risk comes first, long tables are paged in place. End to end through the loopback Bot API and venues."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiogram.filters import Command

from app.telegram import ROUTERS
from bot.commands import BY_NAME
from emulator.telegram import StoredMessage, utf16_len
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
NEXT, PREV = "Next ▶", "◀ Prev"


@contextlib.asynccontextmanager
async def chatops(database_url, telegram, accounts) -> AsyncIterator[Harness]:
    async with running_chatops(telegram_settings(database_url, accounts, telegram), telegram) as h:
        yield h


def names(commands: list[dict]) -> list[str]:
    return [c["command"] for c in commands]


def table_rows(message: StoredMessage) -> list[list[str]]:
    """The /positions table of a message, without its header, each row split into cells."""
    return [line.split() for line in message.text.splitlines()[2:]]


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


# -- /positions: notionals, biggest first, paged ------------------------------------------------------------------


@pytest.fixture
async def long_table(database_url, new_account, telegram, exchange_emulator):
    """A Bybit account with 20 positions of distinct notionals (100 … 2,000 USDT), an inverse one worth 50 USD,
    and a DB-only row: 22 rows, two pages."""
    markets = exchange_emulator.add_synthetic_markets("bybit", 20)
    bybit = new_account("bybit")
    sizes = {market: Decimal((i * 7) % 20 + 1) * 10 for i, market in enumerate(markets)}  # 10 … 200, shuffled
    for market, size in sizes.items():
        bybit.set_position(market, "long", size, entry_price=Decimal(10), mark_price=Decimal(10))
    bybit.set_position("BTCUSD", "short", Decimal(50), mark_price=Decimal(64000))  # 50 USD, the least
    async with chatops(database_url, telegram, [bybit]) as h:
        await insert_positions(database_url, [row(bybit, "XRPUSDT", "long", "5")])
        h.bybit, h.sizes = bybit, sizes
        yield h


async def test_positions_are_sorted_by_notional_and_paged_in_place(long_table):
    h = long_table
    biggest_first = sorted(h.sizes, key=h.sizes.__getitem__, reverse=True)
    [table] = await h.say(VIEWER, f"/positions {h.bybit.name}", chat_id=ALERT_CHAT)
    title = table.text.splitlines()[0]
    assert title.startswith(f"{h.bybit.name} (bybit), read ") and title.endswith(" · page 1/2")
    assert table.text.splitlines()[1].split() == ["MARKET", "SIDE", "EXCHANGE", "DB", "NOTIONAL", "STOP"]
    rows = table_rows(table)
    assert [r[0] for r in rows] == biggest_first[:15]
    assert rows[0] == [biggest_first[0], "LONG", "200", "-", "2k", "USDT", "NONE", "≠"]
    assert table.button_texts == [NEXT]
    assert all(len(data.encode()) <= 64 for data in table.callback_data)
    lines = table.text.splitlines()[1:]
    assert len({line.index(line.split()[1]) for line in lines}) == 1, "columns line up"
    assert len({line.index("STOP" if n == 0 else "NONE") for n, line in enumerate(lines)}) == 1, "and the rest"

    reads = h.bybit.request_count("positions")
    await h.press(VIEWER, table, NEXT)
    await h.edited_to(table, "page 2/2")
    assert h.bybit.request_count("positions") > reads, "a fresh read for every page"
    rows = table_rows(table)
    assert [r[0] for r in rows] == [*biggest_first[15:], "BTCUSD", "XRPUSDT"], "unknown value last"
    assert rows[-3][:2] == [biggest_first[-1], "LONG"] and rows[-3][4:6] == ["100", "USDT"]
    assert rows[-2] == ["BTCUSD", "SHORT", "50", "-", "0.00078125", "BTC", "NONE", "≠"], "coins exact, by USD value"
    assert rows[-1] == ["XRPUSDT", "LONG", "-", "5", "-", "-", "≠"]
    assert table.button_texts == [PREV]

    h.bybit.set_position(biggest_first[-1], "long", Decimal(1000), entry_price=Decimal(10), mark_price=Decimal(10))
    await h.press(VIEWER, table, PREV)
    await h.edited_to(table, "page 1/2")
    assert table_rows(table)[0][:6] == [biggest_first[-1], "LONG", "1000", "-", "10k", "USDT"]
    assert table.button_texts == [NEXT]
    assert h.telegram.messages(ALERT_CHAT)[-1].message_id == table.message_id, "edited, never sent again"


async def test_a_short_table_has_no_page_buttons(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), mark_price=Decimal("65000"))
    async with chatops(database_url, telegram, [binance]) as h:
        [table] = await h.say(VIEWER, f"/positions {binance.name}")
    assert "page" not in table.text.splitlines()[0]
    assert not table.has_keyboard


async def test_a_very_long_db_symbol_is_clipped_so_its_page_fits(database_url, new_account, telegram):
    """A hostile 2,000-character DB symbol would widen every row of its page past Telegram's limit."""
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    symbol = "<X&Y>" * 400
    async with chatops(database_url, telegram, [binance]) as h:
        await insert_positions(database_url, [row(binance, symbol, "long", "1")])
        [table] = await h.say(VIEWER, f"/positions {binance.name}")
    assert table_rows(table)[-1] == [symbol[:39] + "…", "LONG", "-", "1", "-", "-", "≠"], "literally, and last"
    assert utf16_len(table.text) < 1000
    assert [c.status for c in telegram.calls if c.method == "sendMessage"] == [200]


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        ("p:1:0", "That account is no longer in the configuration; send /positions again."),
        ("p:0:2", "There is no page 3 now (2 page(s)); nothing changed. Send /positions again."),
        ("p:0:-1", "This button is not valid (any more)."),
        ("p:-1:0", "This button is not valid (any more)."),
        ("p:x:1", "This button is not valid (any more)."),
        ("p:0:1:9", "This button is not valid (any more)."),
    ],
)
async def test_forged_page_data_is_refused_and_changes_nothing(long_table, data, answer):
    h = long_table
    [table] = await h.say(VIEWER, f"/positions {h.bybit.name}", chat_id=ALERT_CHAT)
    shown = (table.text, table.callback_data)
    pressed = await h.press(VIEWER, table, data=data)
    assert (pressed.params["text"], pressed.params.get("show_alert")) == (answer, True)
    await h.settled()
    assert (table.text, table.callback_data) == shown
    assert not [c for c in h.telegram.calls if c.method == "editMessageText"]


async def test_strangers_cannot_turn_pages(long_table):
    h = long_table
    [table] = await h.say(VIEWER, f"/positions {h.bybit.name}", chat_id=ALERT_CHAT)
    pressed = await h.press(STRANGER, table, NEXT)
    assert pressed.params["text"] == f"Not allowed. Your Telegram user id is {STRANGER}."
    await h.settled()
    assert table.text.splitlines()[0].endswith("page 1/2")


async def test_an_operator_turns_pages_too(long_table):
    h = long_table
    [table] = await h.say(OPERATOR, f"/positions {h.bybit.name}", chat_id=ALERT_CHAT)
    await h.press(OPERATOR, table, NEXT)
    await h.edited_to(table, "page 2/2")


# -- one menu per chat, topics, /whoami in a topic -----------------------------------------------------------------


def menu_calls(telegram, chat_id: int) -> list[list[str]]:
    """Every command list setMyCommands was asked to store for this chat, in order."""
    return [
        names(call.params["commands"])
        for call in telegram.calls
        if call.method == "setMyCommands" and (call.params.get("scope") or {}).get("chat_id") in (chat_id, str(chat_id))
    ]


async def test_the_one_traders_own_chat_gets_one_operator_menu(database_url, new_account, telegram, caplog):
    """The usual one-trader setup: the operator's own id is also an alert chat, once as a number and once as a
    string. The chat gets the operator's menu once, never a viewer's menu over it."""
    alert_chats = [OPERATOR, str(OPERATOR), ALERT_CHAT]
    settings = telegram_settings(
        database_url, [new_account("binance")], telegram, telegram={"alert_chat_ids": alert_chats}
    )
    with caplog.at_level(logging.WARNING, logger="app.telegram"):
        async with running_chatops(settings, telegram):
            assert menu_calls(telegram, OPERATOR) == [OPERATOR_COMMANDS]
            assert names(telegram.commands_for(OPERATOR, OPERATOR)) == OPERATOR_COMMANDS
            assert menu_calls(telegram, ALERT_CHAT) == [VIEWER_COMMANDS]
    assert "no command menu" not in caplog.text


async def test_a_forum_topic_gets_its_groups_menu(database_url, new_account, telegram, caplog):
    forum = -1009990002
    telegram.add_chat(forum, "supergroup", title="desk", is_forum=True)
    thread = telegram.add_topic(forum, "reconbot")
    topic = f"{forum}:{thread}"
    settings = telegram_settings(database_url, [new_account("binance")], telegram, telegram={"alert_chat_ids": [topic]})
    with caplog.at_level(logging.WARNING, logger="app.telegram"):
        async with running_chatops(settings, telegram):
            assert names(telegram.commands_for(VIEWER, forum)) == VIEWER_COMMANDS
            assert menu_calls(telegram, forum) == [VIEWER_COMMANDS]
    assert "no command menu" not in caplog.text, "the topic's address is never passed as a chat id"


async def test_whoami_in_a_topic_prints_the_address_to_paste(database_url, new_account, telegram):
    forum = -1009990003
    telegram.add_chat(forum, "supergroup", title="desk", is_forum=True)
    thread = telegram.add_topic(forum, "alerts")
    async with chatops(database_url, telegram, [new_account("binance")]):
        telegram.user_sends(STRANGER, "/whoami", chat_id=forum, chat_type="supergroup", thread_id=thread)
        await telegram.wait_until(lambda: any(m.from_bot for m in telegram.messages(forum)))
    [reply] = [m for m in telegram.messages(forum) if m.from_bot]
    assert reply.thread_id == thread, "answered in the topic"
    assert f"This topic's address: {forum}:{thread}" in reply.text
    assert f'alert_chat_ids: ["{forum}:{thread}"]' in reply.text, "what to paste into the config"
