"""One compact answer: /findings, /scan, /reconcile and a digest's Show all answer with one silent message, a
table of what is open (kind, symbol, side, account, money, age, state), biggest first, paged in place with a
Refresh, and numbered buttons that open one finding's card. New risk still rings and goes first. The real bot
through the loopback Bot API, real venues (emulated), real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from emulator.exchange import EmulatedAccount
from emulator.telegram import StoredMessage
from services.model import SCAN_KINDS, FindingState
from tests.chatops import (
    ALERT_CHAT,
    OPERATOR,
    STRANGER,
    VIEWER,
    Harness,
    findings_rows,
    running_chatops,
    telegram_settings,
)
from tests.helpers import insert_positions
from tests.helpers import position_row as row

MARKETS = 17
NEXT, PREV, REFRESH = "Next ▶", "◀ Prev", "⟳ Refresh"


@dataclass
class Desk:
    h: Harness
    bybit: EmulatedAccount
    markets: list[str]
    snoozed: set[str]
    database_url: str


@contextlib.asynccontextmanager
async def desk_of(database_url, new_account, telegram, exchange_emulator, *, alert_chats) -> AsyncIterator[Desk]:
    """17 orphans of distinct value on one Bybit account (10 × 10 USDT up to 170 × 10), two of them snoozed."""
    markets = exchange_emulator.add_synthetic_markets("bybit", MARKETS)
    bybit = new_account("bybit")
    for n, market in enumerate(markets, 1):
        bybit.set_position(market, "long", Decimal(n * 10), entry_price=Decimal(10), mark_price=Decimal(10))
    settings = telegram_settings(database_url, [bybit], telegram, telegram={"alert_chat_ids": alert_chats})
    async with running_chatops(settings, telegram) as h:
        filed = await h.reconciler.check(SCAN_KINDS)
        assert len(filed.new) == MARKETS
        digest = f"{MARKETS} new findings"
        await h.telegram.wait_until(lambda: any(digest in m.text for m in h.telegram.messages(alert_chats[0])))
        snoozed = set()
        for finding in sorted(filed.new, key=lambda f: f.market)[:2]:  # the two smallest
            await h.runtime.findings.set_state(
                finding.id, FindingState.SNOOZED, by="@op", destinations=h.reconciler.destinations
            )
            snoozed.add(finding.market)
        await h.settled()
        yield Desk(h, bybit, markets, snoozed, database_url)


@pytest.fixture
async def desk(database_url, new_account, telegram, exchange_emulator) -> AsyncIterator[Desk]:
    async with desk_of(database_url, new_account, telegram, exchange_emulator, alert_chats=[ALERT_CHAT]) as d:
        yield d


def usd(cell: str) -> Decimal:
    return Decimal(cell.removesuffix("k")) * (1000 if cell.endswith("k") else 1)


async def replies_to(h: Harness, user: int, text: str, chat: int, settle: float = 1.0) -> list[StoredMessage]:
    """Every bot message in the chat after the user's command, once the bot is quiet again."""
    before = len(h.telegram.messages(chat))
    chat_type = "private" if chat > 0 else "supergroup"
    h.telegram.user_sends(user, text, chat_id=chat, chat_type=chat_type, username=f"user{user}")
    await h.telegram.wait_until(lambda: len(h.telegram.messages(chat)) > before, timeout=15)
    await h.settled()
    await asyncio.sleep(settle)
    return h.telegram.messages(chat)[before:]


# -- /findings ---------------------------------------------------------------------------------------------------


