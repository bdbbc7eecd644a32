"""A confirmation applies exactly what the operator saw, or nothing; an order whose answer was lost is settled by
a re-read; a fix is never consumed without an outcome in the audit log. End to end through the loopback Bot API
and venues, with real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from services.fixes import FixStatus
from services.model import RECONCILIATION, SCAN_KINDS, Side
from services.plans import CloseOrphan
from tests.chatops import ALERT_CHAT, OPERATOR, Harness, running_chatops, telegram_settings
from tests.helpers import fetch_audit, fetch_positions_table, insert_positions
from tests.helpers import position_row as row


@contextlib.asynccontextmanager
async def chatops(database_url, telegram, accounts, **overrides) -> AsyncIterator[Harness]:
    settings = telegram_settings(database_url, accounts, telegram, **overrides)
    async with running_chatops(settings, telegram) as h:
        h.db = database_url
        yield h


async def ask(h: Harness, message, button: str, question_start: str):
    await h.press(OPERATOR, message, button)
    return await h.message_where(message.chat_id, lambda m: m.text.startswith(question_start))


async def confirm_and_read(h: Harness, question) -> str:
    """Press Confirm and return the question's text once the outcome replaced its buttons."""
    asked = question.text
    await h.press(OPERATOR, question, "Confirm")
    await h.telegram.wait_until(lambda: h.telegram.message(ALERT_CHAT, question.message_id).text != asked)
    return h.telegram.message(ALERT_CHAT, question.message_id).text


