"""The alert buttons, the looking commands, long and hostile texts, and Telegram's own limits, end to end:
real aiogram against the loopback Bot API, real ccxt against the loopback venues, real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.keyboards import confirm_keyboard, finding_keyboard
from bot.texts import split_message
from emulator.telegram import StoredMessage, utf16_len
from services.findings import StoredFinding
from services.model import RECONCILIATION, SCAN_KINDS, FindingKind, Side
from tests.chatops import ALERT_CHAT, OPERATOR, OPERATOR_2, VIEWER, Harness, running_chatops, telegram_settings
from tests.helpers import fetch_audit, fetch_positions_table, insert_positions
from tests.helpers import position_row as row

OPERATORS_ONLY = "Only operators can do this; you can look but not change anything."
ORPHAN_BUTTONS = ["Adopt into DB", "Snooze 1h", "Details"]
GHOST_BUTTONS = ["Mark closed", "Snooze 1h", "Acknowledge", "Details"]
MISMATCH_BUTTONS = ["Set DB to exchange size", "Snooze 1h", "Acknowledge", "Details"]


@contextlib.asynccontextmanager
async def chatops(database_url, telegram, accounts, **overrides) -> AsyncIterator[Harness]:
    settings = telegram_settings(database_url, accounts, telegram, **overrides)
    async with running_chatops(settings, telegram) as h:
        h.db = database_url
        yield h


@pytest.fixture
async def harness(database_url, new_account, telegram):
    binance, bybit = new_account("binance"), new_account("bybit")
    async with chatops(database_url, telegram, [binance, bybit]) as h:
        h.binance, h.bybit = binance, bybit
        yield h


def finding_id(message: StoredMessage) -> int:
    return int(message.callback_data[0].split(":")[2])


def assert_callback_data_fits(messages: Iterable[StoredMessage]) -> None:
    for message in messages:
        for version in message.history:
            rows = (version.reply_markup or {}).get("inline_keyboard", [])
            for button in (b for r in rows for b in r):
                assert len(button["callback_data"].encode()) <= 64, button


def assert_telegram_accepted_everything(h: Harness) -> None:
    """Every message the bot sent or edited was accepted: well-formed HTML, within the limits."""
    refused = [
        c.summary()
        for c in h.telegram.calls
        if c.method in ("sendMessage", "editMessageText", "editMessageReplyMarkup") and c.status == 400
    ]
    assert refused == []


async def alert_where(h: Harness, fragment: str) -> StoredMessage:
    return await h.message_where(ALERT_CHAT, lambda m: fragment in m.text and m.has_keyboard)


async def ask(h: Harness, user: int, message: StoredMessage, button: str, question_start: str) -> StoredMessage:
    """Press a fix button and return the confirmation question it brings."""
    answer = await h.press(user, message, button)
    assert answer.ok
    return await h.message_where(message.chat_id, lambda m: m.text.startswith(question_start))


async def outbox_rows(h: Harness) -> list[dict]:
    rows = await h.runtime.database.pool.fetch(
        "SELECT kind, finding_id, sent_at, attempts FROM reconbot.outbox ORDER BY id"
    )
    return [dict(r) for r in rows]


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until an asynchronous condition (a database query) holds."""
    for _ in range(int(timeout / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"condition still false after {timeout}s")


async def wait_for_outbox_drained(h: Harness) -> None:
    async def drained() -> bool:
        return await h.runtime.outbox.depth() == 0

    await eventually(drained)


# -- orphans: adopt -------------------------------------------------------------------------------------------


async def test_adopt_orphan_inserts_an_active_row_and_edits_the_alert(harness):
    harness.bybit.set_position(
        "AVLUSDT", "long", Decimal("86"), entry_price=Decimal("0.1234"), mark_price=Decimal("0.1301")
    )
    await harness.reconciler.check(SCAN_KINDS)
    [alert] = await harness.wait_alerts(1)
    assert alert.button_texts == ORPHAN_BUTTONS
    where = f"AVLUSDT LONG on {harness.bybit.name}"
    question = await ask(harness, OPERATOR, alert, "Adopt into DB", "Adopt ")
    assert question.text.startswith(f"Adopt {where} (86 contracts, 11.19 USDT) into the DB as an active position?")
    assert question.button_texts == ["Confirm", "Cancel"]
    assert await fetch_positions_table(harness.db) == [], "nothing before Confirm"

    await harness.press(OPERATOR, question, "Confirm")
    await harness.edited_to(question, "Done")
    [adopted] = await fetch_positions_table(harness.db)
    assert (adopted["exchange"], adopted["account"], adopted["symbol"], adopted["side"], adopted["status"]) == (
        "bybit",
        harness.bybit.name,
        "AVLUSDT",
        "long",
        "active",
    )
    assert (adopted["quantity"], adopted["entry_price"]) == (Decimal("86"), Decimal("0.1234"))
    [audit] = await fetch_audit(harness.db)
    assert (audit["action"], audit["outcome"], audit["target"]) == (
        "adopt_orphan",
        "done",
        f"position #{adopted['id']}",
    )
    edited = await harness.edited_to(alert, "Fixed")
    assert edited.text.startswith(f"✅ Fixed by @user{OPERATOR} "), "by name; the id is in the audit"
    assert f"adopted as position #{adopted['id']}" in edited.text
    assert not edited.has_keyboard
    live = (await harness.reconciler.check()).live
    assert [f.kind for f in live] == [FindingKind.UNPROTECTED], "tracked now; still without a stop-loss"
    assert_callback_data_fits(harness.alerts())


async def test_adopt_is_refused_when_the_trading_bot_tracked_the_position_meanwhile(harness):
    harness.bybit.set_position("AVLUSDT", "short", Decimal("40"))
    await harness.reconciler.check(SCAN_KINDS)
    [alert] = await harness.wait_alerts(1)
    question = await ask(harness, OPERATOR, alert, "Adopt into DB", "Adopt ")
    [pid] = await insert_positions(harness.db, [row(harness.bybit, "AVL/USDT:USDT", "short", "40")])

    await harness.press(OPERATOR, question, "Confirm")
    await harness.edited_to(question, "Nothing changed")
    text = harness.telegram.message(ALERT_CHAT, question.message_id).text
    assert f"the orphan on AVLUSDT SHORT on {harness.bybit.name} no longer holds; nothing to fix" in text
    assert [r["id"] for r in await fetch_positions_table(harness.db)] == [pid], "nothing inserted twice"
    [audit] = await fetch_audit(harness.db)
    assert (audit["action"], audit["outcome"]) == ("adopt_orphan", "refused")
    assert "Fixed" not in harness.telegram.message(ALERT_CHAT, alert.message_id).text


# -- orphans: close on the exchange -------------------------------------------------------------------------


async def test_close_on_exchange_sends_one_reduce_only_order(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        binance.set_position("ETHUSDT", "short", Decimal("1.5"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        assert alert.button_texts == ["Adopt into DB", "Close on exchange", "Snooze 1h", "Details"]
        question = await ask(h, OPERATOR, alert, "Close on exchange", "Close ")
        assert question.text.startswith(f"Close ETHUSDT SHORT on {binance.name} (1.5 contracts, ")
        assert "with a reduce-only market order? It would realize about " in question.text
        assert binance.orders == [], "nothing before Confirm"

        await h.press(OPERATOR, question, "Confirm")
        await h.edited_to(question, "Done")
        [order] = binance.orders
        assert (order.symbol, order.side, order.qty, order.reduce_only, order.position_side) == (
            "ETHUSDT",
            "buy",
            Decimal("1.5"),
            True,
            "short",
        )
        assert binance.positions == {}
        edited = await h.edited_to(alert, "Fixed")
        assert f"closed on the exchange (order {order.order_id})" in edited.text
        assert not edited.has_keyboard
        [audit] = await fetch_audit(database_url)
        assert (audit["action"], audit["outcome"]) == ("close_orphan", "done")
        assert await fetch_positions_table(database_url) == [], "closing on the exchange writes no DB row"
        assert_callback_data_fits(h.alerts())


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_close_on_exchange_in_hedge_mode_closes_only_the_orphan_side(database_url, new_account, telegram, venue):
    account = new_account(venue, hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("0.5"), stop_loss=Decimal("60000"))
    account.set_position("BTCUSDT", "short", Decimal("0.2"))
    async with chatops(database_url, telegram, [account], account={"allow_exchange_orders": True}) as h:
        await insert_positions(database_url, [row(account, "BTCUSDT", "long", "0.5")])
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        assert f"BTCUSDT SHORT · {account.name}" in alert.text
        question = await ask(h, OPERATOR, alert, "Close on exchange", "Close ")
        await h.press(OPERATOR, question, "Confirm")
        await h.edited_to(question, "Done")
        [order] = account.orders
        assert (order.symbol, order.side, order.qty, order.position_side) == ("BTCUSDT", "buy", Decimal("0.2"), "short")
        assert list(account.positions) == [("BTCUSDT", "long")], "the tracked LONG is untouched"
        assert account.positions[("BTCUSDT", "long")].size == Decimal("0.5")
        await h.edited_to(alert, "Fixed")


async def test_close_on_exchange_needs_the_accounts_permission(harness):
    harness.binance.set_position("ETHUSDT", "long", Decimal("1"))
    await harness.reconciler.check(SCAN_KINDS)
    [alert] = await harness.wait_alerts(1)
    assert "Close on exchange" not in alert.button_texts
    answer = await harness.press(OPERATOR, alert, data=f"f:xclose:{finding_id(alert)}")
    assert answer.params.get("show_alert") is True
    assert answer.params["text"] == f"{harness.binance.name} does not allow exchange orders."
    assert harness.binance.orders == [] and harness.binance.request_count("orders") == 0
    assert not any(m.text.startswith("Close ") for m in harness.alerts()), "no question asked"
    assert await fetch_audit(harness.db) == []


# -- quantity mismatch: set the DB size ---------------------------------------------------------------------


async def mismatch_alert(h: Harness, db_size: str = "1", exchange_size: str = "2") -> tuple[int, StoredMessage]:
    h.binance.set_position("ETHUSDT", "long", Decimal(exchange_size))
    [pid] = await insert_positions(h.db, [row(h.binance, "ETHUSDT", "long", db_size)])
    await h.reconciler.check(RECONCILIATION)
    [alert] = await h.wait_alerts(1)
    return pid, alert


async def test_set_db_size_to_the_exchange_size(harness):
    pid, alert = await mismatch_alert(harness)
    assert "Quantity mismatch" in alert.text
    assert "Exchange: 2 (" in alert.text and "DB: 1 (≈ " in alert.text and f"(#{pid})" in alert.text
    assert alert.button_texts == MISMATCH_BUTTONS
    question = await ask(harness, OPERATOR, alert, "Set DB to exchange size", "Set position")
    assert question.text.startswith(f"Set position #{pid} ETHUSDT LONG size from 1 to 2 (the exchange's)?")
    await harness.press(OPERATOR, question, "Confirm")
    await harness.edited_to(question, "Done")
    [stored] = await fetch_positions_table(harness.db)
    assert (stored["quantity"], stored["status"]) == (Decimal("2"), "active")
    [audit] = await fetch_audit(harness.db)
    assert (audit["action"], audit["outcome"], audit["target"]) == ("set_db_quantity", "done", f"position #{pid}")
    edited = await harness.edited_to(alert, "Fixed")
    assert f"position #{pid} ETHUSDT LONG size 1 → 2" in edited.text
    assert not edited.has_keyboard


async def test_set_db_size_is_guarded_by_the_size_the_operator_saw(harness):
    pid, alert = await mismatch_alert(harness)
    question = await ask(harness, OPERATOR, alert, "Set DB to exchange size", "Set position")
    conn_pool = harness.runtime.database.pool
    await conn_pool.execute("UPDATE positions SET quantity = 1.5 WHERE id = $1", pid)  # the trading bot, meanwhile

    await harness.press(OPERATOR, question, "Confirm")
    await harness.edited_to(question, "Nothing changed")
    text = harness.telegram.message(ALERT_CHAT, question.message_id).text
    assert f"position #{pid} changed meanwhile" in text
    [stored] = await fetch_positions_table(harness.db)
    assert stored["quantity"] == Decimal("1.5"), "the trading bot's size stays"
    assert [(a["action"], a["outcome"]) for a in await fetch_audit(harness.db)] == [("set_db_quantity", "refused")]
    assert harness.telegram.message(ALERT_CHAT, alert.message_id).has_keyboard, "the finding is still open"


# -- snooze, keep, ignore, details ----------------------------------------------------------------------------


async def test_snooze_keep_and_ignore_are_for_operators_and_edit_the_alert(harness):
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    harness.binance.set_position("ETHUSDT", "long", Decimal("2"))
    await insert_positions(
        harness.db,
        [row(harness.binance, "BTCUSDT", "long", "1"), row(harness.binance, "ETHUSDT", "long", "1")],
    )
    await harness.reconciler.check()
    await harness.wait_alerts(3)
    orphan = await alert_where(harness, "Orphan position")
    ghost = await alert_where(harness, "Ghost position")
    mismatch = await alert_where(harness, "Quantity mismatch")
    quieting = ((orphan, "Snooze 1h"), (ghost, "Acknowledge"), (mismatch, "Acknowledge"))

    for alert, button in quieting:
        answer = await harness.press(VIEWER, alert, button)
        assert (answer.params["text"], answer.params.get("show_alert")) == (OPERATORS_ONLY, True)
    assert {f.state for f in await harness.runtime.findings.live()} == {"open"}

    answer = await harness.press(VIEWER, orphan, "Details")
    assert answer.ok
    details = await harness.shown_to(VIEWER)
    assert "Exchange size: 86" in details.text and f"Finding: #{finding_id(orphan)}, orphan, open" in details.text
    await harness.press(VIEWER, details, "Hide details")
    await harness.telegram.wait_until(lambda: harness.telegram.ephemeral_messages(ALERT_CHAT, VIEWER) == [])

    answer = await harness.press(OPERATOR, orphan, "Snooze 1h")
    assert answer.params["text"].startswith("Snoozed for 1h, until ")
    snoozed = await harness.runtime.findings.get(finding_id(orphan))
    assert snoozed.state == "snoozed"
    expected = datetime.now(UTC) + timedelta(hours=1)
    assert abs(snoozed.snoozed_until - expected) < timedelta(seconds=30)
    edited = await harness.edited_to(orphan, "Snoozed by")
    assert edited.text.startswith(f"🔕 Snoozed by @user{OPERATOR} until "), "the first line says so"
    assert edited.button_texts == ORPHAN_BUTTONS, "the fixes stay possible"

    answer = await harness.press(OPERATOR, ghost, "Acknowledge")
    assert answer.params["text"] == "Acknowledged: no more reminders for this finding."
    edited = await harness.edited_to(ghost, "Acknowledged by")
    assert edited.text.startswith(f"👍 Acknowledged by @user{OPERATOR}: no reminders")
    assert edited.button_texts == ["Mark closed", "Snooze 1h", "Undo acknowledge", "Details"]

    legacy_ignore = mismatch.button(text="Acknowledge")["callback_data"].replace(":ack:", ":ignore:")
    await harness.press(OPERATOR, mismatch, data=legacy_ignore)  # Ignore on an alert sent by an older version
    edited = await harness.edited_to(mismatch, "Acknowledged by")
    assert edited.button_texts == ["Set DB to exchange size", "Snooze 1h", "Undo acknowledge", "Details"]
    states = {f.kind: f.state for f in await harness.runtime.findings.live()}
    assert states == {
        FindingKind.ORPHAN: "snoozed",
        FindingKind.GHOST: "acknowledged",
        FindingKind.QUANTITY_MISMATCH: "acknowledged",
    }
    audit = await fetch_audit(harness.db)
    assert [(e["action"], e["outcome"]) for e in audit] == [
        ("snooze", "done"),
        ("acknowledge", "done"),
        ("acknowledge", "done"),
    ], "who quietened what is recorded; no position changes"
    assert all(e["before"] is None and e["target"].startswith("finding #") for e in audit)
    assert len(harness.alerts()) == 3, "edits, not new alerts; the details went to the viewer alone"
    assert_callback_data_fits(harness.alerts())


async def test_snooze_pressed_on_a_copy_edits_the_copy_and_the_alert(harness):
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await harness.reconciler.check(SCAN_KINDS)
    [alert] = await harness.wait_alerts(1)
    _title, copy = await harness.say(OPERATOR, "/findings", chat_id=ALERT_CHAT, replies=2)
    assert finding_id(copy) == finding_id(alert)
    await harness.press(OPERATOR, copy, "Snooze 1h")
    for message in (alert, copy):
        edited = await harness.edited_to(message, "Snoozed by")
        assert edited.button_texts == ORPHAN_BUTTONS


# -- resolution and identity ------------------------------------------------------------------------------------


async def test_ghost_that_comes_back_resolves_and_its_alert_is_edited(harness):
    [pid] = await insert_positions(harness.db, [row(harness.binance, "BTCUSDT", "long", "1")])
    await harness.say(OPERATOR, "/reconcile", chat_id=ALERT_CHAT, replies=3)  # "Checking", summary, alert
    alert = await alert_where(harness, "Ghost position")
    assert f"DB position #{pid}" in alert.text
    ghost_id = finding_id(alert)

    harness.binance.set_position("BTCUSDT", "long", Decimal("1"))
    replies = await harness.say(OPERATOR, "/reconcile", chat_id=ALERT_CHAT, replies=2)
    assert replies[-1].text.endswith("✅ All clear.")
    edited = await harness.edited_to(alert, "Resolved")
    assert "✅ Resolved " in edited.text and "drift no longer seen" in edited.text
    assert not edited.has_keyboard
    finding = await harness.runtime.findings.get(ghost_id)
    assert (finding.state, finding.closed_by) == ("resolved", "reconbot")


async def test_the_same_drift_seen_again_is_the_same_finding(harness):
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await harness.say(VIEWER, "/scan", chat_id=ALERT_CHAT, replies=3)  # "Checking", summary, alert
    alert = await alert_where(harness, "Orphan position")
    replies = await harness.say(VIEWER, "/scan", chat_id=ALERT_CHAT, replies=3)
    assert "Found: 1 orphan" in replies[1].text
    assert finding_id(replies[2]) == finding_id(alert), "shown again to the one who asked, as the same finding"
    await wait_for_outbox_drained(harness)
    assert [(r["kind"], r["finding_id"]) for r in await outbox_rows(harness)] == [("alert", finding_id(alert))]
    assert await harness.runtime.database.pool.fetchval("SELECT count(*) FROM reconbot.findings") == 1


async def test_a_button_of_a_finished_finding_has_nothing_to_do(harness):
    [_pid] = await insert_positions(harness.db, [row(harness.binance, "BTCUSDT", "long", "1")])
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await harness.reconciler.check()
    await harness.wait_alerts(2)
    replies = await harness.say(OPERATOR, "/findings", chat_id=ALERT_CHAT, replies=3)
    assert replies[0].text == "2 open finding(s):"
    ghost_copy = next(m for m in replies if "Ghost position" in m.text)
    orphan_copy = next(m for m in replies if "Orphan position" in m.text)
    ghost_id, orphan_id = finding_id(ghost_copy), finding_id(orphan_copy)
    mark_closed = ghost_copy.button(text="Mark closed")["callback_data"]
    adopt = orphan_copy.button(text="Adopt into DB")["callback_data"]

    harness.binance.set_position("BTCUSDT", "long", Decimal("1"))  # the ghost resolves
    await harness.reconciler.check(RECONCILIATION)
    orphan = await alert_where(harness, "Orphan position")
    question = await ask(harness, OPERATOR, orphan, "Adopt into DB", "Adopt ")
    await harness.press(OPERATOR, question, "Confirm")  # the orphan is fixed
    await harness.edited_to(question, "Done")

    # the copies shown to /findings are edited like the alerts: their first line says what happened
    await harness.telegram.wait_until(lambda: not ghost_copy.has_keyboard and not orphan_copy.has_keyboard)
    assert ghost_copy.text.startswith("✅ Resolved") and orphan_copy.text.startswith("✅ Fixed by")
    # a client that still shows the old buttons gets a clear answer and changes nothing
    answer = await harness.press(OPERATOR, ghost_copy, data=mark_closed)
    assert answer.params["text"] == f"Finding #{ghost_id} is already resolved; nothing to do."
    answer = await harness.press(OPERATOR, orphan_copy, data=adopt)
    assert answer.params["text"] == f"Finding #{orphan_id} is already fixed; nothing to do."
    assert len(await fetch_positions_table(harness.db)) == 2, "adopted once, not twice"


# -- looking: /status, /positions, /findings ------------------------------------------------------------------


async def test_status_names_accounts_checks_and_open_findings(harness):
    binance, bybit = harness.binance, harness.bybit
    [reply] = await harness.say(VIEWER, "/status", chat_id=ALERT_CHAT)
    assert reply.text.splitlines() == [
        "reconbot status",
        "Accounts:",
        f"• {binance.name} (binanceusdm): not checked yet",
        f"• {bybit.name} (bybit): not checked yet",
        "Open findings: none",
        "No scheduled runs in this process: checks run on /scan and /reconcile.",
    ]
    binance.set_position("ETHUSDT", "long", Decimal("2"), mark_price=Decimal("3500"))
    await insert_positions(harness.db, [row(binance, "BTCUSDT", "long", "1"), row(binance, "ETHUSDT", "long", "1")])
    bybit.fail("rate_limit", endpoint="positions")
    await harness.reconciler.check(RECONCILIATION)
    await harness.wait_alerts(3)
    [reply] = await harness.say(VIEWER, "/status", chat_id=ALERT_CHAT)
    lines = reply.text.splitlines()
    assert lines[2].startswith(f"✔️ {binance.name}: ok at ") and lines[2].endswith(", 1 open position(s)")
    assert lines[3].startswith(f"❓ {bybit.name}: not checked since ")
    assert "(1 round(s)): rate limited" in lines[3]
    assert lines[4] == "Open findings: 1 size mismatch (7k USDT), 1 ghost (value unknown)", "most money first"
    assert lines[5] == "No scheduled runs in this process: checks run on /scan and /reconcile."


async def test_positions_side_by_side_with_differences_marked(harness):
    binance, bybit = harness.binance, harness.bybit
    binance.set_position("BTCUSDT", "long", Decimal("1"), mark_price=Decimal("65000"))
    binance.set_position("ETHUSDT", "short", Decimal("2"), mark_price=Decimal("3500"))
    await insert_positions(harness.db, [row(binance, "BTCUSDT", "long", "1"), row(binance, "SOLUSDT", "long", "3")])
    [reply] = await harness.say(VIEWER, f"/positions {binance.name}", chat_id=ALERT_CHAT)
    title, *table = reply.text.splitlines()
    assert title.startswith(f"{binance.name} (binanceusdm), read ")
    assert [line.split() for line in table] == [
        ["MARKET", "SIDE", "EXCHANGE", "DB", "NOTIONAL", "STOP"],
        ["BTCUSDT", "LONG", "1", "1", "65k", "USDT", "NONE"],
        ["ETHUSDT", "SHORT", "2", "-", "7k", "USDT", "NONE", "≠"],
        ["SOLUSDT", "LONG", "-", "3", "-", "-", "≠"],
    ]
    assert len({line.index(line.split()[1]) for line in table}) == 1, "columns line up"
    assert "<pre>" in reply.html
    [pre] = [e for e in reply.entities if e["type"] == "pre"]
    assert pre["length"] == utf16_len("\n".join(table))

    replies = await harness.say(VIEWER, "/positions", chat_id=ALERT_CHAT, replies=2)
    assert [m.text.split(" ", 1)[0] for m in replies] == [binance.name, bybit.name]
    assert replies[1].text.endswith("(no positions on either side)")

    [usage] = await harness.say(VIEWER, "/positions nope", chat_id=ALERT_CHAT)
    assert usage.text == f"Usage: /positions [account]\nAccounts: {binance.name}, {bybit.name}"
    assert binance.request_count("orders") == 0


async def test_findings_lists_each_open_finding_with_its_buttons(harness):
    [reply] = await harness.say(VIEWER, "/findings", chat_id=ALERT_CHAT)
    assert reply.text == "✅ No open findings."
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await insert_positions(harness.db, [row(harness.binance, "BTCUSDT", "long", "1")])
    await harness.reconciler.check()
    alerts = (await harness.wait_alerts(3))[1:]
    replies = await harness.say(VIEWER, "/findings", chat_id=ALERT_CHAT, replies=3)
    assert replies[0].text == "2 open finding(s):"
    shown = {finding_id(m): m for m in replies[1:]}
    for alert in alerts:
        copy = shown[finding_id(alert)]
        assert copy.text == alert.text and copy.button_texts == alert.button_texts
    assert sorted(m.button_texts[0] for m in replies[1:]) == ["Adopt into DB", "Mark closed"]


# -- long messages ----------------------------------------------------------------------------------------------


async def test_many_positions_are_paged_through_in_one_well_formed_message(
    database_url, new_account, telegram, exchange_emulator
):
    markets = exchange_emulator.add_synthetic_markets("bybit", 100)  # 7 pages: within a group's 15 replies a minute
    bybit = new_account("bybit")
    for market in markets:
        bybit.set_position(market, "long", Decimal("1.5"))
    async with chatops(database_url, telegram, [bybit]) as h:
        await insert_positions(database_url, [row(bybit, market, "long", "1.5") for market in markets])
        [table] = await h.say(VIEWER, f"/positions {bybit.name}", chat_id=ALERT_CHAT)
        while "Next ▶" in table.button_texts:
            shown = table.text
            await h.press(VIEWER, table, "Next ▶")
            await h.telegram.wait_until(lambda: table.text != shown)  # noqa: B023 (waited for here)
        assert h.alerts() == [table], "every page in the same message"
        pages = table.history
        assert len(pages) == 7
        for page in pages:
            assert utf16_len(page.text) <= 4096
            assert page.parse_mode.lower() == "html"
            assert [e["type"] for e in page.entities if e["type"] == "pre"] == ["pre"]
            assert page.text.splitlines()[1].split()[0] == "MARKET"
        rows = [line for page in pages for line in page.text.splitlines() if line.startswith("SYN")]
        assert sorted(line.split()[0] for line in rows) == markets, "each position once"
        assert not any("≠" in line for line in rows)
        assert_telegram_accepted_everything(h)


def test_split_message_keeps_lines_whole():
    lines = [f"line {i:02d} " + "x" * 10 for i in range(20)]
    chunks = split_message("\n".join(lines), limit=60)
    assert len(chunks) > 1
    assert all(len(chunk) <= 60 for chunk in chunks)
    assert [line for chunk in chunks for line in chunk.split("\n")] == lines


def test_split_message_cuts_a_single_overlong_line_as_a_last_resort():
    assert split_message("head\n" + "x" * 60 + "\ntail", limit=25) == ["head", "x" * 25, "x" * 25, "x" * 10 + "\ntail"]


def test_split_message_at_the_exact_limit():
    assert split_message("y" * 25, limit=25) == ["y" * 25]
    assert split_message("a" * 12 + "\n" + "b" * 12, limit=25) == ["a" * 12 + "\n" + "b" * 12]
    assert split_message("a" * 12 + "\n" + "b" * 13, limit=25) == ["a" * 12, "b" * 13]
    assert split_message("z" * 4096) == ["z" * 4096]
    assert split_message("z" * 4097) == ["z" * 4096, "z"]
    assert split_message("short") == ["short"]


# -- hostile text ---------------------------------------------------------------------------------------------


async def test_html_characters_in_a_db_symbol_are_shown_literally(harness):
    """A symbol that is no market of the venue is an unknown symbol, never a ghost; shown literally everywhere."""
    symbol = "<b>X&Y</b>"
    [pid] = await insert_positions(harness.db, [row(harness.binance, symbol, "long", "1")])
    await harness.reconciler.check(RECONCILIATION)
    [alert] = await harness.wait_alerts(1)
    assert "Unknown symbol" in alert.text and "Ghost" not in alert.text
    assert f"DB row #{pid} symbol '{symbol}' is no market of binanceusdm" in alert.text
    assert "&lt;b&gt;X&amp;Y&lt;/b&gt; LONG" in alert.html
    assert "positions.symbols" in alert.text
    assert alert.button_texts == ["Snooze 1h", "Acknowledge", "Details"]

    await harness.press(VIEWER, alert, "Details")
    details = await harness.shown_to(VIEWER)
    assert f"DB row #{pid}: {symbol} size 1" in details.text
    assert "(symbol not listed on the venue)" in details.text

    [positions] = await harness.say(VIEWER, f"/positions {harness.binance.name}", chat_id=ALERT_CHAT)
    assert symbol in positions.text

    forged = await harness.press(OPERATOR, alert, data=f"f:markclosed:{finding_id(alert)}")
    assert "does not belong" in forged.params["text"]
    [refusal] = await harness.say(OPERATOR, f"/closeghost {pid}", chat_id=ALERT_CHAT)
    assert f"DB row #{pid} symbol '{symbol}' is no market of binanceusdm" in refusal.text
    assert not refusal.has_keyboard
    assert (await fetch_positions_table(harness.db))[0]["status"] == "active"
    [audit] = await fetch_audit(harness.db)
    assert (audit["action"], audit["outcome"]) == ("close_ghost", "refused")
    assert_telegram_accepted_everything(harness)


# -- Telegram's limits ------------------------------------------------------------------------------------------


async def test_a_429_is_waited_out_and_the_alert_delivered_once(harness):
    harness.telegram.fail("sendMessage", 429, retry_after=1, times=1, chat_id=ALERT_CHAT)
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await harness.reconciler.check(SCAN_KINDS)
    [alert] = await harness.wait_alerts(1)
    [refused] = [c for c in harness.telegram.calls if c.method == "sendMessage" and c.error_code == 429]
    assert 0.9 <= alert.sent_at - refused.at < 3.0, "sent again after the retry_after Telegram named"
    await wait_for_outbox_drained(harness)
    assert len(harness.alerts()) == 1


async def test_server_errors_are_retried_and_the_alert_delivered_once(harness):
    harness.telegram.fail("sendMessage", 500, times=2, chat_id=ALERT_CHAT)
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await harness.reconciler.check(SCAN_KINDS)
    [alert] = await harness.wait_alerts(1)
    failed = [c for c in harness.telegram.calls if c.method == "sendMessage" and c.error_code == 500]
    assert len(failed) == 2
    await wait_for_outbox_drained(harness)
    assert len(harness.alerts()) == 1
    assert "Orphan position" in alert.text


async def test_an_alert_waits_in_the_outbox_while_telegram_is_down(harness):
    harness.telegram.down = True
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await harness.reconciler.check(SCAN_KINDS)

    async def attempted() -> bool:
        return any(r["attempts"] for r in await outbox_rows(harness))

    await eventually(attempted)
    [queued] = await outbox_rows(harness)
    assert (queued["kind"], queued["sent_at"]) == ("alert", None)
    assert harness.alerts() == []

    harness.telegram.down = False
    [alert] = await harness.wait_alerts(1, timeout=15)
    assert "Orphan position" in alert.text
    await wait_for_outbox_drained(harness)
    [delivered] = await outbox_rows(harness)
    assert delivered["sent_at"] is not None
    assert len(harness.alerts()) == 1


def test_callback_data_of_every_button_fits_in_64_bytes():
    now = datetime.now(UTC)
    biggest = 2**63 - 1
    for kind in FindingKind:
        finding = StoredFinding(
            id=biggest,
            fingerprint="x",
            kind=kind,
            account="a" * 64,
            exchange="bybit",
            market="M" * 64,
            side=Side.SHORT,
            state="open",
            details={},
            first_seen=now,
            last_seen=now,
            snoozed_until=None,
            reminded_at=None,
            closed_at=None,
            closed_by=None,
            resolution=None,
        )
        markup = finding_keyboard(finding, exchange_orders=True)
        data = [b.callback_data for r in markup.inline_keyboard for b in r]
        assert data and all(len(d.encode()) <= 64 for d in data), data
    confirm = [b.callback_data for r in confirm_keyboard(biggest).inline_keyboard for b in r]
    assert all(len(d.encode()) <= 64 for d in confirm), confirm


async def test_cancel_by_someone_else_or_after_confirm_leaves_the_question_alone(harness):
    pid, alert = await mismatch_alert(harness)
    question = await ask(harness, OPERATOR, alert, "Set DB to exchange size", "Set position")
    cancel_data = question.button(text="Cancel")["callback_data"]
    other = await harness.press(OPERATOR_2, question, "Cancel")
    assert other.params["text"] == "Only the person who asked for this change can confirm it."
    await harness.settled()
    assert question.button_texts == ["Confirm", "Cancel"], "the one who asked can still decide"

    await harness.press(OPERATOR, question, "Confirm")
    done = (await harness.edited_to(question, "Done")).text
    late = await harness.press(OPERATOR, question, data=cancel_data)
    assert "already used (confirmed)" in late.params["text"]
    await harness.settled()
    assert question.text == done, "the outcome stays on the question"
    [stored] = await fetch_positions_table(harness.db)
    assert (stored["id"], stored["quantity"]) == (pid, Decimal("2"))