async def test_findings_is_one_silent_table_biggest_first_paged_in_place(desk):
    h = desk.h
    [table] = await replies_to(h, VIEWER, "/findings", VIEWER)
    assert table.silent is True, "a reply to a command never rings"
    heading = table.text.splitlines()[0]
    assert heading.startswith(f"📋 {MARKETS} open findings · ") and heading.endswith(" at risk")
    assert "2 snoozed or acknowledged" in table.text
    shown = findings_rows(table)
    assert [r[0] for r in shown] == [str(n) for n in range(1, 11)], "ten a page, numbered"
    assert [r[2] for r in shown] == [desk.markets[MARKETS - n] for n in range(1, 11)], "biggest first"
    assert shown[0][1:3] == ["orphan", desk.markets[-1]] and shown[0][3] == "LONG"
    assert [usd(r[4]) for r in shown] == sorted((usd(r[4]) for r in shown), reverse=True)
    assert all(r[-1] == "open" for r in shown)
    assert "Page 1/2" in table.text
    assert table.button_texts == [*(str(n) for n in range(1, 11)), REFRESH, NEXT]
    assert all(len(data.encode()) <= 64 for data in table.callback_data)

    await h.press(VIEWER, table, NEXT)
    page = await h.edited_to(table, "Page 2/2")
    shown = findings_rows(page)
    assert [r[0] for r in shown] == [str(n) for n in range(11, 18)]
    assert {r[2] for r in shown if r[-1] == "snoozed"} == desk.snoozed, "snoozed ones are marked, not hidden"
    assert page.button_texts == [*(str(n) for n in range(11, 18)), PREV, REFRESH]
    assert h.telegram.messages(VIEWER)[-1].message_id == table.message_id, "edited, never sent again"

    desk.bybit.remove_position(desk.markets[0], "long")  # the smallest resolves
    await h.reconciler.check(SCAN_KINDS)
    await h.press(VIEWER, table, REFRESH)
    refreshed = await h.edited_to(table, f"{MARKETS - 1} open findings")
    assert [r[0] for r in findings_rows(refreshed)] == [str(n) for n in range(11, 17)], "the same page, as it is now"
    assert desk.markets[0] not in refreshed.text


async def test_a_number_opens_that_findings_card(desk):
    h = desk.h
    [table] = await replies_to(h, VIEWER, "/findings", VIEWER)
    third = findings_rows(table)[2][2]
    [card] = await asyncio.wait_for(press_and_collect(h, VIEWER, table, "3"), 15)
    assert card.silent is True
    assert f"{third} LONG" in card.text and card.text.startswith(("🔴", "🟠", "🔵"))
    assert card.button_texts == ["Details"], "with its own buttons, those a viewer's chat may press"
    [finding] = [f for f in await h.runtime.findings.live() if f.market == third]
    assert await h.runtime.findings.is_alert_message(VIEWER, card.message_id, finding.id), "kept true by edits"
    [mine] = await replies_to(h, OPERATOR, "/findings", OPERATOR)
    [operators] = await asyncio.wait_for(press_and_collect(h, OPERATOR, mine, "3"), 15)
    assert f"{third} LONG" in operators.text
    assert operators.button_texts == ["Adopt into DB", "Snooze 1h", "Details"], "an operator's card: every button"
    desk.bybit.remove_position(third, "long")
    await h.reconciler.check(SCAN_KINDS)
    await h.edited_to(card, "Resolved")


async def press_and_collect(h: Harness, user: int, message: StoredMessage, text: str) -> list[StoredMessage]:
    before = len(h.telegram.messages(message.chat_id))
    await h.press(user, message, text)
    await h.telegram.wait_until(lambda: len(h.telegram.messages(message.chat_id)) > before)
    await h.settled()
    return h.telegram.messages(message.chat_id)[before:]


