"""Protective orders (resting stops, take-profits and trailing stops) read and cancelled through the real ccxt
clients against the loopback venues: every home a venue keeps them in is read, an order that would open is
not one, and a read that fails or makes no sense raises instead of reading as "no stops"."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.protection import OrderPurpose, ProtectiveOrder
from services.settings import AccountSettings
from services.venues import BadAnswer, Rejected, VenueError, gateway_for
from tests.helpers import account_config

STOP, TRAILING, TAKE = OrderPurpose.STOP, OrderPurpose.TRAILING_STOP, OrderPurpose.TAKE_PROFIT


@pytest.fixture
async def open_gateway():
    made = []

    def make(account, **extra):
        gateway = gateway_for(AccountSettings(**account_config(account, **extra)))
        gateway.client.timeout_on_exit = 0
        gateway.client.enableRateLimit = False  # ccxt spaces weight-40 reads 2 s apart; the emulator counts weight
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.close()


def summary(orders: list[ProtectiveOrder]) -> set[tuple]:
    """What a check needs of each order: where, what, which side it closes, at what price, how much, and home."""
    return {(o.market, o.purpose, o.closes.value, o.trigger_price, o.quantity, o.source) for o in orders}


def by_id(orders: list[ProtectiveOrder]) -> dict[str, ProtectiveOrder]:
    return {o.order_id: o for o in orders}


# ---------------------------------------------------------------------------------------------- Binance


async def test_binance_reads_classic_stops_take_profits_and_trailing_stops(new_account, open_gateway):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("ETHUSDT", "short", Decimal("2"))
    stop = account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=61000, quantity="0.4", service="classic", client_order_id="sl1"
    )
    account.place_protective_order(
        "BTCUSDT", "sell", "stop", trigger_price=60000, limit_price=59900, quantity="0.3", service="classic"
    )
    account.place_protective_order(
        "BTCUSDT", "sell", "take_profit", trigger_price=70000, limit_price=70100, quantity="0.6", service="classic"
    )
    account.place_protective_order(
        "ETHUSDT", "buy", "trailing_stop_market", trigger_price=3600, quantity=1, callback_rate="1.5", service="classic"
    )
    orders = await open_gateway(account).protective_orders()
    assert summary(orders) == {
        ("BTCUSDT", STOP, "long", Decimal("61000"), Decimal("0.4"), "classic"),
        ("BTCUSDT", STOP, "long", Decimal("60000"), Decimal("0.3"), "classic"),
        ("BTCUSDT", TAKE, "long", Decimal("70000"), Decimal("0.6"), "classic"),
        ("ETHUSDT", TRAILING, "short", Decimal("3600"), Decimal("1"), "classic"),
    }
    first = by_id(orders)[stop.order_id]
    assert (first.symbol, first.client_order_id, first.category) == ("BTC/USDT:USDT", "sl1", None)
    assert first.created_at is not None and int(first.created_at.timestamp() * 1000) == stop.created_ms


async def test_binance_reads_algo_orders_with_classic_ones_and_close_position_as_the_whole(new_account, open_gateway):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"), stop_loss=58000)
    account.place_protective_order("BTCUSDT", "sell", "take_profit_market", trigger_price=72000, quantity="0.5")
    algo_trailing = account.place_protective_order(
        "BTCUSDT", "sell", "trailing_stop_market", trigger_price=66000, quantity="0.5", callback_rate=2
    )
    account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=59000, close_position=True, service="classic"
    )
    orders = await open_gateway(account).protective_orders()
    assert summary(orders) == {
        ("BTCUSDT", STOP, "long", Decimal("58000"), None, "algo"),
        ("BTCUSDT", TAKE, "long", Decimal("72000"), Decimal("0.5"), "algo"),
        ("BTCUSDT", TRAILING, "long", Decimal("66000"), Decimal("0.5"), "algo"),
        ("BTCUSDT", STOP, "long", Decimal("59000"), None, "classic"),
    }
    assert by_id(orders)[algo_trailing.order_id].client_order_id == algo_trailing.client_order_id


async def test_binance_hedge_mode_orders_close_their_own_leg(new_account, open_gateway):
    account = new_account("binance", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("BTCUSDT", "short", Decimal("0.5"))
    for side, leg, trigger in (("sell", "long", 60000), ("buy", "short", 70000)):
        account.place_protective_order(
            "BTCUSDT", side, "stop_market", trigger_price=trigger, quantity="0.5", position_side=leg, reduce_only=False
        )
    account.set_position_stops("BTCUSDT", "short", take_profit=55000)
    account.place_protective_order(  # buys more on the long leg when the price rises: opens, protects nothing
        "BTCUSDT", "buy", "stop_market", trigger_price=68000, quantity="0.1", position_side="long", reduce_only=False
    )
    orders = await open_gateway(account).protective_orders()
    assert summary(orders) == {
        ("BTCUSDT", STOP, "long", Decimal("60000"), Decimal("0.5"), "algo"),
        ("BTCUSDT", STOP, "short", Decimal("70000"), Decimal("0.5"), "algo"),
        ("BTCUSDT", TAKE, "short", Decimal("55000"), None, "algo"),
    }


async def test_binance_order_that_would_open_is_not_protective(new_account, open_gateway):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order(
        "BTCUSDT", "buy", "stop_market", trigger_price=68000, quantity="1", reduce_only=False, service="classic"
    )
    account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1", reduce_only=False
    )
    assert await open_gateway(account).protective_orders() == []


@pytest.mark.parametrize(
    ("path", "transform"),
    [
        ("/fapi/v1/openOrders", lambda rows: [{**rows[0], "type": "LIMIT", "stopPrice": "0"}]),
        ("/fapi/v1/openAlgoOrders", lambda rows: [{**rows[0], "algoStatus": "TRIGGERED"}]),
        ("/fapi/v1/openAlgoOrders", lambda rows: [{**rows[0], "algoType": "VP"}]),
    ],
)
async def test_binance_rows_that_are_not_resting_stops_are_skipped(new_account, open_gateway, path, transform):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    service = "classic" if path.endswith("openOrders") else "algo"
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1", service=service)
    account.tamper(path, transform, times=1)
    gateway = open_gateway(account)
    assert await gateway.protective_orders() == []
    assert len(await gateway.protective_orders()) == 1, "the next, normal answer reads as usual"


@pytest.mark.parametrize(
    ("path", "transform", "reason"),
    [
        (
            "/fapi/v1/openOrders",
            lambda rows: [{**rows[0], "stopPrice": "abc"}],
            "classic order row 1 of /fapi/v1/openOrders (BTCUSDT) has stopPrice 'abc', not a number",
        ),
        (
            "/fapi/v1/openOrders",
            lambda rows: [{**rows[0], "stopPrice": "0"}],
            "classic order row 1 of /fapi/v1/openOrders (BTCUSDT): a STOP_MARKET order without stopPrice",
        ),
        ("/fapi/v1/openOrders", lambda rows: [7], "classic order row 1 of /fapi/v1/openOrders is not an object"),
        ("/fapi/v1/openAlgoOrders", lambda rows: {"rows": rows}, "/fapi/v1/openAlgoOrders is not a list"),
        (
            "/fapi/v1/openAlgoOrders",
            lambda rows: [{**rows[0], "positionSide": "MIDDLE"}],
            "algo order row 1 of /fapi/v1/openAlgoOrders (BTCUSDT): positionSide 'MIDDLE'",
        ),
        (
            "/fapi/v1/openAlgoOrders",
            lambda rows: [{**rows[0], "closePosition": "maybe"}],
            "has closePosition 'maybe', not true or false",
        ),
        (
            "/fapi/v1/openAlgoOrders",
            lambda rows: [{**rows[0], "side": "BUY"}],
            "a closing order BUY on the LONG leg",
        ),
    ],
)
async def test_binance_malformed_order_rows_raise_bad_answer_naming_the_row(
    new_account, open_gateway, path, transform, reason
):
    account = new_account("binance", hedge_mode=path.endswith("AlgoOrders"))
    leg = "long" if path.endswith("AlgoOrders") else None
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=60000, close_position=True, position_side=leg, service="algo"
    )
    account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=61000, quantity="1", position_side=leg, service="classic"
    )
    account.tamper(path, transform, times=1)
    with pytest.raises(BadAnswer) as caught:
        await open_gateway(account).protective_orders()
    assert reason in caught.value.reason


async def test_binance_reads_all_symbols_at_weight_40_per_home(new_account, open_gateway):
    account = new_account("binance")
    gateway = open_gateway(account)
    await gateway.load_markets()
    account.clear_requests()
    assert await gateway.protective_orders() == []
    reads = [(r.method, r.path, r.params.get("symbol"), r.weight) for r in account.requests]
    assert reads == [
        ("GET", "/fapi/v1/openOrders", None, 40),
        ("GET", "/fapi/v1/openAlgoOrders", None, 40),
    ]
    assert account.weight_used() == 80


async def test_binance_cancel_removes_exactly_that_order_from_its_home(new_account, open_gateway):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    classic = account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=61000, quantity="1", service="classic"
    )
    algo = account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, close_position=True)
    kept = account.place_protective_order("BTCUSDT", "sell", "take_profit_market", trigger_price=70000, quantity="1")
    gateway = open_gateway(account)
    orders = by_id(await gateway.protective_orders())
    await gateway.cancel_order(orders[classic.order_id])
    assert set(by_id(await gateway.protective_orders())) == {algo.order_id, kept.order_id}
    await gateway.cancel_order(orders[algo.order_id])
    assert set(by_id(await gateway.protective_orders())) == {kept.order_id}
    deletes = [(r.path, r.params.get("orderId") or r.params.get("algoId")) for r in account.requests]
    deletes = [d for d in deletes if d[0] in ("/fapi/v1/order", "/fapi/v1/algoOrder")]
    assert deletes == [("/fapi/v1/order", classic.order_id), ("/fapi/v1/algoOrder", algo.order_id)]


@pytest.mark.parametrize("service", ["classic", "algo"])
async def test_binance_cancelling_an_order_that_is_gone_is_rejected(new_account, open_gateway, service):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=61000, quantity="1", service=service)
    gateway = open_gateway(account)
    [order] = await gateway.protective_orders()
    account.cancel_protective_order(order.order_id)
    with pytest.raises(Rejected, match="-2011"):
        await gateway.cancel_order(order)


# ---------------------------------------------------------------------------------------------- Bybit


async def test_bybit_reads_conditional_orders_of_every_category(new_account, open_gateway):
    account = new_account("bybit")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("BTCPERP", "long", Decimal("1"))
    account.set_position("BTCUSD", "short", Decimal("100"))
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="0.4")
    account.place_protective_order("BTCUSDT", "sell", "take_profit_market", trigger_price=70000, quantity="0.3")
    account.place_protective_order(
        "BTCUSDT",
        "sell",
        "stop",
        trigger_price=61000,
        limit_price=60900,
        quantity="0.2",
        stop_order_type="PartialStopLoss",
    )
    account.place_protective_order(
        "BTCUSDT",
        "sell",
        "take_profit",
        trigger_price=71000,
        limit_price=71100,
        quantity="0.1",
        stop_order_type="PartialTakeProfit",
    )
    account.place_protective_order("BTCPERP", "sell", "stop_market", trigger_price=59000, quantity="1")
    inverse = account.place_protective_order(
        "BTCUSD", "buy", "stop_market", trigger_price=70000, quantity=100, client_order_id="inv-sl"
    )
    account.place_protective_order(
        "BTCUSD", "buy", "take_profit_market", trigger_price=55000, quantity=50, stop_order_type="tpslOrder"
    )
    orders = await open_gateway(account).protective_orders()
    assert summary(orders) == {
        ("BTCUSDT", STOP, "long", Decimal("60000"), Decimal("0.4"), "conditional"),
        ("BTCUSDT", TAKE, "long", Decimal("70000"), Decimal("0.3"), "conditional"),
        ("BTCUSDT", STOP, "long", Decimal("61000"), Decimal("0.2"), "conditional"),
        ("BTCUSDT", TAKE, "long", Decimal("71000"), Decimal("0.1"), "conditional"),
        ("BTCPERP", STOP, "long", Decimal("59000"), Decimal("1"), "conditional"),
        ("BTCUSD", STOP, "short", Decimal("70000"), Decimal("100"), "conditional"),
        ("BTCUSD", TAKE, "short", Decimal("55000"), Decimal("50"), "conditional"),
    }
    assert {(o.market, o.category) for o in orders} == {
        ("BTCUSDT", "linear"),
        ("BTCPERP", "linear"),
        ("BTCUSD", "inverse"),
    }
    read = by_id(orders)[inverse.order_id]
    assert (read.symbol, read.client_order_id) == ("BTC/USD:BTC", "inv-sl")
    assert read.created_at is not None and int(read.created_at.timestamp() * 1000) == inverse.created_ms


async def test_bybit_position_stops_read_as_orders_for_the_whole_position(new_account, open_gateway):
    account = new_account("bybit", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("0.5"), entry_price=60000)
    account.set_position("BTCUSDT", "short", Decimal("0.2"), stop_loss=70000)
    account.set_position_stops("BTCUSDT", "long", stop_loss=58000, take_profit=72000, trailing_stop=1500)
    orders = await open_gateway(account).protective_orders()
    assert summary(orders) == {
        ("BTCUSDT", STOP, "long", Decimal("58000"), None, "conditional"),
        ("BTCUSDT", TAKE, "long", Decimal("72000"), None, "conditional"),
        ("BTCUSDT", TRAILING, "long", Decimal("63500"), None, "conditional"),
        ("BTCUSDT", STOP, "short", Decimal("70000"), None, "conditional"),
    }


async def test_bybit_reads_every_page_of_more_than_50_orders(new_account, open_gateway):
    account = new_account("bybit")
    account.set_position("ETHUSDT", "long", Decimal("60"))
    placed = {
        account.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000 + n, quantity="1").order_id
        for n in range(55)
    }
    gateway = open_gateway(account)
    await gateway.load_markets()
    account.clear_requests()
    orders = await gateway.protective_orders()
    assert set(by_id(orders)) == placed and len(orders) == 55
    pages = [r.params for r in account.requests if r.path == "/v5/order/realtime"]
    assert [(p.get("settleCoin"), p.get("cursor") is not None) for p in pages] == [
        ("USDT", False),
        ("USDT", True),
        ("USDC", False),
        (None, False),
    ]
    assert {(p["limit"], p["openOnly"]) for p in pages} == {("50", "0")}


async def test_bybit_order_that_would_open_is_not_protective(new_account, open_gateway):
    account = new_account("bybit", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order(  # buys more on the long leg when the price rises
        "BTCUSDT", "buy", "stop_market", trigger_price=68000, quantity="1", position_side="long", reduce_only=False
    )
    one_way = new_account("bybit")
    one_way.set_position("BTCUSDT", "long", Decimal("1"))
    one_way.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1", reduce_only=False
    )
    assert await open_gateway(account).protective_orders() == []
    assert await open_gateway(one_way).protective_orders() == []


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (
            lambda r: {**r, "list": [{**r["list"][0], "triggerPrice": "abc"}]},
            "linear USDT orders page 1 row 1 (BTCUSDT) has triggerPrice 'abc', not a number",
        ),
        (
            lambda r: {**r, "list": [{**r["list"][0], "triggerDirection": 0}]},
            "linear USDT orders page 1 row 1 (BTCUSDT): a Stop order with triggerDirection 0",
        ),
        (lambda r: {**r, "list": [{**r["list"][0], "positionIdx": 3}]}, "positionIdx 3"),
        (lambda r: {**r, "list": [{**r["list"][0], "qty": "0"}]}, "qty 0 for an order that does not close all"),
        (lambda r: {**r, "list": ["oops"]}, "linear USDT orders page 1 row 1 is not an object"),
        (lambda r: {**r, "list": None}, "linear USDT orders page 1 list is not a list"),
    ],
)
async def test_bybit_malformed_order_rows_raise_bad_answer_naming_the_row(new_account, open_gateway, transform, reason):
    account = new_account("bybit")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1")
    account.tamper("/v5/order/realtime", transform, times=1)
    with pytest.raises(BadAnswer) as caught:
        await open_gateway(account).protective_orders()
    assert reason in caught.value.reason


async def test_bybit_rows_that_are_not_resting_stops_are_skipped(new_account, open_gateway):
    account = new_account("bybit")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1")

    def others(result):
        row = result["list"][0]
        odd = [
            {**row, "stopOrderType": "", "orderStatus": "New"},
            {**row, "orderStatus": "Triggered"},
            {**row, "stopOrderType": "OcoOrder"},
        ]
        return {**result, "list": odd}

    account.tamper("/v5/order/realtime", others, times=1)
    assert await open_gateway(account).protective_orders() == []


async def test_bybit_cancel_removes_exactly_that_order(new_account, open_gateway):
    account = new_account("bybit")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("BTCUSD", "short", Decimal("100"))
    linear = account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1")
    kept = account.place_protective_order("BTCUSDT", "sell", "take_profit_market", trigger_price=70000, quantity="1")
    inverse = account.place_protective_order("BTCUSD", "buy", "stop_market", trigger_price=70000, quantity=100)
    gateway = open_gateway(account)
    orders = by_id(await gateway.protective_orders())
    await gateway.cancel_order(orders[linear.order_id])
    await gateway.cancel_order(orders[inverse.order_id])
    assert set(by_id(await gateway.protective_orders())) == {kept.order_id}
    cancels = [r.params for r in account.requests if r.path == "/v5/order/cancel"]
    assert [(p["category"], p["symbol"], p["orderId"]) for p in cancels] == [
        ("linear", "BTCUSDT", linear.order_id),
        ("inverse", "BTCUSD", inverse.order_id),
    ]


async def test_bybit_cancelling_an_order_that_is_gone_is_rejected(new_account, open_gateway):
    account = new_account("bybit")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1")
    gateway = open_gateway(account)
    [order] = await gateway.protective_orders()
    account.cancel_protective_order(order.order_id)
    with pytest.raises(Rejected, match="order not exists"):
        await gateway.cancel_order(order)


# ---------------------------------------------------------------------------------------------- both


@pytest.mark.parametrize("venue", ["binance", "bybit"])
@pytest.mark.parametrize("kind", ["http_500", "empty_body", "garbage_json", "rate_limit"])
async def test_a_failed_order_read_raises_never_reads_as_no_stops(new_account, open_gateway, venue, kind):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="1")
    gateway = open_gateway(account)
    await gateway.load_markets()
    account.fail(kind, endpoint="open_orders", times=1)
    with pytest.raises(VenueError):
        await gateway.protective_orders()
    assert len(await gateway.protective_orders()) == 1
