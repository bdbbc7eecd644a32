"""Protection end to end: the venues' resting stops decide whether a position is protected, and reconbot says so
truthfully — a protected orphan never reads "no stop", an unreadable order book is "unknown", a tracked
position without a stop is unprotected, and a stop with no position to close is a stray order that an
operator can cancel with two taps."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from main import run_cli
from services.detector import DetectionRules, detect
from services.model import SCAN_KINDS, DbPosition, ExchangePosition, FindingKind, Side
from services.protection import OrderPurpose, Protection, ProtectiveOrder, protection_of, unknown
from tests.chatops import ALERT_CHAT, OPERATOR, Harness, running_chatops, telegram_settings
from tests.helpers import fetch_audit, insert_positions, prepare_database, write_config
from tests.helpers import position_row as row
from tests.test_reach import SCHEMAS, execute, seed_row, write

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


def order(
    purpose=OrderPurpose.STOP, trigger="60000", quantity: str | None = "1", closes=Side.LONG, market="BTCUSDT", **kw
) -> ProtectiveOrder:
    return ProtectiveOrder(
        account="a",
        market=market,
        symbol=f"{market}:X",
        order_id=kw.pop("order_id", "1"),
        purpose=purpose,
        closes=closes,
        trigger_price=Decimal(trigger) if trigger else None,
        quantity=Decimal(quantity) if quantity is not None else None,
        source="algo",
        created_at=kw.pop("created_at", LONG_AGO),
        **kw,
    )


# -- what a position's protection is (pure) ------------------------------------------------------------------------


def test_a_stop_for_the_whole_position_protects_it_whatever_its_size():
    state = protection_of(Decimal("3"), Decimal("65000"), [order(quantity=None)])
    assert (state.level, state.stop_price, state.covered) == (Protection.STOP, Decimal("60000"), Decimal("3"))


def test_stops_that_cover_part_of_the_size_are_partial_and_say_how_much():
    state = protection_of(
        Decimal("2"), Decimal("65000"), [order(quantity="0.5"), order(quantity="0.25", trigger="59000")]
    )
    assert (state.level, state.covered) == (Protection.PARTIAL, Decimal("0.75"))
    assert state.stop_price == Decimal("60000"), "the trigger nearest the mark fires first"


def test_take_profits_alone_are_no_protection():
    state = protection_of(Decimal("1"), Decimal("65000"), [order(purpose=OrderPurpose.TAKE_PROFIT, trigger="70000")])
    assert state.level is Protection.NONE and state.stop_price is None


def test_stops_adding_up_to_the_size_are_full_protection_and_a_trailing_stop_counts():
    orders = [order(quantity="0.5"), order(purpose=OrderPurpose.TRAILING_STOP, trigger=None, quantity="0.5")]
    assert protection_of(Decimal("1"), Decimal("65000"), orders).level is Protection.STOP


def test_a_positions_own_stop_is_full_protection():
    state = protection_of(Decimal("1"), Decimal("65000"), [], own_stop=Decimal("61000"))
    assert (state.level, state.stop_price) == (Protection.STOP, Decimal("61000"))


@pytest.mark.parametrize(
    ("side", "liquidation", "stop", "beyond"),
    [
        (Side.LONG, "62000", "60000", True),  # a long is liquidated on the way down, before its stop at 60000
        (Side.LONG, "62000", "62000", True),  # at the liquidation price: liquidation takes it first
        (Side.LONG, "62000", "63000", False),
        (Side.SHORT, "164.4", "170", True),  # a short is liquidated on the way up
        (Side.SHORT, "164.4", "164.4", True),
        (Side.SHORT, "164.4", "160", False),
    ],
)
def test_a_stop_beyond_the_liquidation_price_is_no_protection(side, liquidation, stop, beyond):
    mark = Decimal("65000") if side is Side.LONG else Decimal("158")
    closing = order(trigger=stop, quantity=None, closes=side)
    state = protection_of(Decimal("1"), mark, [closing], side=side, liquidation=Decimal(liquidation))
    if beyond:
        assert (state.level, state.stop_price, state.beyond_liquidation) == (Protection.NONE, None, Decimal(stop))
    else:
        assert (state.level, state.stop_price, state.beyond_liquidation) == (Protection.STOP, Decimal(stop), None)
    own = protection_of(Decimal("1"), mark, [], own_stop=Decimal(stop), side=side, liquidation=Decimal(liquidation))
    assert own.level is (Protection.NONE if beyond else Protection.STOP), "a position's own stop too"


def test_only_the_stops_that_can_fire_cover_the_size():
    orders = [order(quantity="0.5", trigger="63000"), order(quantity="0.5", trigger="60000", order_id="2")]
    state = protection_of(Decimal("1"), Decimal("65000"), orders, side=Side.LONG, liquidation=Decimal("62000"))
    assert (state.level, state.covered, state.stop_price) == (Protection.PARTIAL, Decimal("0.5"), Decimal("63000"))
    assert state.beyond_liquidation == Decimal("60000")
    unknown_liquidation = protection_of(Decimal("1"), Decimal("65000"), orders, side=Side.LONG)
    assert unknown_liquidation.level is Protection.STOP, "without a liquidation price every stop counts"


# -- the detector -------------------------------------------------------------------------------------------------


def position(protection, market="BTCUSDT", side=Side.LONG, opened=LONG_AGO) -> ExchangePosition:
    return ExchangePosition(
        account="a",
        exchange="binanceusdm",
        market=market,
        symbol=market,
        side=side,
        quantity=Decimal("1"),
        mark_price=Decimal("65000"),
        protection=protection,
        opened_at=opened,
    )


def db_row(market="BTCUSDT", side=Side.LONG, quantity="1") -> DbPosition:
    return DbPosition(
        id="7",
        account="a",
        exchange="binanceusdm",
        db_exchange="binance",
        symbol=market,
        market=market,
        side=side,
        quantity=Decimal(quantity),
        opened_at=LONG_AGO,
    )


def kinds_found(db, exchange, orders=(), **kw) -> list[FindingKind]:
    detection = detect(db, exchange, DetectionRules(), NOW, SCAN_KINDS, orders=orders, **kw)
    return [f.kind for f in detection.findings]


def test_a_tracked_position_without_a_stop_is_unprotected_and_with_one_it_is_not():
    none = protection_of(Decimal("1"), None, [])
    partial = protection_of(Decimal("1"), None, [order(quantity="0.4")])
    full = protection_of(Decimal("1"), None, [order(quantity=None)])
    assert kinds_found([db_row()], [position(none)]) == [FindingKind.UNPROTECTED]
    assert kinds_found([db_row()], [position(partial)]) == [FindingKind.UNPROTECTED]
    assert kinds_found([db_row()], [position(full)]) == []


def test_unknown_protection_is_never_reported_as_missing():
    assert kinds_found([db_row()], [position(unknown("rate limited"))]) == []


def test_unprotected_waits_for_the_grace_window_and_can_be_turned_off():
    none = protection_of(Decimal("1"), None, [])
    young = detect([db_row()], [position(none, opened=NOW - timedelta(seconds=5))], DetectionRules(), NOW, SCAN_KINDS)
    assert young.findings == () and len(young.pending) == 1
    assert kinds_found([db_row()], [position(none)], require_stop=False) == []


def test_a_mismatched_position_is_a_mismatch_not_unprotected():
    none = protection_of(Decimal("1"), None, [])
    assert kinds_found([db_row(quantity="3")], [position(none)]) == []


def test_a_stop_with_no_position_to_close_is_a_stray_order():
    stray = order(market="ETHUSDT", order_id="9")
    detection = detect([], [], DetectionRules(), NOW, SCAN_KINDS, orders=[stray], venue="binanceusdm")
    [finding] = detection.findings
    assert (finding.kind, finding.key.market, finding.key.side, finding.orders) == (
        FindingKind.STRAY_ORDER,
        "ETHUSDT",
        Side.LONG,
        (stray,),
    )
    assert finding.exchange == "binanceusdm"


def test_an_order_closing_the_other_leg_of_a_hedged_market_is_stray():
    held_long = position(protection_of(Decimal("1"), None, [order(quantity=None)]))
    stray_short = order(closes=Side.SHORT, trigger="70000", order_id="5")
    kinds = kinds_found([db_row()], [held_long], orders=[order(quantity=None), stray_short])
    assert kinds == [FindingKind.STRAY_ORDER]


def test_no_stray_orders_when_the_orders_are_not_known_or_just_placed():
    assert kinds_found([], [], orders=None) == []
    fresh = order(created_at=NOW - timedelta(seconds=3))
    detection = detect([], [], DetectionRules(), NOW, SCAN_KINDS, orders=[fresh])
    assert detection.findings == () and len(detection.pending) == 1


# -- the command line ---------------------------------------------------------------------------------------------


async def scan_json(tmp_path, db, accounts, capsys, **scan) -> tuple[int, dict]:
    config = write_config(tmp_path / "c.yaml", db, accounts, **scan)
    code = await run_cli(["scan", "--config", str(config), "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


async def test_a_bybit_orphan_protected_by_a_conditional_order_is_not_called_naked(tmp_path, db, new_account, capsys):
    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"), entry_price=Decimal("0.13"), mark_price=Decimal("0.13"))
    bybit.place_protective_order("AVLUSDT", "sell", "stop_market", trigger_price="0.12", close_position=True)
    code, report = await scan_json(tmp_path, db, [bybit], capsys)
    [orphan] = report["findings"]
    assert code == 2 and orphan["kind"] == "orphan"
    assert (orphan["protection"], orphan["stop_loss"], orphan["stop_distance_pct"]) == ("stop", "0.12", "7.69")


async def test_a_binance_orphan_reads_classic_and_algo_stops(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), mark_price=Decimal("65000"))
    binance.set_position("ETHUSDT", "short", Decimal("4"), mark_price=Decimal("3000"))
    binance.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="0.4", service="classic"
    )
    binance.place_protective_order("ETHUSDT", "buy", "stop_market", trigger_price=3300, close_position=True)
    _code, report = await scan_json(tmp_path, db, [binance], capsys)
    by_market = {f["symbol"]: f for f in report["findings"]}
    assert (by_market["BTCUSDT"]["protection"], by_market["BTCUSDT"]["protected_quantity"]) == ("partial", "0.4")
    assert (by_market["ETHUSDT"]["protection"], by_market["ETHUSDT"]["stop_loss"]) == ("stop", "3300")


async def test_a_failed_order_read_makes_protection_unknown_never_none(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    binance.fail("http_500", endpoint="open_orders")
    code, report = await scan_json(tmp_path, db, [binance], capsys)
    [orphan] = report["findings"]
    assert code == 2 and orphan["protection"] == "unknown" and orphan["stop_loss"] is None
    assert "exchange" in orphan["protection_note"]
    [account] = report["accounts"]
    assert account["status"] == "ok" and account["orders_error"]

    config = write_config(tmp_path / "c.yaml", db, [binance])
    await run_cli(["scan", "--config", str(config)])
    text, _ = capsys.readouterr()
    assert "stop-loss       unknown: the orders could not be read" in text
    assert "NONE" not in text


async def test_a_tracked_position_without_a_stop_is_a_warning(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    [pid] = await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    code, report = await scan_json(tmp_path, db, [binance], capsys)
    [finding] = report["findings"]
    assert (code, finding["kind"], finding["protection"], finding["db_position_id"]) == (
        1,
        "unprotected",
        "none",
        str(pid),
    )
    code, report = await scan_json(tmp_path, db, [binance], capsys, require_stop_loss=False)
    assert (code, report["findings"]) == (0, [])


async def test_a_per_account_override_turns_the_stop_requirement_off(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    text = config.read_text().replace("timeout_s: 1.0", "timeout_s: 1.0\n  require_stop_loss: false")
    config.write_text(text)
    assert await run_cli(["scan", "--config", str(config), "--json"]) == 0
    capsys.readouterr()


async def test_a_stop_left_behind_is_a_stray_order_warning(tmp_path, db, new_account, capsys):
    bybit = new_account("bybit")
    bybit.set_position("BTCUSDT", "long", Decimal("1"), stop_loss=Decimal("60000"))
    await insert_positions(db, [row(bybit, "BTCUSDT", "long", "1")])
    bybit.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000, quantity="2")
    code, report = await scan_json(tmp_path, db, [bybit], capsys)
    [stray] = report["findings"]
    assert (code, stray["kind"], stray["symbol"], stray["side"]) == (1, "stray_order", "ETHUSDT", "long")
    [shown] = stray["orders"]
    assert (shown["purpose"], shown["trigger_price"], shown["quantity"], shown["source"]) == (
        "stop",
        "3000",
        "2",
        "conditional",
    )


# -- Telegram -----------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def chatops(database_url, telegram, accounts, **overrides) -> AsyncIterator[Harness]:
    settings = telegram_settings(database_url, accounts, telegram, **overrides)
    async with running_chatops(settings, telegram) as h:
        yield h


async def test_an_unprotected_alert_says_what_the_db_believes_and_offers_snooze_and_keep(
    database_url, new_account, telegram
):
    bybit = new_account("bybit")
    bybit.set_position("SOLUSDT", "short", Decimal("10"), mark_price=Decimal("150"))
    bybit.place_protective_order("SOLUSDT", "buy", "stop_market", trigger_price=160, quantity="4")
    async with chatops(database_url, telegram, [bybit]) as h:
        await insert_positions(database_url, [row(bybit, "SOLUSDT", "short", "10")])
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        assert "Unprotected position" in alert.text
        assert "PARTIAL: stops cover 4 of 10 at 160 (6.67% from mark)" in alert.text
        assert alert.button_texts == ["Snooze 1h", "Acknowledge", "Details"]


async def test_cancel_order_cancels_exactly_the_orders_shown(database_url, new_account, telegram):
    binance = new_account("binance")
    left = binance.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000, quantity="2")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        assert "Stray order" in alert.text and f"stop 3000 for 2 (#…{left.order_id[-8:]}, algo)" in alert.text
        assert alert.button_texts == ["Cancel order", "Snooze 1h", "Acknowledge", "Details"]
        later = binance.place_protective_order(
            "ETHUSDT", "sell", "take_profit_market", trigger_price=4000, quantity="2"
        )
        await h.press(OPERATOR, alert, "Cancel order")
        question = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Cancel this order"))
        assert "stop at 3000 for 2" in question.text
        await h.press(OPERATOR, question, "Confirm")
        done = await h.edited_to(question, "Done")
        assert f"order #{left.order_id} on ETHUSDT LONG on {binance.name} cancelled" in done.text
        assert [o.order_id for o in binance.protective_orders] == [later.order_id], "only what was shown"
        [entry] = await fetch_audit(database_url)
        assert (entry["action"], entry["outcome"], entry["target"]) == (
            "cancel_orders",
            "done",
            f"order #{left.order_id} on ETHUSDT LONG on {binance.name}",
        )
        assert "Fixed" in (await h.edited_to(alert, "Fixed")).text


async def test_cancel_is_refused_when_the_order_now_protects_a_position_or_changed(database_url, new_account, telegram):
    binance = new_account("binance")
    stray = binance.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000, quantity="2")
    async with chatops(database_url, telegram, [binance], account={"allow_exchange_orders": True}) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        await h.press(OPERATOR, alert, "Cancel order")
        question = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Cancel this order"))
        binance.set_position("ETHUSDT", "long", Decimal("2"))  # the entry filled: the stop protects it now
        await h.press(OPERATOR, question, "Confirm")
        refused = await h.edited_to(question, "Nothing changed")
        assert "the stray order on ETHUSDT LONG" in refused.text and "no longer holds" in refused.text
        assert [o.order_id for o in binance.protective_orders] == [stray.order_id]
        assert [e["outcome"] for e in await fetch_audit(database_url)] == ["refused"]


async def test_without_exchange_orders_allowed_there_is_no_cancel_button(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000, quantity="2")
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        assert alert.button_texts == ["Snooze 1h", "Acknowledge", "Details"]
        forged = alert.button(text="Acknowledge")["callback_data"].replace("ack", "xcancel")
        answer = await h.press(OPERATOR, alert, data=forged)
        assert "does not allow exchange orders" in answer.params["text"]
        assert len(binance.protective_orders) == 1


async def test_an_unreadable_order_book_keeps_order_findings_open(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000, quantity="2")
    async with chatops(database_url, telegram, [binance]) as h:
        first = await h.reconciler.check(SCAN_KINDS)
        assert [f.kind for f in first.live] == [FindingKind.STRAY_ORDER]
        binance.fail("http_500", endpoint="open_orders")
        second = await h.reconciler.check(SCAN_KINDS)
        assert [f.kind for f in second.live] == [FindingKind.STRAY_ORDER] and second.resolved == ()
        binance.clear_faults()
        binance.cancel_protective_order(binance.protective_orders[0].order_id)
        third = await h.reconciler.check(SCAN_KINDS)
        assert third.live == () and [f.kind for f in third.resolved] == [FindingKind.STRAY_ORDER]


@pytest.mark.parametrize(
    ("side", "entry", "stop", "order_side"),
    [("long", "65000", "60000", "sell"), ("short", "158", "170", "buy")],
)
async def test_a_stop_beyond_liquidation_leaves_the_position_unprotected_and_says_why(
    database_url, new_account, telegram, side, entry, stop, order_side
):
    """At 20x a position is liquidated about 5 % from its entry: a stop further away can never fire."""
    binance = new_account("binance")
    symbol = "BTCUSDT" if side == "long" else "SOLUSDT"
    binance.set_position(symbol, side, Decimal("1"), entry_price=Decimal(entry), mark_price=Decimal(entry), leverage=20)
    binance.place_protective_order(symbol, order_side, "stop_market", trigger_price=stop, close_position=True)
    async with chatops(database_url, telegram, [binance]) as h:
        await insert_positions(database_url, [row(binance, symbol, side, "1")])
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
        [finding] = await h.runtime.findings.live()
    assert finding.kind is FindingKind.UNPROTECTED
    liquidation = finding.details.liquidation_price
    assert liquidation is not None and (liquidation > Decimal(stop) if side == "long" else liquidation < Decimal(stop))
    assert "Unprotected position" in alert.text.splitlines()[0]
    assert "🛡️ Stop-loss" not in alert.text, "never shown as protection"
    assert f"the stop at {stop} is beyond the liquidation price" in alert.text
    assert "liquidation comes first" in alert.text


async def test_adopt_asks_with_the_protection_the_position_has(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("65000"), leverage=5)
    binance.set_position("ETHUSDT", "long", Decimal("2"), entry_price=Decimal("3000"), leverage=5)
    binance.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=2800, close_position=True)
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        alerts = await h.wait_alerts(2)
        questions = {}
        for market in ("BTCUSDT", "ETHUSDT"):
            alert = next(a for a in alerts if f"{market} LONG" in a.text)
            await h.press(OPERATOR, alert, "Adopt into DB")
            questions[market] = await h.message_where(ALERT_CHAT, lambda m, x=market: m.text.startswith(f"Adopt {x}"))
    assert "No stop-loss covers it on the exchange: once adopted it is an unprotected position" in (
        questions["BTCUSDT"].text
    )
    assert "It keeps its stop at 2800 on the exchange." in questions["ETHUSDT"].text


async def test_a_stray_order_is_labelled_by_its_own_side_and_reduce_only_flag(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.place_protective_order("DOGEUSDT", "sell", "stop_market", trigger_price="0.1", quantity="1000")
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)
    first, where, *_ = alert.text.splitlines()
    assert "Stray order" in first
    assert where.startswith("DOGEUSDT SELL stop, reduce-only · "), "the order's own side, not a position's"
    assert "DOGEUSDT LONG" not in alert.text
    assert "Reduce-only, they cannot open one, but they will close a position opened there later" in alert.text
    assert "can open a position" not in alert.text, "a reduce-only order cannot"


@pytest.fixture
async def seed_db(database_url):
    await prepare_database(database_url)
    await execute(database_url, (SCHEMAS / "seed_monitoring_positions.sql").read_text())
    return database_url


async def test_an_unprotected_finding_says_what_the_seed_bot_believes(tmp_path, seed_db, new_account, capsys):
    """The seed's table keeps ``stop_loss`` and ``has_stop_loss``: the alert contrasts them with the exchange."""
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("0.5"))
    await seed_row(seed_db, "binance", "ETHUSDT", "long", "0.5", stop_loss=Decimal("58000"), has_stop_loss=True)
    config = write(tmp_path, seed_db, [binance], {"preset": "seed"})
    code = await run_cli(["scan", "--config", str(config)])
    text, _ = capsys.readouterr()
    assert code == 1
    assert "UNPROTECTED  ETHUSDT LONG" in text
    assert "DB belief       DB says stop at 58000; the exchange has none" in text
