"""The Telegram face end to end: commands, alerts, buttons, roles, confirmations and refusals."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.fixes import GHOST_EXIT_REASON
from tests.chatops import ALERT_CHAT, OPERATOR, OPERATOR_2, STRANGER, VIEWER, running_chatops, telegram_settings
from tests.helpers import fetch_audit, fetch_positions_table, insert_positions
from tests.helpers import position_row as row


@pytest.fixture
async def harness(database_url, new_account, telegram):
    binance, bybit = new_account("binance"), new_account("bybit")
    settings = telegram_settings(database_url, [binance, bybit], telegram)
    async with running_chatops(settings, telegram) as h:
        h.binance, h.bybit, h.db = binance, bybit, database_url
        yield h


async def test_commands_are_registered_and_help_answers(harness):
    registered = [c["command"] for c in harness.telegram.commands()]
    assert registered == ["start", "help", "whoami"], "the default menu: what anyone who opens the bot may try"
    [reply] = await harness.say(VIEWER, "/start")
    assert "keeps the trading bot's database honest" in reply.text
    assert "/closeghost" not in reply.text, "a viewer is not offered what they may not do"
    [reply] = await harness.say(OPERATOR, "/help")
    assert harness.binance.name in reply.text
    assert "/closeghost — mark a ghost closed" in reply.text


async def test_whoami_answers_anyone_and_strangers_get_one_refusal(harness, caplog):
    [reply] = await harness.say(STRANGER, "/whoami")
    assert reply.text == f"Your user id: {STRANGER}\nThis chat's id: {STRANGER}"
    [refusal] = await harness.say(STRANGER, "/status")
    assert f"not allowed to use this bot. Your Telegram user id is {STRANGER}" in refusal.text
    calls_before = len(harness.telegram.calls)
    harness.telegram.user_sends(STRANGER, "/scan", username="mallory")
    await asyncio.sleep(0.5)
    sent = [c for c in harness.telegram.calls[calls_before:] if c.method == "sendMessage"]
    assert sent == [], "one refusal, then silence"
    assert f"refused Message from user {STRANGER}" in caplog.text
    assert harness.bybit.request_count("positions") == 0, "a stranger's /scan does nothing"


async def test_strangers_in_a_group_are_refused_by_user_id(harness):
    [refusal] = await harness.say(STRANGER, "/findings", chat_id=ALERT_CHAT)
    assert f"Your Telegram user id is {STRANGER}" in refusal.text
    harness.telegram.user_sends(STRANGER, "just chatting", chat_id=ALERT_CHAT, chat_type="supergroup")
    [reply] = await harness.say(VIEWER, "/findings", chat_id=ALERT_CHAT)
    assert reply.text == "✅ No open findings."


async def test_scan_alerts_an_orphan_with_its_detail_and_buttons(harness):
    harness.bybit.set_position(
        "AVLUSDT", "long", Decimal("86"), entry_price=Decimal("0.1234"), mark_price=Decimal("0.1301"), leverage=10
    )
    replies = await harness.say(VIEWER, "/scan", replies=3)
    assert replies[0].text == "Checking 2 account(s)…"
    assert "Found: 1 orphan" in replies[1].text
    [alert] = await harness.wait_alerts(1)
    for text in (
        "Orphan position",
        f"AVLUSDT LONG · {harness.bybit.name} (bybit)",
        "Contracts: 86",
        "Entry: 0.1234 · Mark: 0.1301",
        "Unrealized PnL: +0.58 USDT · Leverage: 10x",
        "NO STOP LOSS",
        "Detected ",
    ):
        assert text in alert.text
    assert alert.button_texts == ["Adopt into DB", "Snooze 1h", "Details"]
    assert replies[2].text == alert.text, "the person who asked sees the finding too"
    assert all(len(d.encode()) <= 64 for d in alert.callback_data)


async def test_all_clear_and_unchecked_accounts_are_named(harness):
    harness.bybit.fail("rate_limit", endpoint="positions")
    replies = await harness.say(OPERATOR, "/reconcile", replies=2)
    summary = replies[1].text
    assert f"{harness.binance.name}: 0 open position(s)" in summary
    assert f"{harness.bybit.name}: not checked: rate limited" in summary
    assert "Nothing found on the accounts that could be read." in summary
    harness.bybit.clear_faults()
    replies = await harness.say(OPERATOR, "/reconcile", replies=2)
    assert replies[1].text.endswith("✅ All clear.")


async def ghost_alert(harness, **extra):
    [pid] = await insert_positions(harness.db, [row(harness.binance, "BTCUSDT", "long", "1", **extra)])
    await harness.say(OPERATOR, "/reconcile", replies=2)
    alerts = await harness.wait_alerts(1)
    return pid, alerts[-1]


async def test_mark_closed_asks_then_closes_and_edits_the_alert(harness):
    pid, alert = await ghost_alert(harness)
    assert "Ghost position" in alert.text and f"DB position #{pid} · size 1" in alert.text
    assert alert.button_texts == ["Mark closed", "Snooze 1h", "Acknowledge", "Details"]
    answer = await harness.press(OPERATOR, alert, "Mark closed")
    assert answer.ok
    confirmation = await harness.message_where(ALERT_CHAT, lambda m: m.text.startswith("Mark position"))
    assert confirmation.text.startswith(f"Mark position #{pid} BTCUSDT LONG 1 as closed?")
    assert confirmation.button_texts == ["Confirm", "Cancel"]
    assert (await fetch_positions_table(harness.db))[0]["status"] == "active", "nothing before Confirm"

    await harness.press(OPERATOR, confirmation, "Confirm")
    await harness.edited_to(confirmation, "Done")
    [stored] = await fetch_positions_table(harness.db)
    assert (stored["status"], stored["exit_reason"]) == ("closed", GHOST_EXIT_REASON)
    await harness.edited_to(alert, "Fixed")
    edited = harness.telegram.message(ALERT_CHAT, alert.message_id)
    assert edited.text.startswith(f"✅ Fixed by @user{OPERATOR} "), "by name; the id is in the audit"
    assert f"position #{pid} BTCUSDT LONG 1 marked closed" in edited.text
    assert not edited.has_keyboard
    [audit] = await fetch_audit(harness.db)
    assert (audit["action"], audit["outcome"], audit["actor"]) == (
        "close_ghost",
        "done",
        f"telegram @user{OPERATOR} ({OPERATOR})",
    )


async def test_viewer_may_look_but_not_fix(harness):
    _pid, alert = await ghost_alert(harness)
    answer = await harness.press(VIEWER, alert, "Mark closed")
    assert answer.params["text"] == "Only operators can do this; you can look but not change anything."
    details = await harness.press(VIEWER, alert, "Details")
    assert details.ok
    shown = await harness.shown_to(VIEWER)
    assert "DB size: 1" in shown.text and shown.replaces == alert.message_id
    assert harness.alerts() == [alert] and not alert.edited, "the viewer alone sees the details"
    assert (await fetch_positions_table(harness.db))[0]["status"] == "active"


async def test_double_tap_and_second_operator_change_nothing_twice(harness):
    _pid, alert = await ghost_alert(harness)
    await harness.press(OPERATOR, alert, "Mark closed")
    confirmation = await harness.message_where(ALERT_CHAT, lambda m: m.text.startswith("Mark position"))
    other = await harness.press(OPERATOR_2, confirmation, "Confirm")
    assert other.params["text"] == "Only the person who asked for this change can confirm it."
    first = await harness.press(OPERATOR, confirmation, "Confirm")
    second = await harness.press(OPERATOR, confirmation, "Confirm")
    assert first.params["text"] == "Checking both sides again…"
    assert "already used (confirmed); nothing changed" in second.params["text"]
    await harness.edited_to(confirmation, "Done")
    audits = await fetch_audit(harness.db)
    assert [a["outcome"] for a in audits] == ["done"]


async def test_expired_confirmation_changes_nothing_and_is_audited(database_url, new_account, telegram):
    binance = new_account("binance")
    settings = telegram_settings(database_url, [binance], telegram, telegram={"confirm_ttl_s": 0.3})
    async with running_chatops(settings, telegram) as h:
        [pid] = await insert_positions(database_url, [row(binance, "BTCUSDT", "long", "1")])
        [reply] = await h.say(OPERATOR, f"/closeghost {pid}")
        await asyncio.sleep(0.5)
        answer = await h.press(OPERATOR, reply, "Confirm")
        assert answer.params["text"] == "This confirmation expired; nothing changed. Ask again to get a fresh one."
        assert (await fetch_positions_table(database_url))[0]["status"] == "active"
        [audit] = await fetch_audit(database_url)
        assert (audit["outcome"], audit["action"], audit["target"]) == ("expired", "close_ghost", str(pid))


async def test_finding_that_resolved_before_confirm_changes_nothing(harness):
    pid, alert = await ghost_alert(harness)
    await harness.press(OPERATOR, alert, "Mark closed")
    confirmation = await harness.message_where(ALERT_CHAT, lambda m: m.text.startswith("Mark position"))
    harness.binance.set_position("BTCUSDT", "long", Decimal("1"))  # the position is back on the exchange
    await harness.press(OPERATOR, confirmation, "Confirm")
    await harness.edited_to(confirmation, "Nothing changed")
    text = harness.telegram.message(ALERT_CHAT, confirmation.message_id).text
    assert f"position #{pid} is open on {harness.binance.name}: BTCUSDT LONG 1" in text
    assert (await fetch_positions_table(harness.db))[0]["status"] == "active"
    assert [a["outcome"] for a in await fetch_audit(harness.db)] == ["refused"]


@pytest.mark.parametrize(
    "data",
    [
        "f:markclosed:999999",
        "f:nonsense:1",
        "c:999999:y",
        "c:1:maybe",
        "garbage",
        "f:adopt:{ghost}",
        "f:markclosed:-1",
        "f:markclosed:1:extra",
    ],
)
async def test_forged_callback_data_changes_nothing(harness, data):
    _pid, alert = await ghost_alert(harness)
    finding_id = alert.callback_data[0].split(":")[2]
    answer = await harness.press(OPERATOR, alert, data=data.format(ghost=finding_id))
    assert answer.params.get("show_alert") is True
    assert any(phrase in answer.params["text"] for phrase in ("not valid", "does not belong", "does not exist")), (
        answer.params["text"]
    )
    assert (await fetch_positions_table(harness.db))[0]["status"] == "active"
    assert await fetch_audit(harness.db) == []


async def test_closeghost_command_validates_and_confirms(harness):
    for bad in ("/closeghost", "/closeghost 1 2", "/closeghost <b>x</b>"):
        [reply] = await harness.say(OPERATOR, bad)
        assert reply.text == "Usage: /closeghost <position id>, e.g. /closeghost 123"
    [reply] = await harness.say(OPERATOR, "/closeghost 424242")
    assert reply.text == "No position #424242 in the DB."
    [reply] = await harness.say(VIEWER, "/closeghost 1")
    assert reply.text.startswith("Only operators can do this")
    [pid] = await insert_positions(harness.db, [row(harness.bybit, "ETHUSDT", "short", "2.5")])
    [question] = await harness.say(OPERATOR, f"/closeghost {pid}")
    assert question.text.startswith(f"Mark position #{pid} ETHUSDT SHORT 2.5 as closed?")
    await harness.press(OPERATOR, question, "Cancel")
    await harness.edited_to(question, "Cancelled")
    assert (await fetch_positions_table(harness.db))[0]["status"] == "active"
    [question] = await harness.say(OPERATOR, f"/closeghost {pid}")
    await harness.press(OPERATOR, question, "Confirm")
    await harness.edited_to(question, "Done")
    assert (await fetch_positions_table(harness.db))[0]["status"] == "closed"
