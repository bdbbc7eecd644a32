"""People and state a trader reads at a glance, through the real bot and the loopback Bot API: Snooze says the
configured length, people appear by their Telegram name (the id stays in the audit), a snoozed or acknowledged
alert's first line says so, each chat's copy carries only the buttons its reader may press, and Details opens
in place."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.detail_texts import MORE, with_details
from emulator.telegram import parse_html, utf16_len
from services.finding_details import FindingDetails
from services.findings import StoredFinding
from services.model import RECONCILIATION, SCAN_KINDS, FindingKind, Side
from tests.chatops import ALERT_CHAT, OPERATOR, OPERATOR_2, VIEWER, ghost_alert
from tests.chatops import chatops_for as chatops
from tests.helpers import fetch_audit, insert_positions
from tests.helpers import position_row as row


async def test_snooze_says_the_configured_length_and_who_snoozed(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], telegram={"snooze_s": 1800}) as h:
        alert = await ghost_alert(h, binance, "2")
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
        alert = await ghost_alert(h, binance, "2")
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
        await ghost_alert(h, binance, "2")
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


# -- Details opens in place ---------------------------------------------------------------------------------------


async def test_details_open_in_place_silently_with_a_ghosts_cause_and_realized_pnl(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("ETHUSDT", "long", Decimal("10"), entry_price=Decimal("3500"))
    bybit.close_position("ETHUSDT", "long", cause="liquidation", price="3360")
    async with chatops(database_url, telegram, [bybit], telegram={"alert_chat_ids": [OPERATOR]}) as h:
        await insert_positions(h.db, [row(bybit, "ETHUSDT", "long", "10", entry_price=Decimal("3500"))])
        await h.reconciler.check(RECONCILIATION)
        await telegram.wait_until(lambda: len(telegram.messages(OPERATOR)) == 1)
        [alert] = telegram.messages(OPERATOR)
        shown = alert.text
        sent_before = len([c for c in telegram.calls if c.method == "sendMessage"])

        await h.press(OPERATOR, alert, "Details")
        opened = await h.edited_to(alert, "Cause: liquidation")
        await h.settled()
        assert len([c for c in telegram.calls if c.method == "sendMessage"]) == sent_before, "no new message"
        assert telegram.messages(OPERATOR) == [alert]
        assert opened.text.startswith(shown), "the alert stays as it was, the details below it"
        [block] = [e for e in opened.entities if e["type"] == "expandable_blockquote"]
        details = opened.text[block["offset"] :]
        assert "Realized PnL: −1,400.00 USDT" in details and "Exit price: 3,360" in details
        assert "DB size: 10" in details and "DB row #" in details
        assert "_" not in details and "%:" not in details, "words a trader reads, not field names"
        [pid] = [r for r in (await h.runtime.findings.live())[0].db_position_ids]
        assert opened.button_texts[:4] == ["Mark closed", "Snooze 1h", "Acknowledge", "Hide details"]
        assert opened.button_texts[-1] == f"Copy /closeghost {pid}", "an operator's copy: the command too"

        await h.press(OPERATOR, opened, "Hide details")
        await telegram.wait_until(lambda: "Cause: liquidation" not in alert.text)
        assert alert.text == shown and alert.button_texts[-1] == "Details"


def test_details_too_long_for_one_message_are_cut_at_a_line():
    now = datetime.now(UTC)
    orders = [
        {"order_id": f"{n:020d}", "purpose": "stop", "closes": "long", "trigger_price": "1.5", "source": "algo"}
        for n in range(400)
    ]
    finding = StoredFinding(
        id=7, fingerprint="x", kind=FindingKind.STRAY_ORDER, account="a", exchange="bybit", market="ETHUSDT",
        side=Side.LONG, state="open", details=FindingDetails.model_validate({"orders": orders}), first_seen=now,
        last_seen=now,
        snoozed_until=None, reminded_at=None, closed_at=None, closed_by=None, resolution=None,
    )  # fmt: skip
    text, entities = parse_html(with_details("🟠 <b>Stray orders</b>", finding))
    assert utf16_len(text) <= 4096
    assert text.endswith(MORE) and [e["type"] for e in entities][-1] == "expandable_blockquote"