async def test_set_size_applies_the_size_shown_or_nothing(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        binance.set_position("ETHUSDT", "long", Decimal("5"))
        [pid] = await insert_positions(database_url, [row(binance, "ETHUSDT", "long", "3")])
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Set DB to exchange size", "Set position")
        assert question.text.startswith(f"Set position #{pid} ETHUSDT LONG size from 3 to 5 (the exchange's)?")
        binance.set_position("ETHUSDT", "long", Decimal("7"))  # the exchange moves after the question

        text = await confirm_and_read(h, question)
        assert "Nothing changed: changed since you were asked: exchange now 7, you approved 5; nothing changed" in text
        assert (await fetch_positions_table(database_url))[0]["quantity"] == Decimal("3")
        [entry] = await fetch_audit(database_url)
        assert (entry["action"], entry["outcome"]) == ("set_db_quantity", "refused")
        assert entry["confirmation_id"] is not None


async def test_adopt_inserts_the_size_shown_or_nothing(database_url, new_account, telegram):
    bybit = new_account("bybit")
    async with chatops(database_url, telegram, [bybit]) as h:
        bybit.set_position("AVLUSDT", "long", Decimal("86"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Adopt into DB", "Adopt ")
        assert "(86 contracts, " in question.text
        bybit.set_position("AVLUSDT", "long", Decimal("120"))

        text = await confirm_and_read(h, question)
        assert "exchange now 120, you approved 86" in text
        assert await fetch_positions_table(database_url) == []

        bybit.set_position("AVLUSDT", "long", Decimal("86"))  # back to what was shown: a fresh question works
        first = question.message_id
        await h.press(OPERATOR, alert, "Adopt into DB")
        question = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Adopt ") and m.message_id != first)
        text = await confirm_and_read(h, question)
        assert "✅ Done" in text
        [adopted] = await fetch_positions_table(database_url)
        assert adopted["quantity"] == Decimal("86")


async def test_close_on_exchange_sends_the_size_shown_or_nothing(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        binance.set_position("ETHUSDT", "short", Decimal("1.5"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Close on exchange", "Close ")
        binance.set_position("ETHUSDT", "short", Decimal("4"))
        text = await confirm_and_read(h, question)
        assert "exchange now 4, you approved 1.5" in text
        assert binance.orders == [] and binance.request_count("orders") == 0


async def test_a_confirmation_stores_the_plan_it_showed(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        binance.set_position("ETHUSDT", "long", Decimal("5"))
        [pid] = await insert_positions(database_url, [row(binance, "ETHUSDT", "long", "3")])
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
        await ask(h, alert, "Set DB to exchange size", "Set position")
        record = await h.runtime.database.pool.fetchrow("SELECT payload FROM reconbot.confirmations")
        assert json.loads(record["payload"]) == {
            "account": binance.name,
            "market": "ETHUSDT",
            "side": "long",
            "action": "set_db_quantity",
            "row": {"id": str(pid), "symbol": "ETHUSDT", "quantity": "3"},
            "exchange_quantity": "5",
        }


# -- an order whose answer was lost ------------------------------------------------------------------------------


async def test_a_lost_order_answer_is_settled_by_a_re_read(database_url, new_account, telegram, exchange_emulator):
    """The venue executes the order after ccxt gave up waiting: not "nothing changed", but what happened."""
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        binance.set_position("ETHUSDT", "short", Decimal("1.5"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Close on exchange", "Close ")
        binance.fail("timeout", endpoint="orders", times=1)  # held past the 1 s client timeout, then executed

        text = await confirm_and_read(h, question)
        assert "✅ Done" in text and "the exchange's answer was lost" in text and "closed" in text
        assert binance.positions == {}
        [entry] = await fetch_audit(database_url)
        assert (entry["action"], entry["outcome"]) == ("close_orphan", "done")
        assert entry["settled_at"] is not None
        assert json.loads(entry["before"])["client_order_id"].startswith("reconbot-")
        await h.edited_to(alert, "Fixed")


async def test_a_lost_order_that_did_not_execute_is_refused_after_the_re_read(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        binance.set_position("ETHUSDT", "short", Decimal("1.5"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Close on exchange", "Close ")
        binance.fail("http_500", endpoint="orders", times=1)  # a gateway error: was it placed? only a read tells

        text = await confirm_and_read(h, question)
        assert "Nothing changed" in text and "still open at 1.5: not executed" in text
        [entry] = await fetch_audit(database_url)
        assert (entry["outcome"], entry["settled_at"] is not None) == ("refused", True)
        assert binance.positions[("ETHUSDT", "short")].size == Decimal("1.5")
        assert h.telegram.message(ALERT_CHAT, alert.message_id).has_keyboard, "still open, still fixable"


async def test_an_unsettled_lost_order_stays_unknown(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        binance.set_position("ETHUSDT", "short", Decimal("1.5"))
        await h.reconciler.check(SCAN_KINDS)
        await h.wait_alerts(1)
        binance.fail("http_500", endpoint="orders", times=1)
        binance.fail("http_500", endpoint="positions", times=3)  # the settling re-reads fail too
        gateway = h.runtime.gateways[binance.name]
        plan = CloseOrphan(account=binance.name, market="ETHUSDT", side=Side.SHORT, quantity=Decimal("1.5"))
        original = gateway.positions
        calls = 0

        async def read_once_then_fail():  # the pre-order check reads fine; only the settling reads fail
            nonlocal calls
            calls += 1
            if calls == 1:
                binance.clear_faults()
                result = await original()
                binance.fail("http_500", endpoint="orders", times=1)
                binance.fail("http_500", endpoint="positions", times=3)
                return result
            return await original()

        gateway.positions = read_once_then_fail
        outcome = await h.runtime.fixes.apply(plan, "test")
        assert outcome.status is FixStatus.UNKNOWN, outcome
        assert "whether the order executed is unknown" in outcome.message
        [entry] = await fetch_audit(database_url)
        assert (entry["outcome"], entry["settled_at"]) == ("unknown", None)


# -- never consumed without an outcome ---------------------------------------------------------------------------


async def test_stop_lets_a_confirmed_fix_finish_and_update_its_message(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        binance.set_position("ETHUSDT", "short", Decimal("1.5"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Close on exchange", "Close ")
        binance.fail("timeout", endpoint="orders", times=1)  # the fix takes a few seconds
        await h.press(OPERATOR, question, "Confirm")
        await asyncio.sleep(0.3)
        assert h.runtime.fixes._running, "the fix is under way"
        await h.runtime.fixes.drain(30)  # what a graceful stop does before closing anything
        await h.telegram.wait_until(lambda: "Done" in h.telegram.message(ALERT_CHAT, question.message_id).text)
        assert [e["outcome"] for e in await fetch_audit(database_url)] == ["done"]


async def test_a_fix_abandoned_at_stop_is_audited_as_interrupted(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        binance.set_position("ETHUSDT", "short", Decimal("1.5"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Close on exchange", "Close ")
        binance.fail("timeout", endpoint="positions", times=1)  # the re-read before the order hangs
        await h.press(OPERATOR, question, "Confirm")
        await asyncio.sleep(0.3)
        assert not await h.runtime.fixes.drain(0.1)
        [entry] = await fetch_audit(database_url)
        assert (entry["action"], entry["outcome"]) == ("close_orphan", "interrupted")
        assert entry["confirmation_id"] is not None
        assert binance.orders == []


# -- buttons that cannot be used -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["f:details:9223372036854775808", "c:99999999999999999999999:y", "f:keep:0"])
async def test_a_press_with_an_id_out_of_range_gets_a_polite_answer(database_url, new_account, telegram, data):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        binance.set_position("ETHUSDT", "long", Decimal("1"))
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        answer = await h.press(OPERATOR, alert, data=data)
        assert answer.params["text"] == "This button is not valid (any more)."
        await h.settled()
        assert h.telegram.unanswered_callback_queries() == []


async def test_a_press_on_an_alert_already_edited_is_answered_without_error(
    database_url, new_account, telegram, caplog
):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        [pid] = await insert_positions(database_url, [row(binance, "BTCUSDT", "long", "1")])
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
        question = await ask(h, alert, "Mark closed", "Mark position")
        await h.press(OPERATOR, question, "Confirm")
        keep = alert.button(text="Acknowledge")["callback_data"]
        await h.edited_to(alert, "Fixed")  # the alert lost its buttons
        for _ in range(2):  # an old client still shows them: press twice
            answer = await h.press(OPERATOR, alert, data=keep)
            assert "already fixed" in answer.params["text"]
        await h.settled()
        assert h.telegram.unanswered_callback_queries() == []
        assert "Traceback" not in caplog.text and "failed" not in caplog.text.lower()
        assert (await fetch_positions_table(database_url))[0]["id"] == pid
