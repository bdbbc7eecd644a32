"""Protective (stop / take-profit / trailing) orders of the exchange emulator, read and cancelled through the
real ccxt clients reconbot builds, in each venue's own JSON."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
import pytest_asyncio
from ccxt.base.errors import (
    BadRequest,
    BadSymbol,
    ExchangeError,
    ExchangeNotAvailable,
    InvalidOrder,
    OperationFailed,
    OrderNotFound,
    RequestTimeout,
)

from emulator.exchange import EmulatedAccount, ExchangeEmulator
from services.venues import create_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

_names = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def emu() -> AsyncIterator[ExchangeEmulator]:
    emulator = ExchangeEmulator(timeout_delay_s=2.0)
    await emulator.start(host="127.0.0.1", port=0)
    try:
        yield emulator
    finally:
        await emulator.stop()


def new_account(emu: ExchangeEmulator, venue: str, *, hedge_mode: bool = False) -> EmulatedAccount:
    number = next(_names)
    return emu.add_account(
        f"orders-{venue}-{number}", venue=venue, api_key=f"k{number}", secret=f"s{number}", hedge_mode=hedge_mode
    )


@contextlib.asynccontextmanager
async def client_for(account: EmulatedAccount):
    client = create_client(
        account.exchange_id, api_key=account.api_key, secret=account.secret, api_base_url=account.base_url
    )
    client.enableRateLimit = False
    client.timeout_on_exit = 0
    try:
        yield client
    finally:
        await client.close()


# ---------------------------------------------------------------------------------------------- Binance


async def test_binance_classic_and_algo_orders_in_one_way_mode(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("BTCUSDT", "long", Decimal("1"), stop_loss=Decimal("60000"))
    stop = account.place_protective_order(
        "BTCUSDT",
        "sell",
        "stop_market",
        trigger_price="61000",
        quantity="0.4",
        service="classic",
        client_order_id="sl1",
    )
    take = account.place_protective_order(
        "BTCUSDT", "sell", "take_profit", trigger_price=70000, limit_price=70100, quantity="0.6", service="classic"
    )
    account.place_protective_order(
        "ETHUSDT",
        "buy",
        "trailing_stop_market",
        trigger_price="3600",
        quantity=1,
        callback_rate="1.5",
        service="classic",
    )
    algo_tp = account.place_protective_order(
        "BTCUSDT", "sell", "take_profit_market", trigger_price=72000, close_position=True, trigger_by="mark"
    )
    async with client_for(account) as client:
        classic = await client.fetch_open_orders("BTC/USDT:USDT")
        trailing = await client.fapiPrivateGetOpenOrders({"symbol": "ETHUSDT"})
        algo = await client.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True})
        before = account.request_count()
        with pytest.raises(ExchangeError, match="warnWithoutSymbol"):
            await client.fetch_open_orders()  # ccxt refuses locally: 40x the weight without a symbol
        assert account.request_count() == before
        client.options["fetchOpenOrders"]["warnWithoutSymbol"] = False
        everything = await client.fetch_open_orders()
    by_id = {o["id"]: o for o in classic}
    assert set(by_id) == {stop.order_id, take.order_id}
    sl = by_id[stop.order_id]
    assert (sl["type"], sl["side"], sl["triggerPrice"], sl["amount"], sl["reduceOnly"], sl["status"]) == (
        "market",
        "sell",
        61000.0,
        0.4,
        True,
        "open",
    )
    assert sl["clientOrderId"] == "sl1" and sl["stopLossPrice"] is None  # ccxt sets only takeProfitPrice
    assert sl["info"]["type"] == sl["info"]["origType"] == "STOP_MARKET"
    assert (sl["info"]["positionSide"], sl["info"]["closePosition"], sl["info"]["status"]) == ("BOTH", False, "NEW")
    assert (sl["info"]["stopPrice"], sl["info"]["workingType"]) == ("61000.0", "CONTRACT_PRICE")
    tp = by_id[take.order_id]
    assert (tp["type"], tp["price"], tp["triggerPrice"], tp["takeProfitPrice"]) == ("limit", 70100.0, 70000.0, 70000.0)
    [row] = trailing
    assert (row["type"], row["activatePrice"], row["priceRate"], row["side"]) == (
        "TRAILING_STOP_MARKET",
        "3600.00",
        "1.5",
        "BUY",
    )
    assert {o["info"]["orderType"] for o in algo} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    algo_row = next(o for o in algo if o["id"] == algo_tp.order_id)
    assert algo_row["info"]["algoType"] == "CONDITIONAL" and algo_row["info"]["algoStatus"] == "NEW"
    assert (algo_row["info"]["closePosition"], algo_row["info"]["quantity"], algo_row["info"]["workingType"]) == (
        True,
        "0",
        "MARK_PRICE",
    )
    assert algo_row["takeProfitPrice"] == 72000.0 and algo_row["reduceOnly"] is True
    assert sorted(o["symbol"] for o in everything) == ["BTC/USDT:USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"]
    paths = [(r.method, r.path, r.params.get("symbol")) for r in account.requests if r.endpoint == "open_orders"]
    assert paths == [
        ("GET", "/fapi/v1/openOrders", "BTCUSDT"),
        ("GET", "/fapi/v1/openOrders", "ETHUSDT"),
        ("GET", "/fapi/v1/openAlgoOrders", "BTCUSDT"),
        ("GET", "/fapi/v1/openOrders", None),
    ]


async def test_binance_cancel_classic_and_algo_orders(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("ETHUSDT", "short", Decimal("2"))
    classic = account.place_protective_order(
        "ETHUSDT", "buy", "stop_market", trigger_price=3800, quantity=2, service="classic"
    )
    by_client = account.place_protective_order(
        "ETHUSDT", "buy", "stop", trigger_price=3900, limit_price=3950, quantity=1, service="classic"
    )
    algo = account.place_protective_order("ETHUSDT", "buy", "stop_market", trigger_price=4000, close_position=True)
    algo2 = account.place_protective_order("ETHUSDT", "buy", "take_profit_market", trigger_price=3000, quantity=2)
    async with client_for(account) as client:
        cancelled = await client.cancel_order(classic.order_id, "ETH/USDT:USDT")
        with pytest.raises(OrderNotFound, match="-2011"):
            await client.cancel_order(algo.order_id, "ETH/USDT:USDT")  # algo ids are unknown to the classic book
        by_link = await client.cancel_order(None, "ETH/USDT:USDT", params={"clientOrderId": by_client.client_order_id})
        algo_answer = await client.cancel_order(algo.order_id, "ETH/USDT:USDT", params={"trigger": True})
        raw = await client.fapiPrivateDeleteAlgoOrder({"clientAlgoId": algo2.client_order_id})
        with pytest.raises(OrderNotFound):
            await client.cancel_order(algo.order_id, "ETH/USDT:USDT", params={"trigger": True})
        with pytest.raises(OrderNotFound):
            await client.cancel_order(classic.order_id, "BTC/USDT:USDT")
        with pytest.raises(BadRequest, match="-1102"):
            await client.fapiPrivateDeleteOrder({"symbol": "ETHUSDT"})
        with pytest.raises(BadRequest, match="-1102"):
            await client.fapiPrivateDeleteAlgoOrder({})
        left = await client.fetch_open_orders("ETH/USDT:USDT") + await client.fetch_open_orders(
            "ETH/USDT:USDT", params={"trigger": True}
        )
    assert (cancelled["id"], cancelled["status"], cancelled["info"]["status"]) == (
        classic.order_id,
        "canceled",
        "CANCELED",
    )
    assert by_link["id"] == by_client.order_id and by_link["info"]["type"] == "STOP"
    assert algo_answer["info"] == {
        "algoId": int(algo.order_id),
        "clientAlgoId": algo.client_order_id,
        "code": "200",
        "msg": "success",
    }
    assert raw["algoId"] == int(algo2.order_id) and raw["msg"] == "success"
    assert left == [] and account.protective_orders == []
    assert {o.status for o in account.closed_protective_orders} == {"cancelled"}
    deletes = [
        (r.path, r.params.get("algoId") or r.params.get("orderId")) for r in account.requests if r.method == "DELETE"
    ]
    assert deletes[:2] == [("/fapi/v1/order", classic.order_id), ("/fapi/v1/order", algo.order_id)]
    assert deletes[3] == ("/fapi/v1/algoOrder", algo.order_id)


async def test_binance_hedge_mode_orders_name_their_leg(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("BTCUSDT", "short", Decimal("0.5"), stop_loss=70000)
    account.set_position_stops("BTCUSDT", "long", stop_loss=60000, take_profit=75000)
    account.place_protective_order(
        "BTCUSDT", "buy", "stop", trigger_price=69000, limit_price=69100, quantity="0.5", position_side="short"
    )
    account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=59000, quantity="1", position_side="long", service="classic"
    )
    with pytest.raises(ValueError, match="position_side"):
        account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=59000, quantity="1")
    async with client_for(account) as client:
        algo = await client.fapiPrivateGetOpenAlgoOrders({"symbol": "BTCUSDT"})
        classic = await client.fapiPrivateGetOpenOrders()
    legs = sorted((row["orderType"], row["side"], row["positionSide"], row["closePosition"]) for row in algo)
    assert legs == [
        ("STOP", "BUY", "SHORT", False),
        ("STOP_MARKET", "BUY", "SHORT", True),
        ("STOP_MARKET", "SELL", "LONG", True),
        ("TAKE_PROFIT_MARKET", "SELL", "LONG", True),
    ]
    assert [(r["type"], r["positionSide"], r["origQty"]) for r in classic] == [("STOP_MARKET", "LONG", "1.000")]
    assert account.positions[("BTCUSDT", "long")].stop_loss == Decimal("60000")
    assert set(account.position_stops("BTCUSDT", "long")) == {"stop_loss", "take_profit"}
    one_way = new_account(emu, "binance")
    with pytest.raises(ValueError, match="one-way"):
        one_way.place_protective_order(
            "BTCUSDT", "sell", "stop_market", trigger_price=1, quantity=1, position_side="long"
        )


async def test_binance_order_endpoint_errors(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    async with client_for(account) as client:
        with pytest.raises(BadSymbol, match="-1121"):
            await client.fapiPrivateGetOpenOrders({"symbol": "NOPEUSDT"})
        with pytest.raises(BadSymbol, match="-1121"):
            await client.fapiPrivateGetOpenAlgoOrders({"symbol": "NOPEUSDT"})
        with pytest.raises(InvalidOrder, match="-4120"):
            await client.fapiPrivatePostOrder(
                {
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": "STOP_MARKET",
                    "stopPrice": "60000",
                    "closePosition": "true",
                }
            )
        assert await client.fapiPrivateGetOpenAlgoOrders({"algoType": "VP"}) == []


async def test_binance_fills_show_in_user_trades(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("SOLUSDT", "long", Decimal("10"))
    async with client_for(account) as client:
        await client.create_order("SOL/USDT:USDT", "market", "sell", 4, None, {"reduceOnly": True})
        trades = await client.fetch_my_trades("SOL/USDT:USDT")
        assert await client.fapiPrivateGetForceOrders() == []
    [trade] = trades
    assert (trade["side"], trade["amount"], trade["price"], trade["order"]) == (
        "sell",
        4.0,
        150.0,
        account.orders[0].order_id,
    )
    assert [r.weight for r in account.requests if r.path in ("/fapi/v1/userTrades", "/fapi/v1/forceOrders")] == [5, 50]


# ---------------------------------------------------------------------------------------------- Bybit


async def test_bybit_conditional_orders_page_newest_first(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("ETHUSDT", "long", Decimal("5"))
    placed = [
        account.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000 + n, quantity="0.1")
        for n in range(7)
    ]
    async with client_for(account) as client:
        pages, cursor = [], None
        while True:
            params = {"category": "linear", "settleCoin": "USDT", "limit": 3}
            if cursor:
                params["cursor"] = cursor
            answer = (await client.privateGetV5OrderRealtime(params))["result"]
            pages.append(answer["list"])
            cursor = answer["nextPageCursor"]
            if not cursor:
                break
        capped = (await client.privateGetV5OrderRealtime({"category": "linear", "symbol": "ETHUSDT", "limit": 80}))[
            "result"
        ]
        parsed = await client.fetch_open_orders(None, params={"trigger": True, "paginate": True})
    assert [len(p) for p in pages] == [3, 3, 1]
    rows = [row for p in pages for row in p]
    assert [row["orderId"] for row in rows] == [o.order_id for o in reversed(placed)]
    first = rows[0]
    expected = {
        "orderStatus": "Untriggered",
        "stopOrderType": "Stop",
        "orderType": "Market",
        "triggerPrice": "3006.00",
        "triggerDirection": 2,
        "triggerBy": "LastPrice",
        "qty": "0.10",
        "side": "Sell",
        "positionIdx": 0,
        "reduceOnly": True,
        "closeOnTrigger": False,
        "tpslMode": "",
        "createType": "CreateByUser",
    }
    assert {key: first[key] for key in expected} == expected
    assert len(capped["list"]) == 7 and capped["nextPageCursor"] == ""
    assert len(parsed) == 7 and {o["status"] for o in parsed} == {"open"}
    assert {o["stopLossPrice"] for o in parsed} == {float(3000 + n) for n in range(7)}  # fall + sell = stop loss


async def test_bybit_realtime_filters(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    stop = account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="0.01")
    partial = account.place_protective_order(
        "BTCUSDT",
        "sell",
        "take_profit",
        trigger_price=70000,
        limit_price=70100,
        quantity="0.01",
        stop_order_type="PartialTakeProfit",
    )
    tpsl = account.place_protective_order(
        "BTCUSDT", "buy", "stop_market", trigger_price=50000, quantity="0.01", stop_order_type="tpslOrder"
    )
    usdc = account.place_protective_order("BTCPERP", "sell", "stop_market", trigger_price=60000, quantity="0.01")
    inverse = account.place_protective_order("BTCUSD", "buy", "take_profit_market", trigger_price=50000, quantity=100)
    account.cancel_protective_order(stop.order_id)

    async def ids(**params) -> list[str]:
        answer = await client.privateGetV5OrderRealtime({"category": "linear", **params})
        return [row["orderId"] for row in answer["result"]["list"]]

    async with client_for(account) as client:
        with pytest.raises(BadRequest, match="symbol or settleCoin"):
            await client.privateGetV5OrderRealtime({"category": "linear"})
        with pytest.raises(BadRequest, match="orderFilter"):
            await ids(settleCoin="USDT", orderFilter="Everything")
        assert await ids(settleCoin="USDT") == [tpsl.order_id, partial.order_id]
        assert await ids(settleCoin="USDT", orderFilter="Order") == []
        assert await ids(settleCoin="USDT", orderFilter="StopOrder") == [partial.order_id]
        assert await ids(settleCoin="USDT", orderFilter="tpslOrder") == [tpsl.order_id]
        assert await ids(settleCoin="USDC") == [usdc.order_id]
        assert await ids(baseCoin="BTC") == [usdc.order_id, tpsl.order_id, partial.order_id]
        assert await ids(symbol="BTCUSDT", orderId=partial.order_id) == [partial.order_id]
        closed = await client.privateGetV5OrderRealtime({"category": "linear", "symbol": "BTCUSDT", "openOnly": 1})
        by_id = await ids(symbol="BTCUSDT", orderId=stop.order_id)  # openOnly does not apply to one order
        inverse_rows = (await client.privateGetV5OrderRealtime({"category": "inverse"}))["result"]["list"]
    [gone] = closed["result"]["list"]
    assert (gone["orderId"], gone["orderStatus"], gone["cancelType"], gone["leavesQty"]) == (
        stop.order_id,
        "Deactivated",
        "CancelByUser",
        "0.000",
    )
    assert by_id == [stop.order_id]
    assert account.find_protective_order(order_id=partial.order_id).stop_order_type == "PartialTakeProfit"
    assert [(r["orderId"], r["triggerDirection"], r["qty"]) for r in inverse_rows] == [(inverse.order_id, 2, "100")]


async def test_bybit_position_stops_show_in_rows_and_orders(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("0.5"), entry_price=60000)
    account.set_position("BTCUSDT", "short", Decimal("0.2"))
    account.set_position_stops("BTCUSDT", "long", stop_loss=58000, take_profit=72000, trailing_stop=1500)
    account.set_position_stops("BTCUSDT", "short", stop_loss="70000")
    async with client_for(account) as client:
        rows = (await client.privateGetV5PositionList({"category": "linear", "symbol": "BTCUSDT"}))["result"]["list"]
        orders = (await client.privateGetV5OrderRealtime({"category": "linear", "symbol": "BTCUSDT"}))["result"]["list"]
        positions = await client.fetch_positions(["BTC/USDT:USDT"])
        stop_order = next(o for o in orders if o["stopOrderType"] == "StopLoss" and o["positionIdx"] == 1)
        await client.cancel_order(stop_order["orderId"], "BTC/USDT:USDT")
        after_cancel = (await client.privateGetV5PositionList({"category": "linear", "symbol": "BTCUSDT"}))["result"]
        await client.create_order("BTC/USDT:USDT", "market", "buy", 0.2, None, {"positionIdx": 2, "reduceOnly": True})
        after_close = (await client.privateGetV5OrderRealtime({"category": "linear", "symbol": "BTCUSDT"}))["result"]
    long_row, short_row = rows
    assert (long_row["stopLoss"], long_row["takeProfit"], long_row["trailingStop"]) == ("58000.0", "72000.0", "1500.0")
    assert (short_row["stopLoss"], short_row["takeProfit"], short_row["trailingStop"]) == ("70000.0", "", "0")
    shown = sorted((o["stopOrderType"], o["positionIdx"], o["side"], o["triggerDirection"], o["qty"]) for o in orders)
    assert shown == [
        ("StopLoss", 1, "Sell", 2, "0.500"),
        ("StopLoss", 2, "Buy", 1, "0.200"),
        ("TakeProfit", 1, "Sell", 1, "0.500"),
        ("TrailingStop", 1, "Sell", 2, "0.500"),
    ]
    trailing = next(o for o in orders if o["stopOrderType"] == "TrailingStop")
    assert trailing["triggerPrice"] == "63500.0" and trailing["createType"] == "CreateByTrailingStop"
    assert all(o["closeOnTrigger"] and o["reduceOnly"] and o["tpslMode"] == "Full" for o in orders)
    by_side = {p["side"]: p for p in positions}
    assert (by_side["long"]["stopLossPrice"], by_side["long"]["takeProfitPrice"]) == (58000.0, 72000.0)
    assert after_cancel["list"][0]["stopLoss"] == "" and after_cancel["list"][0]["takeProfit"] == "72000.0"
    assert account.positions[("BTCUSDT", "long")].stop_loss is None
    assert [o["positionIdx"] for o in after_close["list"]] == [1, 1]  # the short's stop died with it
    account.set_position_stops("BTCUSDT", "long")
    assert account.protective_orders == []


async def test_bybit_cancel_errors(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    order = account.place_protective_order("SOLUSDT", "sell", "stop_market", trigger_price=140, quantity=1)
    async with client_for(account) as client:
        with pytest.raises(OrderNotFound, match="110001"):
            await client.cancel_order("no-such-order", "SOL/USDT:USDT")
        with pytest.raises(OrderNotFound, match="110001"):
            await client.cancel_order(order.order_id, "BTC/USDT:USDT")
        with pytest.raises(BadRequest, match="orderId or orderLinkId"):
            await client.privatePostV5OrderCancel({"category": "linear", "symbol": "SOLUSDT"})
        answer = await client.privatePostV5OrderCancel(
            {"category": "linear", "symbol": "SOLUSDT", "orderId": order.order_id}
        )
    assert answer["result"] == {"orderId": order.order_id, "orderLinkId": ""}
    assert [(r.method, r.path, r.endpoint) for r in account.requests][-1] == ("POST", "/v5/order/cancel", "orders")


# ---------------------------------------------------------------------------------------------- shared


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_order_faults_hit_every_order_endpoint(emu: ExchangeEmulator, venue: str) -> None:
    account = new_account(emu, venue)
    order = account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity="0.001")
    account.fail("http_500", endpoint="orders")  # changes: placing and cancelling
    account.fail("http_500", endpoint="open_orders")  # reads of resting orders
    expected = OperationFailed if venue == "binance" else ExchangeNotAvailable
    async with client_for(account) as client:
        await client.load_markets()
        calls = [
            client.fetch_open_orders("BTC/USDT:USDT"),
            client.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True}),
            client.cancel_order(order.order_id, "BTC/USDT:USDT"),
            client.cancel_order(order.order_id, "BTC/USDT:USDT", params={"trigger": True}),
        ]
        for call in calls:
            with pytest.raises(expected):
                await call
        account.clear_faults()
        assert [o["id"] for o in await client.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True})] == [
            order.order_id
        ]
    assert account.request_count("orders") + account.request_count("open_orders") == 5


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_a_late_answer_is_carried_out_before_the_answer_is_held(emu: ExchangeEmulator, venue: str) -> None:
    """``late_answer``: the venue fills the order at once and only its answer is slow, so a caller that gives up
    (or dies) meanwhile has changed the account all the same; ``timeout`` holds the request before it acts."""
    account = new_account(emu, venue)
    account.set_position("SOLUSDT", "long", Decimal("10"))
    async with client_for(account) as client:
        await client.load_markets()
        client.timeout = 300
        account.fail("timeout", endpoint="orders", times=1)
        with pytest.raises(RequestTimeout):
            await client.create_order("SOL/USDT:USDT", "market", "sell", 4, None, {"reduceOnly": True})
        assert account.positions[("SOLUSDT", "long")].size == Decimal("10"), "held before it acts"
        account.fail("late_answer", endpoint="orders", times=1)
        with pytest.raises(RequestTimeout):
            await client.create_order("SOL/USDT:USDT", "market", "sell", 4, None, {"reduceOnly": True})
        assert account.positions[("SOLUSDT", "long")].size == Decimal("6"), "filled before the answer"
        assert len(account.orders) == 1 and account.orders[0].qty == Decimal("4")


async def test_protective_order_validation() -> None:
    emulator = ExchangeEmulator()
    binance = emulator.add_account("v-binance", venue="binance", api_key="k", secret="s")
    bybit = emulator.add_account("v-bybit", venue="bybit", api_key="k", secret="s")
    one = {"trigger_price": 1, "quantity": 1}
    cases = [
        (binance, "BTCUSDT", "sell", "stop_market", {"trigger_price": None, "quantity": 1}, "needs trigger_price"),
        (binance, "BTCUSDT", "sell", "stop", one, "needs limit_price"),
        (binance, "BTCUSDT", "sell", "stop_market", {**one, "limit_price": 2}, "no limit"),
        (binance, "BTCUSDT", "sell", "stop_market", {"trigger_price": 1}, "quantity"),
        (binance, "BTCUSDT", "sell", "stop", {"trigger_price": 1, "limit_price": 1, "close_position": True}, "close"),
        (binance, "BTCUSDT", "sell", "stop_market", {**one, "trigger_price": "60000.05"}, "tick size"),
        (binance, "BTCUSDT", "sell", "stop_market", {**one, "quantity": "0.0001"}, "step size"),
        (binance, "BTCUSDT", "hold", "stop_market", one, "side"),
        (binance, "BTCUSDT", "sell", "limit", one, "type must be"),
        (binance, "BTCUSDT", "sell", "trailing_stop_market", {"trigger_price": None, "quantity": 1}, "callback"),
        (binance, "BTCUSDT", "sell", "stop_market", {**one, "service": "x"}, "service"),
        (binance, "BTCUSDT", "sell", "stop_market", {**one, "trigger_by": "index"}, "mark"),
        (binance, "BTCUSDT", "sell", "stop_market", {**one, "stop_order_type": "Stop"}, "Bybit"),
        (bybit, "BTCUSDT", "sell", "stop_market", {**one, "service": "algo"}, "Binance"),
        (
            bybit,
            "BTCUSDT",
            "sell",
            "trailing_stop_market",
            {"trigger_price": None, "quantity": 1},
            "set_position_stops",
        ),
        (bybit, "BTCUSDT", "sell", "stop_market", {**one, "stop_order_type": "StopLoss"}, "one of"),
        (bybit, "NOPEUSDT", "sell", "stop_market", one, "no market"),
    ]
    for account, symbol, side, kind, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            account.place_protective_order(symbol, side, kind, **kwargs)
    assert binance.protective_orders == [] and bybit.protective_orders == []
    with pytest.raises(ValueError, match="holds no long"):
        bybit.set_position_stops("BTCUSDT", "long", stop_loss=1)
    binance.set_position("BTCUSDT", "long", 1)
    with pytest.raises(ValueError, match="no position trailing stop"):
        binance.set_position_stops("BTCUSDT", "long", stop_loss=60000, trailing_stop=100)
    assert binance.protective_orders == []  # all or nothing
    with pytest.raises(KeyError):
        binance.cancel_protective_order("12345")
    tagged = binance.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=1, quantity=1, client_order_id="x"
    )
    with pytest.raises(ValueError, match="already used"):
        binance.place_protective_order(
            "BTCUSDT", "sell", "stop_market", trigger_price=1, quantity=1, client_order_id="x"
        )
    assert binance.find_protective_order(client_order_id="x") == tagged


async def test_attached_stops_live_and_die_with_their_position() -> None:
    emulator = ExchangeEmulator()
    account = emulator.add_account("life", venue="binance", api_key="k", secret="s")
    account.set_position("BTCUSDT", "long", 1, stop_loss=60000)
    loose = account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=59000, close_position=True)
    assert [o.attached for o in account.protective_orders] == [True, False]
    account.set_position("BTCUSDT", "long", 2)  # replaced without a stop
    assert account.protective_orders == [loose] and account.positions[("BTCUSDT", "long")].stop_loss is None
    account.set_position("BTCUSDT", "long", 2, stop_loss=61000)
    account.remove_position("BTCUSDT", "long")
    assert account.protective_orders == [loose]
    account.set_position("ETHUSDT", "short", 0, stop_loss=4000)  # a zero row carries no order
    assert account.positions[("ETHUSDT", "short")].stop_loss == Decimal(4000)
    assert account.protective_orders == [loose]
    account.set_position("SOLUSDT", "long", 3, stop_loss=100)
    with pytest.raises(ValueError, match="no market"):
        account.replace_positions([{"symbol": "NOPE", "side": "long", "size": 1}])
    assert [o.symbol for o in account.protective_orders] == ["BTCUSDT", "SOLUSDT"]  # untouched on failure


async def test_control_api_protective_orders(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("BTCUSDT", "long", Decimal("0.3"))
    control = f"{emu.base_url}/_emulator/{account.name}"
    async with aiohttp.ClientSession() as http:
        order = {
            "symbol": "BTCUSDT",
            "side": "sell",
            "type": "stop_market",
            "trigger_price": "59000",
            "quantity": "0.1",
        }
        async with http.post(f"{control}/protective-orders", json=order) as reply:
            assert reply.status == 200
            placed = (await reply.json())["order"]
        async with http.post(f"{control}/protective-orders", json={**order, "colour": "red"}) as reply:
            assert reply.status == 400 and "colour" in (await reply.json())["error"]
        async with http.post(
            f"{control}/position-stops", json={"symbol": "BTCUSDT", "side": "long", "stop_loss": 58000}
        ):
            pass
        async with http.get(f"{control}/protective-orders") as reply:
            listed = await reply.json()
        assert [(o["stop_order_type"], o["trigger_price"], o["attached"]) for o in listed] == [
            ("Stop", "59000", False),
            ("StopLoss", "58000", True),
        ]
        async with http.get(f"{control}/positions") as reply:
            assert (await reply.json())[0]["stop_loss"] == "58000"
        async with http.delete(f"{control}/protective-orders/{placed['order_id']}") as reply:
            assert reply.status == 200 and (await reply.json())["order"]["status"] == "cancelled"
        async with http.delete(f"{control}/protective-orders/{placed['order_id']}") as reply:
            assert reply.status == 404
        async with http.delete(f"{control}/protective-orders") as reply:
            assert (await reply.json())["count"] == 1
    assert account.protective_orders == [] and account.positions[("BTCUSDT", "long")].stop_loss is None


async def test_scenario_protective_orders() -> None:
    emulator = ExchangeEmulator.from_scenario(
        {
            "accounts": [
                {
                    "name": "scn",
                    "venue": "binance",
                    "api_key": "k",
                    "secret": "s",
                    "positions": [{"symbol": "BTCUSDT", "side": "long", "size": 1, "stop_loss": 60000}],
                    "protective_orders": [
                        {
                            "symbol": "BTCUSDT",
                            "side": "sell",
                            "type": "take_profit_market",
                            "trigger_price": 70000,
                            "close_position": True,
                            "service": "classic",
                        },
                    ],
                }
            ]
        }
    )
    orders = emulator.account("scn").protective_orders
    assert [(o.type, o.service, o.attached) for o in orders] == [
        ("stop_market", "algo", True),
        ("take_profit_market", "classic", False),
    ]
