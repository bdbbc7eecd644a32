"""Alerts as a trader on a phone gets them, through the real bot and the loopback Bot API: money first, severity
by exposure, a burst as one digest, one quiet reminder, sound only for new risk, per-kind notify, Acknowledge
and its undo, and forum topics (/mute: tests/test_mute.py)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

from services.announcements import AlertPolicy
from services.model import RECONCILIATION, SCAN_KINDS, FindingKind, FindingState
from tests.chatops import ALERT_CHAT, OPERATOR, VIEWER, Harness, findings_rows, running_chatops, telegram_settings
from tests.helpers import insert_positions
from tests.helpers import position_row as row


@contextlib.asynccontextmanager
async def chatops(database_url, bot_api, accounts, **overrides) -> AsyncIterator[Harness]:
    settings = telegram_settings(database_url, accounts, bot_api, **overrides)
    async with running_chatops(settings, bot_api) as h:
        h.db = database_url
        yield h


# -- money first -------------------------------------------------------------------------------------------------


async def test_an_orphan_alert_leads_with_the_money_at_stake(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position(
        "BTCUSDT", "long", Decimal("0.5"), entry_price=Decimal("65825"), mark_price=Decimal("65000"), leverage=20
    )
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
    first, where, *rest = alert.text.splitlines()
    assert first == "🔴 Orphan position · 32,500.00 USDT · NO STOP LOSS", "the preview says what, how much, the stop"
    assert where == f"BTCUSDT LONG · {binance.name} (binanceusdm)"
    body = "\n".join(rest)
    assert "Contracts: 0.5 · Notional: 32,500.00 USDT" in body
    assert "Unrealized PnL: −412.50 USDT · Leverage: 20x · Margin: " in body
    assert "Entry: 65,825.0 · Mark: 65,000.0" in body, "prices at the market's tick (0.1)"
    assert re.search(r"Liquidation: [\d,]+\.\d \([\d.]+% from mark\)", body), body
    assert "Open for" not in body, "Binance does not say when a position opened"
    assert body.count(" UTC") == 1, "one timestamp: when it was detected"
    assert "Adopt it into the DB, or close it on the exchange." in body
    assert alert.silent is False, "a new critical orphan rings"


async def test_prices_keep_the_ticks_trailing_zero_and_small_exposures_are_quiet_info(
    database_url, new_account, telegram
):
    binance = new_account("binance")
    binance.set_position("SOLUSDT", "short", Decimal("3"), entry_price=Decimal("170"), mark_price=Decimal("176.1"))
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
    assert alert.text.startswith("🔵 Orphan position · 528.30 USDT")
    assert "Mark: 176.10" in alert.text and "Unrealized PnL: −18.30 USDT" in alert.text
    assert alert.silent is True, "info-level findings never ring"


async def test_a_ghost_shows_what_the_db_holds_and_arrives_silently(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        await insert_positions(h.db, [row(binance, "ETHUSDT", "long", "2", entry_price=Decimal("3500"))])
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
    assert alert.text.startswith("🟠 Ghost position · DB holds ≈ 7,000.00 USDT")
    assert "size 2 (≈ 7,000.00 USDT)" in alert.text
    assert alert.silent is True, "only new orphans and unprotected positions ring by default"


# -- a burst is one digest ---------------------------------------------------------------------------------------

BURST = [  # (market, side, size): 14 orphans from ~130k USDT down to ~25 USDT
    ("BTCUSDT", "long", "2"),
    ("BTCUSDT", "short", "0.3"),
    ("ETHUSDT", "long", "5"),
    ("ETHUSDT", "short", "0.5"),
    ("SOLUSDT", "long", "40"),
    ("SOLUSDT", "short", "4"),
    ("BNBUSDT", "long", "3"),
    ("BNBUSDT", "short", "0.2"),
    ("XRPUSDT", "long", "2000"),
    ("XRPUSDT", "short", "100"),
    ("DOGEUSDT", "long", "9000"),
    ("DOGEUSDT", "short", "500"),
    ("AVLUSDT", "long", "2000"),
    ("AVLUSDT", "short", "100"),
]


@contextlib.asynccontextmanager
async def burst(database_url, new_account, telegram) -> AsyncIterator[tuple[Harness, object]]:
    binance = new_account("binance", hedge_mode=True)
    for market, side, size in BURST:
        binance.set_position(market, side, Decimal(size))
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        await h.wait_alerts(1)
        await h.settled()
        yield h, binance


async def test_a_burst_of_fourteen_orphans_is_one_digest_biggest_first(database_url, new_account, telegram):
    async with burst(database_url, new_account, telegram) as (h, _account):
        [digest] = h.alerts()
        lines = digest.text.splitlines()
        assert lines[0].startswith("🔴 14 new findings · ") and lines[0].endswith(" at risk")
        assert lines[1] == "14 orphans"
        listed = [line for line in lines if re.match(r"^\d+\. ", line)]
        assert len(listed) == 14
        assert "BTCUSDT LONG" in listed[0] and "130,000.00 USDT" in listed[0], "the biggest first"
        values = [Decimal(re.search(r"· ([\d,.]+) USDT · PnL ", line).group(1).replace(",", "")) for line in listed]
        assert values == sorted(values, reverse=True)
        assert digest.silent is False, "it holds new risk"
        texts = digest.button_texts
        assert texts[:14] == [str(n) for n in range(1, 15)] and texts[14:] == ["Show all", "Snooze all 1h"]
        assert all(len(data.encode()) <= 64 for data in digest.callback_data)


async def test_a_digest_number_shows_that_finding_with_its_buttons_and_it_stays_true(
    database_url, new_account, telegram
):
    async with burst(database_url, new_account, telegram) as (h, binance):
        [digest] = h.alerts()
        await h.press(VIEWER, digest, "3")
        shown = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("🔴 Orphan position · 17,500"))
        assert shown.text.startswith("🔴 Orphan position · 17,500.00 USDT")
        assert shown.button_texts == ["Adopt into DB", "Snooze 1h", "Details"]
        binance.remove_position("ETHUSDT", "long")
        await h.reconciler.check(SCAN_KINDS)
        edited = await h.edited_to(shown, "Resolved")
        assert edited.text.startswith("✅ Resolved") and not edited.has_keyboard


async def test_show_all_and_snooze_all(database_url, new_account, telegram):
    async with burst(database_url, new_account, telegram) as (h, _account):
        [digest] = h.alerts()
        await h.press(VIEWER, digest, "Show all")
        [table] = (await h.wait_alerts(2))[1:]
        assert table.text.startswith("📋 14 findings of this digest")
        listed = findings_rows(table)
        assert listed[0][2:4] == ["BTCUSDT", "LONG"] and len(listed) == 10, "biggest first, one page of ten"
        await h.settled()
        assert len(h.alerts()) == 2, "one table, not a card each"
        shown = [await h.opened(VIEWER, table, 1)]

        answer = await h.press(VIEWER, digest, "Snooze all 1h")
        assert answer.params.get("show_alert") is True, "snoozing is for operators"
        answer = await h.press(OPERATOR, digest, "Snooze all 1h")
        assert answer.params["text"].startswith("Snoozed 14 findings for 1h, until ")
        states = {f.state for f in await h.runtime.findings.live()}
        assert states == {FindingState.SNOOZED}
        await h.edited_to(shown[0], "Snoozed by")


# -- reminders, sound, mute, notify ------------------------------------------------------------------------------


async def test_reminders_are_one_quiet_message_listing_what_is_still_open(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    async with chatops(database_url, telegram, [binance]) as h:
        await insert_positions(h.db, [row(binance, "ETHUSDT", "long", "1")])
        await h.reconciler.check()
        await h.wait_alerts(2)
        h.reconciler.policy = AlertPolicy(remind_after=timedelta(0))
        await h.reconciler.check()
        reminder = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("⏰"))
    assert reminder.text.startswith("⏰ Still open: 2 · ")
    assert "1. 🔴 Orphan BTCUSDT LONG" in reminder.text and "2. 🟠 Ghost ETHUSDT LONG" in reminder.text
    assert reminder.silent is True and reminder.button_texts == ["1", "2"], "each a tap from its card"
    assert len(h.alerts()) == 3, "two alerts, one reminder for both"


async def test_a_kind_set_off_is_recorded_and_listed_but_never_sent(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], alerts={"notify": {"ghost": "off"}}) as h:
        await insert_positions(h.db, [row(binance, "ETHUSDT", "long", "1")])
        filed = await h.reconciler.check(RECONCILIATION)
        assert [f.kind for f in filed.new] == [FindingKind.GHOST]
        await h.settled()
        assert h.alerts() == []
        [table] = await h.say(VIEWER, "/findings", chat_id=ALERT_CHAT)
        assert table.text.startswith("📋 1 open finding ·")
        assert [r[1:4] for r in findings_rows(table)] == [["ghost", "ETHUSDT", "LONG"]]


# -- acknowledge, and its undo -----------------------------------------------------------------------------------


async def test_acknowledge_is_undone_from_findings(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        await insert_positions(h.db, [row(binance, "ETHUSDT", "long", "1")])
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
        await h.press(OPERATOR, alert, "Acknowledge")
        await h.edited_to(alert, "Acknowledged by")
        [table] = await h.say(OPERATOR, "/findings", chat_id=OPERATOR)
        assert findings_rows(table)[0][-1] == "acked"
        copy = await h.opened(OPERATOR, table, 1)
        assert copy.button_texts == ["Mark closed", "Snooze 1h", "Undo acknowledge", "Details"]
        answer = await h.press(OPERATOR, copy, "Undo acknowledge")
        assert answer.params["text"] == "Open again: reminders resume."
        [finding] = await h.runtime.findings.live()
        assert finding.state is FindingState.OPEN and finding.closed_by is None
        await h.telegram.wait_until(lambda: "Acknowledged by" not in alert.text)
        assert alert.button_texts == ["Mark closed", "Snooze 1h", "Acknowledge", "Details"]


# -- forum topics ------------------------------------------------------------------------------------------------


async def test_alerts_can_go_to_a_forum_topic(database_url, new_account, telegram):
    forum = -1009990001
    telegram.add_chat(forum, "supergroup", title="desk", is_forum=True)
    thread = telegram.add_topic(forum, "reconbot")
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    async with chatops(database_url, telegram, [binance], telegram={"alert_chat_ids": [f"{forum}:{thread}"]}) as h:
        await h.reconciler.check(SCAN_KINDS)
        await telegram.wait_until(lambda: len(telegram.messages(forum)) == 1)
        [alert] = telegram.messages(forum)
        assert alert.thread_id == thread and "Orphan position" in alert.text
        binance.remove_position("BTCUSDT", "long")
        await h.reconciler.check(SCAN_KINDS)
        await h.edited_to(alert, "Resolved")


async def test_a_digest_line_carries_the_pnl_next_to_the_notional(database_url, new_account, telegram):
    binance = new_account("binance", hedge_mode=True)
    binance.set_position("SOLUSDT", "long", Decimal("250"), entry_price=Decimal("182.4"), mark_price=Decimal("176.1"))
    binance.set_position("BTCUSDT", "short", Decimal("0.1"), entry_price=Decimal("60000"), mark_price=Decimal("59000"))
    async with chatops(database_url, telegram, [binance], alerts={"digest_after": 1}) as h:
        await h.reconciler.check(SCAN_KINDS)
        [digest] = await h.wait_alerts(1)
    listed = [line for line in digest.text.splitlines() if re.match(r"^\d+\. ", line)]
    assert listed == [
        f"1. 🔴 Orphan SOLUSDT LONG · {binance.name} · 44,025.00 USDT · PnL −1,575.00 USDT",
        f"2. 🟠 Orphan BTCUSDT SHORT · {binance.name} · 5,900.00 USDT · PnL +100.00 USDT",
    ]