async def test_a_table_in_a_forum_topic_opens_cards_in_that_topic(desk):
    h = desk.h
    forum = -1009990004
    h.telegram.add_chat(forum, "supergroup", title="desk", is_forum=True)
    thread = h.telegram.add_topic(forum, "reconbot")
    h.telegram.user_sends(VIEWER, "/findings", chat_id=forum, chat_type="supergroup", thread_id=thread)
    table = await h.message_where(forum, lambda m: m.from_bot and "open findings" in m.text)
    assert table.thread_id == thread
    [card] = await press_and_collect(h, VIEWER, table, "1")
    assert card.thread_id == thread


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        ("t:f:1:0:0:0:0:0", "There is no page 2 now (1 page(s)); nothing changed. Send /findings again."),
        ("t:x:0:0:0:0:0:0", "This button is not valid (any more)."),
        ("t:f:-1:0:0:0:0:0", "This button is not valid (any more)."),
        ("t:d:0:0:0:0:0:999", "This digest is no longer known."),
        ("o:999999", "This finding is no longer known."),
        ("o:0", "This button is not valid (any more)."),
    ],
)
async def test_forged_table_buttons_change_nothing(database_url, new_account, telegram, data, answer):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    async with running_chatops(telegram_settings(database_url, [binance], telegram), telegram) as h:
        await h.reconciler.check(SCAN_KINDS)
        [table] = await h.say(VIEWER, "/findings")
        shown = (table.text, table.callback_data)
        pressed = await h.press(VIEWER, table, data=data)
        assert (pressed.params["text"], pressed.params.get("show_alert")) == (answer, True)
        await h.settled()
        assert (table.text, table.callback_data) == shown
        assert len(h.telegram.messages(VIEWER)) == 1


async def test_strangers_cannot_page_or_open(desk):
    h = desk.h
    [table] = await replies_to(h, VIEWER, "/findings", VIEWER)
    for text in (NEXT, "1"):
        pressed = await h.press(STRANGER, table, text)
        assert pressed.params["text"] == f"Not allowed. Your Telegram user id is {STRANGER}."
    await h.settled()
    assert len(h.telegram.messages(VIEWER)) == 1 and "Page 1/2" in table.text


# -- /scan and /reconcile ----------------------------------------------------------------------------------------


async def test_scan_answers_with_one_table_and_marks_what_is_new(desk):
    h = desk.h
    new = "SOLUSDT"
    desk.bybit.set_position(new, "short", Decimal("1000"), entry_price=Decimal(150), mark_price=Decimal(150))
    [answer] = await replies_to(h, VIEWER, "/scan", VIEWER)
    assert answer.silent is True and answer.edited, "“Checking…” becomes the answer: one message"
    lines = answer.text.splitlines()
    assert lines[0].startswith("🔎 Orphan scan at ") and lines[0].endswith(" · 1 account checked")
    assert f"Found now: {MARKETS + 1} (1 new) · still open: {MARKETS + 1}" in answer.text
    first = findings_rows(answer)[0]
    assert first[1:4] == ["orphan", new, "SHORT"] and first[-1] == "NEW", "150k: the biggest, and new"
    assert {r[2] for r in findings_rows(answer) if r[-1] == "snoozed"} <= desk.snoozed
    assert not any(m.has_keyboard and "Orphan position" in m.text for m in h.telegram.messages(VIEWER)), (
        "no cards: snoozed ones are never re-sent"
    )
    assert "All clear" not in answer.text

    await h.press(VIEWER, answer, NEXT)
    page = await h.edited_to(answer, "Page 2/2")
    assert page.text.splitlines()[:2] == lines[:2], "a page turn keeps what the check found"
    assert f"Found now: {MARKETS + 1} (1 new)" in page.text


async def test_reconcile_says_what_it_found_now_and_what_is_still_open(desk):
    h = desk.h
    [answer] = await replies_to(h, VIEWER, "/reconcile", VIEWER)
    assert answer.text.splitlines()[0].startswith("🔎 Reconciliation at ")
    assert f"Found now: nothing · still open: {MARKETS}" in answer.text
    assert "All clear" not in answer.text, f"{MARKETS} findings are open"
    assert len(findings_rows(answer)) == 10

    await insert_positions(desk.database_url, [row(desk.bybit, "ETHUSDT", "long", "2", entry_price=Decimal(3500))])
    [answer] = await replies_to(h, VIEWER, "/reconcile", VIEWER)
    assert f"Found now: 1 (1 new) · still open: {MARKETS + 1}" in answer.text
    ghost = next(r for r in findings_rows(answer) if r[1] == "ghost")
    assert ghost[2:4] == ["ETHUSDT", "LONG"] and ghost[-1] == "NEW"


