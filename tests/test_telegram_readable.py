"""People and state a trader reads at a glance, through the real bot and the loopback Bot API: Snooze says the
configured length, people appear by their Telegram name (the id stays in the audit), and a snoozed or
acknowledged alert's first line says so."""

from __future__ import annotations

from decimal import Decimal

from services.model import RECONCILIATION, SCAN_KINDS
from tests.chatops import ALERT_CHAT, OPERATOR, OPERATOR_2, VIEWER, Harness
from tests.chatops import chatops_for as chatops
from tests.helpers import fetch_audit, insert_positions
from tests.helpers import position_row as row


async def ghost_alert(h: Harness, account):
    await insert_positions(h.db, [row(account, "ETHUSDT", "long", "2", entry_price=Decimal("3500"))])
    await h.reconciler.check(RECONCILIATION)
    [alert] = await h.wait_alerts(1)
    return alert


async def test_snooze_says_the_configured_length_and_who_snoozed(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], telegram={"snooze_s": 1800}) as h:
        alert = await ghost_alert(h, binance)
        assert alert.button_texts == ["Mark closed", "Snooze 30m", "Acknowledge", "Details"]
        answer = await h.press(OPERATOR_2, alert, "Snooze 30m", first_name="Dana")
        assert answer.params["text"].startswith("Snoozed for 30m, until ")
        edited = await h.edited_to(alert, "Snoozed by")
        first = edited.text.splitlines()[0]
        assert first.startswith("🔕 Snoozed by Dana until "), "the first line says it is snoozed, and by whom"
        assert str(OPERATOR_2) not in edited.text, "people appear by name; the id stays in the audit"
        [entry] = await fetch_audit(h.db)
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("snooze", "done", f"telegram Dana ({OPERATOR_2})")


async def test_an_acknowledged_alert_says_so_first_and_a_fix_shows_the_name(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        alert = await ghost_alert(h, binance)
        await h.press(OPERATOR, alert, "Acknowledge")
        edited = await h.edited_to(alert, "Acknowledged by")
        assert edited.text.splitlines()[0] == f"👍 Acknowledged by @user{OPERATOR}: no reminders"
        await h.press(OPERATOR, edited, "Mark closed")
        question = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Mark position"))
        assert f"for @user{OPERATOR} only" in question.text
        await h.press(OPERATOR, question, "Confirm")
        fixed = await h.edited_to(alert, "Fixed by")
        assert fixed.text.splitlines()[0].startswith(f"✅ Fixed by @user{OPERATOR} ")
        assert f"({OPERATOR})" not in fixed.text
        audit = await fetch_audit(h.db)
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("acknowledge", f"telegram @user{OPERATOR} ({OPERATOR})"),
        ("close_ghost", f"telegram @user{OPERATOR} ({OPERATOR})"),
    ]


async def test_a_viewers_copies_carry_only_what_a_viewer_may_press(database_url, new_account, telegram):
    binance = new_account("binance")
    chats = {"alert_chat_ids": [ALERT_CHAT, VIEWER]}
    async with chatops(database_url, telegram, [binance], telegram=chats) as h:
        await ghost_alert(h, binance)
        await h.telegram.wait_until(lambda: len(telegram.messages(VIEWER)) == 1)
        [private] = telegram.messages(VIEWER)
        assert private.button_texts == ["Details"], "the viewer's own alert chat: no operator buttons"
        [group] = h.alerts()
        assert group.button_texts == ["Mark closed", "Snooze 1h", "Acknowledge", "Details"], "operators act here"
        _count, copy = await h.say(VIEWER, "/findings", chat_id=VIEWER, replies=2)
        assert copy.button_texts == ["Details"]
        _count, mine = await h.say(OPERATOR, "/findings", chat_id=OPERATOR, replies=2)
        assert mine.button_texts == ["Mark closed", "Snooze 1h", "Acknowledge", "Details"]
        await h.press(OPERATOR, group, "Acknowledge")
        edited = await h.edited_to(private, "Acknowledged by")
        assert edited.button_texts == ["Details"], "every copy is edited, each with its reader's buttons"


async def test_a_digest_in_a_viewers_chat_offers_no_snooze(database_url, new_account, telegram):
    binance = new_account("binance", hedge_mode=True)
    for market in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        binance.set_position(market, "long", Decimal("1"))
    chats = {"alert_chat_ids": [ALERT_CHAT, VIEWER]}
    async with chatops(database_url, telegram, [binance], telegram=chats, alerts={"digest_after": 2}) as h:
        await h.reconciler.check(SCAN_KINDS)
        await h.telegram.wait_until(lambda: len(telegram.messages(VIEWER)) == 1)
        [digest] = telegram.messages(VIEWER)
        assert digest.button_texts == ["1", "2", "3", "Show all"]
        [group] = await h.wait_alerts(1)
        assert group.button_texts[-1] == "Snooze all 1h"
