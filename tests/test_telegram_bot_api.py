"""Today's Bot API where it helps a trader, through the real bot and the loopback Bot API (which checks each
field as Telegram does): red and green buttons, copy buttons for order ids and bot commands, times as date-time
entities shown in each reader's zone, and Details a group member alone sees."""

from __future__ import annotations

from decimal import Decimal

from services.model import SCAN_KINDS
from tests.chatops import ALERT_CHAT, OPERATOR, VIEWER, ghost_alert
from tests.chatops import chatops_for as chatops


def styles(message) -> dict[str, str | None]:
    return {b["text"]: b.get("style") for b in message.buttons}


async def test_exchange_orders_are_red_and_adopting_is_green(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("ETHUSDT", "long", Decimal("10"), entry_price=Decimal("3500"))
    async with chatops(database_url, telegram, [bybit], account={"allow_exchange_orders": True}) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        assert styles(alert) == {
            "Adopt into DB": "success",
            "Close on exchange": "danger",
            "Snooze 1h": None,
            "Details": None,
        }
        await h.press(OPERATOR, alert, "Close on exchange")
        question = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Close "))
        assert styles(question) == {"Confirm": "danger", "Cancel": None}


async def test_an_alert_states_one_moment_as_a_date_time_entity(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("ETHUSDT", "long", Decimal("10"), entry_price=Decimal("3500"))
    async with chatops(database_url, telegram, [bybit]) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        [finding] = await h.runtime.findings.live()
    [detected] = [e for e in alert.entities if e["type"] == "date_time"]
    assert detected["unix_time"] == int(finding.first_seen.timestamp()) and detected["date_time_format"] == "dt"
    units = alert.text.encode("utf-16-le")
    shown = units[2 * detected["offset"] : 2 * (detected["offset"] + detected["length"])].decode("utf-16-le")
    assert shown == finding.first_seen.strftime("%Y-%m-%d %H:%M UTC"), "what an app without the entity shows"
    assert "Open for 0s when found" in alert.text, "the venue's opening time is an age, not a second timestamp"


async def test_details_in_a_group_are_for_the_presser_alone_with_copy_buttons(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("ETHUSDT", "long", Decimal("10"), entry_price=Decimal("3500"))
    [fill] = bybit.close_position("ETHUSDT", "long", cause="liquidation", price="3360")
    async with chatops(database_url, telegram, [bybit]) as h:
        alert = await ghost_alert(h, bybit)
        shown = alert.text
        await h.press(VIEWER, alert, "Details")
        await telegram.wait_until(lambda: telegram.ephemeral_messages(ALERT_CHAT, VIEWER) != [])
        [mine] = telegram.ephemeral_messages(ALERT_CHAT, VIEWER)
        assert mine.replaces == alert.message_id and mine.silent, "in place of the alert, in the viewer's view"
        assert mine.text.startswith(shown) and "Realized PnL: −1,400.00 USDT" in mine.text
        assert mine.button_texts == [f"Copy order #…{fill.order_id[-8:]}", "Hide details"]
        assert mine.button(f"Copy order #…{fill.order_id[-8:]}")["copy_text"] == {"text": fill.order_id}
        await h.settled()
        assert h.alerts() == [alert] and not alert.edited, "the group sees nothing new"

        [pid] = [r for r in (await h.runtime.findings.live())[0].db_position_ids]
        await h.press(OPERATOR, alert, "Details")
        await telegram.wait_until(lambda: telegram.ephemeral_messages(ALERT_CHAT, OPERATOR) != [])
        [theirs] = telegram.ephemeral_messages(ALERT_CHAT, OPERATOR)
        assert theirs.button("Copy /closeghost " + pid)["copy_text"] == {"text": f"/closeghost {pid}"}

        await h.press(VIEWER, mine, "Hide details")
        await telegram.wait_until(lambda: telegram.ephemeral_messages(ALERT_CHAT, VIEWER) == [])
        assert telegram.ephemeral_messages(ALERT_CHAT, OPERATOR) == [theirs]


async def test_details_open_in_place_when_telegram_refuses_an_ephemeral_message(database_url, new_account, telegram):
    bybit = new_account("bybit")
    async with chatops(database_url, telegram, [bybit]) as h:
        alert = await ghost_alert(h, bybit)
        telegram.fail("sendMessage", 400, description="Bad Request: query is too old and response timeout expired")
        await h.press(VIEWER, alert, "Details")
        opened = await h.edited_to(alert, "DB size: 10")
        assert "Hide details" in opened.button_texts and len(h.alerts()) == 1


async def test_refusals_and_whoami_in_a_group_go_to_the_writer_alone_where_the_bot_may(
    database_url, new_account, telegram
):
    telegram.add_chat(ALERT_CHAT, "supergroup", admins=[telegram.bot_id])  # an administrator may, at any time
    stranger = 4242
    async with chatops(database_url, telegram, [new_account("bybit")]) as h:
        for user, command, answer in (
            (VIEWER, "/mute 1h", "Only operators can do this"),
            (stranger, "/whoami", f"Your user id: {stranger}"),
        ):
            telegram.user_sends(user, command, chat_id=ALERT_CHAT, chat_type="supergroup")
            await telegram.wait_until(lambda user=user: telegram.ephemeral_messages(ALERT_CHAT, user) != [])
            [private] = telegram.ephemeral_messages(ALERT_CHAT, user)
            assert private.text.startswith(answer) and private.silent
        await h.settled()
        assert h.alerts() == [], "the group sees no answer"


async def test_a_group_where_the_bot_is_no_administrator_gets_an_ordinary_reply(database_url, new_account, telegram):
    async with chatops(database_url, telegram, [new_account("bybit")]) as h:
        [refused] = await h.say(VIEWER, "/mute 1h", chat_id=ALERT_CHAT)
    assert refused.text.startswith("Only operators can do this") and refused.reply_to is not None
    assert telegram.ephemeral_messages(ALERT_CHAT) == []