async def test_reconcile_is_all_clear_only_when_nothing_is_open(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    async with running_chatops(telegram_settings(database_url, [binance], telegram), telegram) as h:
        await insert_positions(database_url, [row(binance, "BTCUSDT", "long", "1")])
        [answer] = await h.say(VIEWER, "/reconcile")
        await h.settled()
    assert answer.text.splitlines()[-1] == "✅ All clear: nothing found, nothing open."
    assert not answer.has_keyboard and len(telegram.messages(VIEWER)) == 1


# -- digests and reminders ---------------------------------------------------------------------------------------


async def test_show_all_answers_with_one_table_of_the_digest(desk):
    h = desk.h
    [digest] = h.alerts()
    assert digest.text.splitlines()[0].startswith(f"🟠 {MARKETS} new findings")
    [table] = await press_and_collect(h, VIEWER, digest, "Show all")
    assert table.silent is True
    assert table.text.splitlines()[0].startswith(f"📋 {MARKETS} findings of this digest")
    assert [r[2] for r in findings_rows(table)] == [desk.markets[MARKETS - n] for n in range(1, 11)]
    await h.press(VIEWER, table, NEXT)
    await h.edited_to(table, "Page 2/2")
    assert len(h.alerts()) == 2, "one table, not a card per finding"


async def test_a_reminder_carries_open_buttons(database_url, new_account, telegram):
    from datetime import timedelta

    from services.announcements import AlertPolicy

    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    async with running_chatops(telegram_settings(database_url, [binance], telegram), telegram) as h:
        await insert_positions(database_url, [row(binance, "ETHUSDT", "long", "1")])
        await h.reconciler.check()
        await h.wait_alerts(2)
        h.reconciler.policy = AlertPolicy(remind_after=timedelta(0))
        await h.reconciler.check()
        reminder = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("⏰"))
        assert reminder.silent is True and reminder.button_texts == ["1", "2"]
        [card] = await press_and_collect(h, VIEWER, reminder, "1")
    assert "Orphan position" in card.text and "BTCUSDT LONG" in card.text


# -- new risk first ----------------------------------------------------------------------------------------------


async def test_a_new_critical_orphan_reaches_the_one_traders_chat_before_anything_old(
    database_url, new_account, telegram, exchange_emulator
):
    """The usual one-trader setup: the operator's own chat is the alert chat. While /findings is answered, a new
    19.8k orphan is filed: it rings at once, and no copy of an old finding reaches the chat at all."""
    async with desk_of(database_url, new_account, telegram, exchange_emulator, alert_chats=[OPERATOR]) as d:
        h = d.h
        before = len(h.telegram.messages(OPERATOR))
        asked = time.monotonic()
        h.telegram.user_sends(OPERATOR, "/findings", username=f"user{OPERATOR}")
        d.bybit.set_position("BTCUSDT", "long", Decimal("0.3"), entry_price=Decimal(66000), mark_price=Decimal(66000))
        filed_at = time.monotonic()
        await h.reconciler.check(SCAN_KINDS)
        await h.telegram.wait_until(lambda: len(h.telegram.messages(OPERATOR)) >= before + 2, timeout=15)
        await h.settled()
        await asyncio.sleep(1.5)
        after = h.telegram.messages(OPERATOR)[before:]
    alert = next(m for m in after if "Orphan position" in m.text)
    table = next(m for m in after if "open findings" in m.text)
    assert len(after) == 2, [m.text.splitlines()[0] for m in after]
    assert alert.text.startswith("🔴 Orphan position · 19,800.00 USDT") and alert.silent is False
    assert alert.sent_at - filed_at < 2.0, "new risk is not held behind an answer"
    assert table.sent_at - asked < 2.0, "the answer is one message, not a minute of cards"
    assert table.silent is True
