"""Why a position vanished, read from each venue's own history through the real ccxt clients against the
loopback venues: every cause on both venues, partial closes, hedge legs, the window, an empty history, a failed
read and a malformed answer (an unknown cause with its reason, never an error), and what the read costs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.causes import CloseKind
from services.model import Side

VENUES = ("binance", "bybit")
HISTORY_PATHS = {
    "binance": ("/fapi/v1/userTrades", "/fapi/v1/order"),
    "bybit": ("/v5/execution/list", "/v5/position/closed-pnl"),
}


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def history_requests(account, since: float) -> list[str]:
    return [r.path for r in account.requests_since(since) if r.endpoint == "history"]


HOUR_AGO = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        ("liquidation", CloseKind.LIQUIDATION),
        ("adl", CloseKind.ADL),
        ("manual", CloseKind.MANUAL_OR_OTHER),
        ("settlement", CloseKind.SETTLEMENT),
        ("delivery", CloseKind.SETTLEMENT),
    ],
)
async def test_forced_and_plain_closes(venue, cause, kind, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("0.5"), entry_price=Decimal("62000"), mark_price=Decimal("61500"))
    closed_at = HOUR_AGO + timedelta(minutes=3)
    [fill] = account.close_position("BTCUSDT", "long", cause=cause, price="61210.5", at_ms=ms(closed_at))
    gateway = gateway_for(account)
    started = time.time()
    found = await gateway.close_cause("BTCUSDT", Side.LONG, HOUR_AGO - timedelta(days=1))
    assert found.kind is kind, found
    assert (found.closed_at, found.exit_price, found.closed_quantity) == (closed_at, Decimal("61210.5"), Decimal("0.5"))
    assert found.currency == "USDT"
    assert found.order_id == fill.order_id
    assert found.realized_pnl is not None and found.realized_pnl == fill.realized_pnl == Decimal("-394.75")
    assert found.note is None
    assert history_requests(account, started) == list(HISTORY_PATHS[venue]), "two history requests, no more"


@pytest.mark.parametrize("venue", VENUES)
async def test_a_triggered_stop_loss_and_take_profit(venue, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"), stop_loss=58000)
    account.set_position("ETHUSDT", "short", Decimal("2"), entry_price=Decimal("3000"))
    account.set_position_stops("ETHUSDT", "short", take_profit=2800)
    account.close_position("BTCUSDT", "long", cause="stop_loss")
    account.close_position("ETHUSDT", "short", cause="take_profit")
    gateway = gateway_for(account)
    stopped = await gateway.close_cause("BTCUSDT", Side.LONG, HOUR_AGO)
    took = await gateway.close_cause("ETHUSDT", Side.SHORT, HOUR_AGO)
    assert (stopped.kind, stopped.exit_price, stopped.realized_pnl) == (CloseKind.STOP_LOSS, 58000, -2000)
    assert (took.kind, took.exit_price, took.realized_pnl) == (CloseKind.TAKE_PROFIT, 2800, 400)


@pytest.mark.parametrize("venue", VENUES)
async def test_a_trailing_stop_is_a_stop_loss(venue, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("SOLUSDT", "long", Decimal("10"), entry_price=Decimal("140"))
    if venue == "binance":
        account.place_protective_order(
            "SOLUSDT", "sell", "trailing_stop_market", trigger_price=160, quantity=10, callback_rate="1.5",
            service="classic",
        )  # fmt: skip
    else:
        account.set_position_stops("SOLUSDT", "long", trailing_stop="2.4")
    account.close_position("SOLUSDT", "long", cause="trailing_stop", price="157.6")
    found = await gateway_for(account).close_cause("SOLUSDT", Side.LONG, HOUR_AGO)
    assert (found.kind, found.exit_price) == (CloseKind.STOP_LOSS, Decimal("157.6"))


async def test_a_bybit_plain_conditional_order_is_a_stop_or_a_take_profit_by_its_result(new_account, gateway_for):
    account = new_account("bybit")
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.set_position("ETHUSDT", "long", Decimal("1"), entry_price=Decimal("3000"))
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=59000, quantity=1)
    account.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3100, quantity=1)
    account.close_position("BTCUSDT", "long", cause="stop_loss")
    account.close_position("ETHUSDT", "long", cause="stop_loss")
    gateway = gateway_for(account)
    loss = await gateway.close_cause("BTCUSDT", Side.LONG, HOUR_AGO)
    gain = await gateway.close_cause("ETHUSDT", Side.LONG, HOUR_AGO)
    assert (loss.kind, gain.kind) == (CloseKind.STOP_LOSS, CloseKind.TAKE_PROFIT)


@pytest.mark.parametrize("venue", VENUES)
async def test_a_partial_liquidation_names_the_part_it_closed(venue, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("ETHUSDT", "short", Decimal("4"), entry_price=Decimal("3000"))
    [fill] = account.close_position("ETHUSDT", "short", cause="liquidation", qty="1.5", price="3280")
    found = await gateway_for(account).close_cause("ETHUSDT", Side.SHORT, HOUR_AGO)
    assert (found.kind, found.closed_quantity, found.exit_price) == (CloseKind.LIQUIDATION, Decimal("1.5"), 3280)
    assert found.realized_pnl == fill.realized_pnl == Decimal("-420")


@pytest.mark.parametrize("venue", VENUES)
async def test_the_last_closing_order_explains_the_close(venue, new_account, gateway_for):
    """An earlier manual reduction, then the ADL that took the rest: the cause is the ADL."""
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.close_position("BTCUSDT", "long", cause="manual", qty="0.4", price="61000", at_ms=ms(HOUR_AGO))
    account.close_position("BTCUSDT", "long", cause="adl", price="63000")
    found = await gateway_for(account).close_cause("BTCUSDT", Side.LONG, HOUR_AGO - timedelta(hours=1))
    assert (found.kind, found.closed_quantity, found.realized_pnl) == (CloseKind.ADL, Decimal("0.6"), 1800)


@pytest.mark.parametrize("venue", VENUES)
async def test_hedge_mode_reads_only_the_vanished_leg(venue, new_account, gateway_for):
    account = new_account(venue, hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.set_position("BTCUSDT", "short", Decimal("1"), entry_price=Decimal("60000"))
    account.close_position("BTCUSDT", "short", cause="liquidation", price="66000", at_ms=ms(HOUR_AGO))
    account.close_position("BTCUSDT", "long", cause="manual", price="61000")
    gateway = gateway_for(account)
    short = await gateway.close_cause("BTCUSDT", Side.SHORT, HOUR_AGO - timedelta(hours=1))
    long = await gateway.close_cause("BTCUSDT", Side.LONG, HOUR_AGO - timedelta(hours=1))
    assert (short.kind, short.exit_price) == (CloseKind.LIQUIDATION, 66000)
    assert (long.kind, long.exit_price) == (CloseKind.MANUAL_OR_OTHER, 61000)


@pytest.mark.parametrize("venue", VENUES)
async def test_a_close_before_the_row_was_opened_explains_nothing(venue, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.close_position("BTCUSDT", "long", cause="liquidation", at_ms=ms(HOUR_AGO - timedelta(hours=2)))
    found = await gateway_for(account).close_cause("BTCUSDT", Side.LONG, HOUR_AGO)
    assert found.kind is CloseKind.UNKNOWN
    assert found.note == f"no trade closing BTCUSDT LONG in the venue's history since {HOUR_AGO:%Y-%m-%d %H:%M} UTC"


@pytest.mark.parametrize("venue", VENUES)
async def test_an_empty_history_is_an_unknown_cause_that_says_so(venue, new_account, gateway_for):
    account = new_account(venue)
    found = await gateway_for(account).close_cause("BTCUSDT", Side.SHORT, None)
    assert found.kind is CloseKind.UNKNOWN and found.closed_at is None
    assert found.note is not None and found.note.startswith("no trade closing BTCUSDT SHORT in the venue's history")


@pytest.mark.parametrize("venue", VENUES)
async def test_a_failed_history_read_is_an_unknown_cause_with_the_reason(venue, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.close_position("BTCUSDT", "long", cause="liquidation")
    account.fail("http_500", "history")
    found = await gateway_for(account).close_cause("BTCUSDT", Side.LONG, HOUR_AGO)
    assert found.kind is CloseKind.UNKNOWN
    assert found.note is not None and found.note.startswith("the history could not be read: ")
    assert account.api_key not in found.note and account.secret not in found.note


@pytest.mark.parametrize("venue", VENUES)
async def test_a_failed_second_read_keeps_what_the_first_one_found(venue, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.close_position("BTCUSDT", "long", cause="liquidation", price="55000")
    second = HISTORY_PATHS[venue][1]
    account.tamper(second, lambda payload: "not json at all")
    found = await gateway_for(account).close_cause("BTCUSDT", Side.LONG, HOUR_AGO)
    assert (found.exit_price, found.closed_quantity) == (55000, 1)
    if venue == "binance":  # the order says who placed it
        assert found.kind is CloseKind.UNKNOWN
        assert found.note is not None and found.note.startswith("the closing order could not be read: ")
    else:  # the execution says it; only the PnL is missing
        assert (found.kind, found.realized_pnl) == (CloseKind.LIQUIDATION, None)
        assert found.note is not None and found.note.startswith("the realized PnL could not be read: ")


@pytest.mark.parametrize("venue", VENUES)
async def test_a_malformed_history_row_is_an_unknown_cause_naming_the_row(venue, new_account, gateway_for):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.close_position("BTCUSDT", "long", cause="liquidation")
    path = HISTORY_PATHS[venue][0]
    if venue == "binance":
        account.tamper(path, lambda rows: [{**row, "price": "abc"} for row in rows])
    else:
        account.tamper(path, lambda result: {**result, "list": ["not a row"]})
    found = await gateway_for(account).close_cause("BTCUSDT", Side.LONG, HOUR_AGO)
    assert found.kind is CloseKind.UNKNOWN
    assert found.note is not None and found.note.startswith("the history could not be read: bad response: ")
    assert ("price 'abc'" if venue == "binance" else "is not an object") in found.note


async def test_binance_history_weighs_six(new_account, gateway_for):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.close_position("BTCUSDT", "long", cause="liquidation")
    gateway = gateway_for(account)
    await gateway.load_markets()
    started = time.time()
    await gateway.close_cause("BTCUSDT", Side.LONG, HOUR_AGO)
    assert sum(r.weight for r in account.requests_since(started)) == 6  # userTrades 5 + order 1
