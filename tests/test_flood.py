"""Alerts are not starved by chatter: per-chat budgets as Telegram's, alerts before command replies, and one
busy chat never delays another chat's alert. The pacing alone, then the whole bot through the loopback Bot API."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from bot.flood import ChatLane, FloodControl, Limit, Priority
from services.model import SCAN_KINDS
from tests.chatops import ALERT_CHAT, OPERATOR, VIEWER, running_chatops, telegram_settings


@pytest.fixture
async def harness(database_url, new_account, telegram):
    bybit = new_account("bybit")
    async with running_chatops(telegram_settings(database_url, [bybit], telegram), telegram) as h:
        h.bybit = bybit
        yield h


async def grant_order(lane: ChatLane, priorities: list[Priority]) -> list[int]:
    order: list[int] = []

    async def send(index: int, priority: Priority) -> None:
        await lane.turn(priority)
        order.append(index)

    await asyncio.gather(*(send(i, p) for i, p in enumerate(priorities)))
    return order


async def test_within_a_chat_alerts_go_before_replies_that_waited_longer():
    lane = ChatLane(Limit(1, 0.05))
    order = await grant_order(lane, [Priority.REPLY] * 4 + [Priority.ALERT])
    assert order[0] == 0, "the first reply was granted at once"
    assert order[1] == 4, "the alert went next, ahead of three replies queued before it"
    assert order[2:] == [1, 2, 3], "replies keep their order"


async def test_a_digests_findings_shown_one_by_one_wait_behind_an_operators_answer():
    lane = ChatLane(Limit(1, 0.05))
    order = await grant_order(lane, [Priority.DETAIL] * 4 + [Priority.REPLY, Priority.ALERT])
    assert order[:3] == [0, 5, 4], "the one already granted, then the alert, then the operator's answer"
    assert order[3:] == [1, 2, 3]


async def test_replies_leave_a_groups_reserve_to_alerts():
    lane = ChatLane(Limit(4, 10.0), reserve=2)
    started = time.monotonic()
    for _ in range(2):
        await lane.turn(Priority.REPLY)
    blocked = asyncio.create_task(lane.turn(Priority.REPLY))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "replies may not use the last two sends of the window"
    await asyncio.wait_for(lane.turn(Priority.ALERT), 0.5)
    assert time.monotonic() - started < 0.5, "the alert found room at once"
    blocked.cancel()


async def test_one_busy_chat_never_delays_another():
    flood = FloodControl(private=Limit(1, 1.0))
    busy = flood.lane(111)
    waiting = [asyncio.create_task(busy.turn(Priority.REPLY)) for _ in range(50)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await asyncio.wait_for(flood.lane(222).turn(Priority.ALERT), 0.2)
    assert time.monotonic() - started < 0.1
    assert busy.waiting >= 48, "the busy chat is still paced at one a second"
    for task in waiting:
        task.cancel()


async def test_a_429_holds_only_its_own_chat():
    flood = FloodControl()
    flood.lane(111).block(5.0)
    await asyncio.wait_for(flood.lane(222).turn(Priority.REPLY), 0.2)
    held = asyncio.create_task(flood.lane(111).turn(Priority.ALERT))
    await asyncio.sleep(0.1)
    assert not held.done()
    held.cancel()


async def test_a_cancelled_waiter_passes_its_turn_on():
    lane = ChatLane(Limit(1, 0.05))
    await lane.turn(Priority.REPLY)
    first = asyncio.create_task(lane.turn(Priority.REPLY))
    second = asyncio.create_task(lane.turn(Priority.REPLY))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(second, 1.0)


# -- the whole bot -----------------------------------------------------------------------------------------------


async def flood_of_help(h, chat_id: int, count: int) -> None:
    chat_type = "private" if chat_id > 0 else "supergroup"
    for _ in range(count):
        h.telegram.user_sends(VIEWER, "/help", chat_id=chat_id, chat_type=chat_type, username=f"user{VIEWER}")
    await h.telegram.wait_until(lambda: len(h.telegram.messages(chat_id)) >= 2, timeout=10)


async def test_a_flood_of_commands_in_a_private_chat_does_not_delay_an_alert(harness):
    await flood_of_help(harness, VIEWER, 60)
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    filed_at = time.monotonic()
    await harness.reconciler.check(SCAN_KINDS)
    [alert] = await harness.wait_alerts(1, timeout=10)
    assert alert.sent_at - filed_at < 2.0, "the alert to the other chat went out at once"
    assert len(harness.telegram.messages(VIEWER)) < 30, "while the flooding chat is still being answered"
    assert harness.telegram.max_sends_in_window(0.9, VIEWER) <= 1


async def test_a_flood_of_commands_in_the_alert_group_does_not_hold_back_an_alert(harness):
    await flood_of_help(harness, ALERT_CHAT, 40)
    await asyncio.sleep(0.5)
    harness.bybit.set_position("AVLUSDT", "long", Decimal("86"))
    filed_at = time.monotonic()
    await harness.reconciler.check(SCAN_KINDS)
    await harness.telegram.wait_until(lambda: any("Orphan position" in m.text for m in harness.alerts()), timeout=10)
    alert = next(m for m in harness.alerts() if "Orphan position" in m.text)
    assert alert.sent_at - filed_at < 2.0
    assert harness.telegram.max_sends_in_window(60.0, ALERT_CHAT) <= 20, "the group's limit holds"
    assert len(harness.alerts()) < 25, "most replies still wait for the group's budget"


MARKETS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT", "AVLUSDT", "1000PEPEUSDT")


async def test_a_confirm_prompt_goes_ahead_of_fifteen_queued_edits(database_url, new_account, telegram):
    """The trader's report: 15 Snooze presses queued 15 "Snoozed by" edits in the group, and the Confirm prompt of
    the next press waited behind them. Presses and their prompts go first; edits wait in the background."""
    binance = new_account("binance", hedge_mode=True)
    for market in MARKETS:
        binance.set_position(market, "long", Decimal("100"))
        binance.set_position(market, "short", Decimal("100"))
    settings = telegram_settings(
        database_url, [binance], telegram, account={"allow_exchange_orders": True}, alerts={"digest_after": 100}
    )
    telegram.enforce_flood_limits = True  # Telegram's own limits: 20 messages a minute in a group
    async with running_chatops(settings, telegram) as h:
        await h.reconciler.check(SCAN_KINDS)
        alerts = await h.wait_alerts(16, timeout=20)
        *snoozed, target = alerts
        for alert in snoozed:
            await h.press(OPERATOR, alert, "Snooze 1h")
        assert await h.runtime.outbox.depth("telegram") >= 10, "the edits are queued"
        pressed_at = time.monotonic()
        answer = await h.press(OPERATOR, target, "Close on exchange")
        assert answer.at - pressed_at < 1.0, "the press is answered within a second"
        assert answer.params.get("text"), "and the answer says what happens next"
        question = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Close "), timeout=20)
        assert question.sent_at - pressed_at < 2.0, "the prompt did not wait behind the edits"
        assert question.button_texts == ["Confirm", "Cancel"]
        edited = [m for m in snoozed if "Snoozed by" in m.text]
        assert len(edited) < 15, "the edits were still waiting when the prompt went out"
        assert h.telegram.max_sends_in_window(60.0, ALERT_CHAT) <= 20, "the group's limit holds"
        assert not [c for c in h.telegram.calls if c.status == 429], "no send was refused"
