"""Trade/close history of the exchange emulator: why a position vanished (the bot's order, a manual close,
stop-loss, take-profit, trailing stop, liquidation, ADL, settlement, delivery), read back through the real ccxt
clients reconbot builds, in each venue's own JSON."""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
import pytest_asyncio
from ccxt.base.errors import BadRequest, ExchangeNotAvailable, OperationFailed, OrderNotFound

from emulator.exchange import CLOSE_CAUSES, ENDPOINT_GROUPS, EmulatedAccount, ExchangeEmulator
from services.venues import create_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

_names = itertools.count(1)
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


def now_ms() -> int:
    return int(time.time() * 1000)


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
        f"history-{venue}-{number}", venue=venue, api_key=f"k{number}", secret=f"s{number}", hedge_mode=hedge_mode
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


async def test_binance_api_order_and_manual_close(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("SOLUSDT", "long", Decimal("10"), entry_price=Decimal("140"))
    account.set_position("BNBUSDT", "short", Decimal("2"), entry_price=Decimal("620"))
    async with client_for(account) as client:
        order = await client.create_order(
            "SOL/USDT:USDT", "market", "sell", 4, None, {"reduceOnly": True, "clientOrderId": "bot-close-1"}
        )
        [manual] = account.close_position("BNBUSDT", "short", cause="manual")
        [trade] = await client.fapiPrivateGetUserTrades({"symbol": "SOLUSDT"})
        [manual_trade] = await client.fapiPrivateGetUserTrades({"symbol": "BNBUSDT"})
        bot_order = await client.fapiPrivateGetOrder({"symbol": "SOLUSDT", "orderId": order["id"]})
        by_client_id = await client.fetch_order(None, "BNB/USDT:USDT", params={"clientOrderId": manual.client_order_id})
        mine = await client.fetch_my_trades("SOL/USDT:USDT")
    assert (trade["orderId"], trade["side"], trade["qty"], trade["price"]) == (int(order["id"]), "SELL", "4", "150.00")
    assert (trade["realizedPnl"], trade["commission"], trade["positionSide"]) == ("40.00000000", "0.00000000", "BOTH")
    assert (bot_order["clientOrderId"], bot_order["type"], bot_order["origType"]) == ("bot-close-1", "MARKET", "MARKET")
    assert (bot_order["status"], bot_order["reduceOnly"], bot_order["executedQty"]) == ("FILLED", True, "4")
    assert re.fullmatch(r"web_[A-Za-z0-9]{20}", manual.client_order_id)
    assert (manual_trade["side"], manual_trade["realizedPnl"], manual_trade["price"]) == (
        "BUY",
        "40.00000000",
        "600.00",
    )
    assert (by_client_id["id"], by_client_id["status"], by_client_id["type"]) == (manual.order_id, "closed", "market")
    assert [t["info"]["realizedPnl"] for t in mine] == ["40.00000000"]
    assert [f.cause for f in account.fills] == ["order", "manual"]
    assert account.balances["USDT"] == Decimal(10000) + 80
    assert ("BNBUSDT", "short") not in account.positions


async def test_binance_algo_stop_loss_links_to_the_order_it_placed(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"), stop_loss=58000)
    [stop] = account.protective_orders
    hours_ago = now_ms() - 3 * HOUR_MS
    [fill] = account.close_position("BTCUSDT", "long", cause="stop_loss", at_ms=hours_ago)
    assert (fill.cause, fill.price, fill.realized_pnl, fill.time_ms) == ("stop_loss", 58000, -2000, hours_ago)
    assert account.positions == {} and account.protective_orders == []
    async with client_for(account) as client:
        [trade] = await client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT"})
        executed = await client.fapiPrivateGetOrder({"symbol": "BTCUSDT", "orderId": trade["orderId"]})
        algo = await client.fapiPrivateGetAlgoOrder({"algoId": stop.order_id})
        [same] = await client.fapiPrivateGetAllAlgoOrders({"symbol": "BTCUSDT"})
        unified = await client.fetch_order(stop.order_id, "BTC/USDT:USDT", params={"trigger": True})
        assert await client.fapiPrivateGetOpenAlgoOrders({"symbol": "BTCUSDT"}) == []
        with pytest.raises(OrderNotFound, match="-2013"):
            await client.fapiPrivateGetOrder({"symbol": "BTCUSDT", "orderId": stop.order_id})
    assert trade["orderId"] != int(stop.order_id) and trade["time"] == hours_ago
    assert (trade["realizedPnl"], trade["price"], trade["side"]) == ("-2000.00000000", "58000.0", "SELL")
    assert (executed["type"], executed["origType"], executed["status"]) == ("MARKET", "STOP_MARKET", "FILLED")
    assert (executed["clientOrderId"], executed["stopPrice"], executed["workingType"]) == (
        stop.client_order_id,
        "58000.0",
        "MARK_PRICE",
    )
    assert (executed["closePosition"], executed["reduceOnly"], executed["avgPrice"]) == (True, True, "58000.0")
    assert (algo["algoStatus"], algo["actualOrderId"], algo["actualPrice"]) == (
        "FINISHED",
        str(trade["orderId"]),
        "58000.0",
    )
    assert (algo["triggerTime"], algo["orderType"], algo["clientAlgoId"]) == (
        hours_ago,
        "STOP_MARKET",
        stop.client_order_id,
    )
    assert algo["createTime"] <= hours_ago and same == algo
    assert (unified["status"], unified["id"], unified["info"]["actualOrderId"]) == (
        "closed",
        stop.order_id,
        str(trade["orderId"]),
    )


async def test_binance_classic_conditional_orders_fill_under_their_own_ids(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("ETHUSDT", "short", Decimal("2"), entry_price=Decimal("3600"))
    account.set_position("SOLUSDT", "long", Decimal("10"), entry_price=Decimal("140"))
    take = account.place_protective_order(
        "ETHUSDT", "buy", "take_profit_market", trigger_price=3400, quantity="1.5", service="classic",
        client_order_id="tp-eth",
    )  # fmt: skip
    trail = account.place_protective_order(
        "SOLUSDT", "sell", "trailing_stop_market", trigger_price=160, quantity=10, callback_rate="1.5",
        service="classic",
    )  # fmt: skip
    resting = account.place_protective_order(
        "ETHUSDT", "buy", "stop_market", trigger_price=3900, quantity="0.5", service="classic"
    )
    cancelled = account.place_protective_order(
        "ETHUSDT", "buy", "stop_market", trigger_price=4000, quantity="0.5", service="classic"
    )
    account.cancel_protective_order(cancelled.order_id)
    [tp_fill] = account.trigger_protective_order(take.order_id, price="3395.5")
    [trail_fill] = account.close_position("SOLUSDT", "long", cause="trailing_stop", price="157.6")
    assert (tp_fill.cause, tp_fill.order_id, tp_fill.qty) == ("take_profit", take.order_id, Decimal("1.5"))
    assert (trail_fill.cause, trail_fill.order_id, trail_fill.realized_pnl) == ("trailing_stop", trail.order_id, 176)
    assert account.positions[("ETHUSDT", "short")].size == Decimal("0.5")
    async with client_for(account) as client:
        tp = await client.fapiPrivateGetOrder({"symbol": "ETHUSDT", "origClientOrderId": "tp-eth"})
        [tp_trade] = await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT", "orderId": take.order_id})
        all_sol = await client.fapiPrivateGetAllOrders({"symbol": "SOLUSDT"})
        all_eth = await client.fapiPrivateGetAllOrders({"symbol": "ETHUSDT"})
        unified = await client.fetch_orders("SOL/USDT:USDT")
        assert [o["orderId"] for o in await client.fapiPrivateGetOpenOrders()] == [int(resting.order_id)]
    assert (tp["orderId"], tp["type"], tp["origType"], tp["status"]) == (
        int(take.order_id),
        "MARKET",
        "TAKE_PROFIT_MARKET",
        "FILLED",
    )
    assert (tp["origQty"], tp["executedQty"], tp["avgPrice"], tp["stopPrice"]) == (
        "1.500",
        "1.500",
        "3395.50",
        "3400.00",
    )
    assert (tp_trade["realizedPnl"], tp_trade["side"]) == ("306.75000000", "BUY")
    [trailing] = all_sol
    assert (trailing["orderId"], trailing["origType"], trailing["priceRate"], trailing["activatePrice"]) == (
        int(trail.order_id),
        "TRAILING_STOP_MARKET",
        "1.5",
        "160.00",
    )
    assert [(o["id"], o["status"], o["filled"]) for o in unified] == [(trail.order_id, "closed", 10.0)]
    assert sorted((o["orderId"], o["status"], o["origType"]) for o in all_eth) == [
        (int(take.order_id), "FILLED", "TAKE_PROFIT_MARKET"),
        (int(resting.order_id), "NEW", "STOP_MARKET"),
        (int(cancelled.order_id), "CANCELED", "STOP_MARKET"),
    ]


async def test_binance_liquidation_adl_settlement_and_delivery(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("XRPUSDT", "long", Decimal("1000"), entry_price=Decimal("0.5"), leverage=20)
    account.set_position("DOGEUSDT", "short", Decimal("10000"), entry_price=Decimal("0.2"))
    account.set_position("ETHUSDC", "long", Decimal("1"), entry_price=Decimal("3000"))
    account.set_position("BTCUSDT_261225", "short", Decimal("0.5"), entry_price=Decimal("66000"))
    [liq] = account.close_position("XRPUSDT", "long", cause="liquidation")
    [adl] = account.close_position("DOGEUSDT", "short", cause="adl", qty=4000, price="0.18")
    [settle] = account.close_position("ETHUSDC", "long", cause="settlement", price=3100)
    [delivery] = account.close_position("BTCUSDT_261225", "short", cause="delivery")
    assert liq.price == Decimal("0.4750") and liq.realized_pnl == Decimal("-25")  # bankruptcy price at 20x
    assert re.fullmatch(rf"autoclose-{liq.time_ms}\d{{6}}", liq.client_order_id)
    assert adl.client_order_id == "adl_autoclose" and account.positions[("DOGEUSDT", "short")].size == 6000
    assert settle.client_order_id.startswith("settlement_autoclose-")
    assert delivery.client_order_id.startswith("settlement_autoclose-") and delivery.price == 67000
    async with client_for(account) as client:
        forced = await client.fapiPrivateGetForceOrders()
        only_adl = await client.fapiPrivateGetForceOrders({"symbol": "DOGEUSDT", "autoCloseType": "ADL"})
        liquidations = await client.fetch_my_liquidations("XRP/USDT:USDT")
        settle_order = await client.fapiPrivateGetOrder({"symbol": "ETHUSDC", "orderId": settle.order_id})
        [settle_trade] = await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDC"})
        [delivery_trade] = await client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT_261225"})
        with pytest.raises(BadRequest, match="-1130"):
            await client.fapiPrivateGetForceOrders({"autoCloseType": "SETTLEMENT"})
    assert [o["clientOrderId"] for o in forced] == [liq.client_order_id, "adl_autoclose"]
    liq_row, adl_row = forced
    assert (liq_row["type"], liq_row["origType"], liq_row["timeInForce"], liq_row["status"]) == (
        "LIMIT",
        "LIMIT",
        "IOC",
        "FILLED",
    )
    assert (liq_row["side"], liq_row["price"], liq_row["avgPrice"], liq_row["executedQty"]) == (
        "SELL",
        "0.4750",
        "0.4750",
        "1000.0",
    )
    assert (liq_row["reduceOnly"], liq_row["positionSide"], liq_row["cumQuote"]) == (False, "BOTH", "475.00000000")
    assert "priceMatch" not in liq_row  # the documented forceOrders fields only
    assert (adl_row["timeInForce"], adl_row["side"], adl_row["avgPrice"], adl_row["origQty"]) == (
        "GTC",
        "BUY",
        "0.18000",
        "4000",
    )
    assert only_adl == [adl_row]
    assert [(x["symbol"], x["contracts"], x["price"]) for x in liquidations] == [("XRP/USDT:USDT", 1000.0, 0.475)]
    assert (settle_order["type"], settle_order["timeInForce"], settle_order["clientOrderId"]) == (
        "LIMIT",
        "GTC",
        settle.client_order_id,
    )
    assert (settle_trade["realizedPnl"], settle_trade["commissionAsset"]) == ("100.00000000", "USDC")
    assert delivery_trade["realizedPnl"] == "-500.00000000"
    assert account.balances["USDT"] == Decimal(10000) - 25 + 80 - 500
    assert account.balances["USDC"] == Decimal(10000) + 100


async def test_binance_hedge_mode_history_names_the_leg(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance", hedge_mode=True)
    account.set_position("ETHUSDT", "long", Decimal("1"), entry_price=Decimal("3400"))
    account.set_position("ETHUSDT", "short", Decimal("2"), entry_price=Decimal("3600"))
    account.close_position("ETHUSDT", "short", cause="liquidation", price=3900)
    async with client_for(account) as client:
        await client.create_order("ETH/USDT:USDT", "market", "sell", 1, None, {"positionSide": "LONG"})
        trades = await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT"})
        [forced] = await client.fapiPrivateGetForceOrders({"symbol": "ETHUSDT"})
    assert [(t["side"], t["positionSide"], t["realizedPnl"]) for t in trades] == [
        ("BUY", "SHORT", "-600.00000000"),
        ("SELL", "LONG", "100.00000000"),
    ]
    assert forced["positionSide"] == "SHORT" and account.positions == {}


# ---------------------------------------------------------------------------------------------- Bybit


async def test_bybit_execution_list_and_closed_pnl_for_every_cause(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("SOLUSDT", "long", Decimal("10"), entry_price=Decimal("140"))
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"), stop_loss=58000)
    account.set_position("ETHUSDT", "short", Decimal("2"), entry_price=Decimal("3600"))
    partial_tp = account.place_protective_order(
        "ETHUSDT", "buy", "take_profit_market", trigger_price=3400, quantity=1, stop_order_type="PartialTakeProfit",
        client_order_id="tp-half",
    )  # fmt: skip
    account.set_position("XRPUSDT", "long", Decimal("1000"), entry_price=Decimal("0.5"))
    account.set_position_stops("XRPUSDT", "long", trailing_stop="0.05")
    account.set_position("DOGEUSDT", "short", Decimal("1000"), entry_price=Decimal("0.2"))
    account.set_position("AVLUSDT", "long", Decimal("100"), entry_price=Decimal("0.3"))
    account.set_position("BTCPERP", "short", Decimal("0.2"), entry_price=Decimal("64000"))
    account.set_position("BTC-26DEC26", "long", Decimal("0.1"), entry_price=Decimal("66000"))
    account.set_position("1000PEPEUSDT", "long", Decimal("10000"), entry_price=Decimal("0.012"))
    async with client_for(account) as client:
        order = await client.create_order(
            "SOL/USDT:USDT", "market", "sell", 4, None, {"reduceOnly": True, "clientOrderId": "bot-sol"}
        )
        account.close_position("BTCUSDT", "long", cause="stop_loss")
        account.trigger_protective_order(partial_tp.order_id)
        account.close_position("XRPUSDT", "long", cause="trailing_stop")
        account.close_position("DOGEUSDT", "short", cause="liquidation")
        account.close_position("AVLUSDT", "long", cause="liquidation", qty=40, price="0.2")
        account.close_position("BTCPERP", "short", cause="adl", price=65000)
        account.close_position("BTC-26DEC26", "long", cause="delivery", price=67500)
        account.close_position("1000PEPEUSDT", "long", cause="manual")
        linear = await client.privateGetV5ExecutionList({"category": "linear"})
        pnl = await client.privateGetV5PositionClosedPnl({"category": "linear"})
        busts = await client.privateGetV5ExecutionList({"category": "linear", "execType": "BustTrade"})
        realtime = await client.privateGetV5OrderRealtime({"category": "linear", "symbol": "ETHUSDT", "openOnly": 1})
    rows = {r["symbol"]: r for r in linear["result"]["list"]}
    kinds = {symbol: (r["execType"], r["createType"], r["stopOrderType"]) for symbol, r in rows.items()}
    assert kinds == {
        "SOLUSDT": ("Trade", "CreateByUser", "UNKNOWN"),
        "BTCUSDT": ("Trade", "CreateByStopLoss", "StopLoss"),
        "ETHUSDT": ("Trade", "CreateByPartialTakeProfit", "PartialTakeProfit"),
        "XRPUSDT": ("Trade", "CreateByTrailingStop", "TrailingStop"),
        "DOGEUSDT": ("BustTrade", "CreateByTakeOver_PassThrough", "UNKNOWN"),
        "AVLUSDT": ("Trade", "CreateByLiq", "UNKNOWN"),
        "BTCPERP": ("AdlTrade", "CreateByAdl_PassThrough", "UNKNOWN"),
        "BTC-26DEC26": ("Delivery", "CreateBySettle", "UNKNOWN"),
        "1000PEPEUSDT": ("Trade", "CreateByClosing", "UNKNOWN"),
    }
    assert [r["symbol"] for r in linear["result"]["list"]][:2] == ["1000PEPEUSDT", "BTC-26DEC26"]  # newest first
    sol, eth, doge = rows["SOLUSDT"], rows["ETHUSDT"], rows["DOGEUSDT"]
    assert (sol["orderId"], sol["orderLinkId"], sol["side"], sol["execQty"], sol["closedSize"]) == (
        order["id"],
        "bot-sol",
        "Sell",
        "4.0",
        "4.0",
    )
    assert (eth["orderId"], eth["orderLinkId"], eth["execPrice"], eth["execValue"]) == (
        partial_tp.order_id,
        "tp-half",
        "3400.00",
        "3400",
    )
    assert (doge["execPrice"], doge["orderType"], doge["side"]) == ("0.22000", "Limit", "Buy")  # bankruptcy price
    assert rows["XRPUSDT"]["execPrice"] == "0.5500" and isinstance(sol["seq"], int) and sol["isMaker"] is False
    assert [r["symbol"] for r in busts["result"]["list"]] == ["DOGEUSDT"]
    records = {r["symbol"]: r for r in pnl["result"]["list"]}
    assert len(records) == 9
    assert {s: records[s]["execType"] for s in ("DOGEUSDT", "AVLUSDT", "BTCPERP", "BTC-26DEC26")} == {
        "DOGEUSDT": "BustTrade",
        "AVLUSDT": "Trade",
        "BTCPERP": "Trade",
        "BTC-26DEC26": "Settle",
    }
    btc = records["BTCUSDT"]
    assert (btc["side"], btc["closedPnl"], btc["avgEntryPrice"], btc["avgExitPrice"], btc["closedSize"]) == (
        "Sell",
        "-2000",
        "60000",
        "58000",
        "1.000",
    )
    assert (btc["cumEntryValue"], btc["cumExitValue"], btc["fillCount"], btc["leverage"]) == (
        "60000",
        "58000",
        "1",
        "10",
    )
    assert (records["ETHUSDT"]["qty"], records["ETHUSDT"]["closedPnl"]) == ("1.00", "200")
    assert records["AVLUSDT"]["closedPnl"] == "-4" and account.positions[("AVLUSDT", "long")].size == 60
    [triggered] = realtime["result"]["list"]
    assert (triggered["orderId"], triggered["orderStatus"], triggered["cumExecQty"]) == (
        partial_tp.order_id,
        "Filled",
        "1.00",
    )


async def test_bybit_inverse_settlement_and_ccxt_views(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("BTCUSD", "long", Decimal("1000"), entry_price=Decimal("50000"))
    account.set_position("ETHUSDT", "long", Decimal("1"), entry_price=Decimal("3000"))
    account.set_position("SOLUSDT", "short", Decimal("10"), entry_price=Decimal("140"))
    [settle] = account.close_position("BTCUSD", "long", cause="settlement", price=62500)
    account.close_position("ETHUSDT", "long", cause="liquidation", price=2800)
    account.close_position("SOLUSDT", "short", cause="manual")
    assert settle.realized_pnl == Decimal("0.004")  # 1000 USD * (1/50000 - 1/62500) BTC
    async with client_for(account) as client:
        inverse = await client.privateGetV5ExecutionList({"category": "inverse", "symbol": "BTCUSD"})
        [record] = (await client.privateGetV5PositionClosedPnl({"category": "inverse"}))["result"]["list"]
        trades = await client.fetch_my_trades("ETH/USDT:USDT")
        busts = await client.fetch_my_trades("ETH/USDT:USDT", params={"execType": "BustTrade"})
        liquidations = await client.fetch_my_liquidations("ETH/USDT:USDT")
        manual = await client.fetch_my_trades("SOL/USDT:USDT")
        history = await client.fetch_positions_history(["SOL/USDT:USDT"])
    [row] = inverse["result"]["list"]
    assert (row["execType"], row["createType"], row["execValue"], row["execQty"]) == (
        "Settle",
        "CreateBySettle",
        "0.016",
        "1000",
    )
    assert (record["execType"], record["closedPnl"], record["cumEntryValue"], record["cumExitValue"]) == (
        "Settle",
        "0.004",
        "0.02",
        "0.016",
    )
    assert trades == []  # ccxt asks for execType=Trade unless told otherwise
    assert [(t["side"], t["price"], t["amount"]) for t in busts] == [("sell", 2800.0, 1.0)]
    assert [(x["price"], x["contracts"]) for x in liquidations] == [(2800.0, 1.0)]
    assert [(t["side"], t["info"]["createType"]) for t in manual] == [("buy", "CreateByClosing")]
    assert [(p["symbol"], p["realizedPnl"], p["side"]) for p in history] == [("SOL/USDT:USDT", -100.0, "short")]
    assert account.balances["BTC"] == Decimal(1) + Decimal("0.004")


# ---------------------------------------------------------------------------------------------- shared rules


async def test_binance_time_windows_and_the_seven_day_rule(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    now = now_ms()
    for days, symbol in ((20, "BTCUSDT"), (8, "ETHUSDT"), (0.125, "SOLUSDT")):
        account.set_position(symbol, "long", 1)
        account.close_position(symbol, "long", cause="liquidation", at_ms=now - int(days * DAY_MS))
    async with client_for(account) as client:
        recent = await client.fapiPrivateGetUserTrades({"symbol": "SOLUSDT"})
        old_default = await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT"})
        old = await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT", "startTime": now - 9 * DAY_MS})
        before = await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT", "endTime": now - 7 * DAY_MS})
        ccxt_old = await client.fetch_my_trades("ETH/USDT:USDT", since=now - 10 * DAY_MS)
        forced = await client.fapiPrivateGetForceOrders()
        forced_all = await client.fapiPrivateGetForceOrders({"startTime": now - 30 * DAY_MS, "endTime": now})
        orders_old = await client.fapiPrivateGetAllOrders({"symbol": "BTCUSDT", "startTime": now - 21 * DAY_MS})
        with pytest.raises(BadRequest, match="-1127"):
            await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT", "startTime": now - 8 * DAY_MS, "endTime": now})
        with pytest.raises(BadRequest, match="-1127"):
            await client.fapiPrivateGetAllOrders({"symbol": "ETHUSDT", "startTime": now - 8 * DAY_MS, "endTime": now})
        with pytest.raises(BadRequest, match="-1023"):
            await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT", "startTime": now, "endTime": now - 1})
        with pytest.raises(BadRequest, match="-1128"):
            await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT", "fromId": 1, "startTime": now - DAY_MS})
        with pytest.raises(BadRequest, match="-1102"):
            await client.fapiPrivateGetUserTrades()
    assert len(recent) == 1 and old_default == [] and len(old) == 1 and len(before) == 1
    assert [t["info"]["id"] for t in ccxt_old] == [old[0]["id"]]
    request = next(r for r in account.requests if r.path == "/fapi/v1/userTrades" and "startTime" in r.params)
    assert request.params["startTime"] == str(now - 9 * DAY_MS) and "endTime" not in request.params
    ccxt_request = [r for r in account.requests if r.path == "/fapi/v1/userTrades"][4]
    assert int(ccxt_request.params["endTime"]) - int(ccxt_request.params["startTime"]) == 7 * DAY_MS
    assert [o["symbol"] for o in forced] == ["SOLUSDT"]  # without startTime: the 7 days before endTime
    assert [o["symbol"] for o in forced_all] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert [o["symbol"] for o in orders_old] == ["BTCUSDT"]


async def test_bybit_time_windows_and_the_seven_day_rule(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    now = now_ms()
    for days, symbol in ((20, "BTCUSDT"), (8, "ETHUSDT"), (0.125, "SOLUSDT")):
        account.set_position(symbol, "long", 1)
        account.close_position(symbol, "long", cause="adl", at_ms=now - int(days * DAY_MS))
    async with client_for(account) as client:
        default = await client.privateGetV5ExecutionList({"category": "linear"})
        old = await client.privateGetV5ExecutionList({"category": "linear", "startTime": now - 9 * DAY_MS})
        oldest = await client.privateGetV5PositionClosedPnl({"category": "linear", "endTime": now - 14 * DAY_MS})
        ccxt_old = await client.fetch_my_trades(
            "ETH/USDT:USDT", since=now - 10 * DAY_MS, params={"execType": "AdlTrade"}
        )
        with pytest.raises(BadRequest, match="7 days"):
            await client.privateGetV5ExecutionList(
                {"category": "linear", "startTime": now - 8 * DAY_MS, "endTime": now}
            )
        with pytest.raises(BadRequest, match="7 days"):
            await client.privateGetV5PositionClosedPnl({"category": "linear", "startTime": 1, "endTime": now})
        with pytest.raises(BadRequest, match="10001"):
            await client.privateGetV5ExecutionList({"category": "linear", "startTime": now, "endTime": now - 1})
        with pytest.raises(BadRequest, match="execType"):
            await client.privateGetV5ExecutionList({"category": "linear", "execType": "Liquidation"})
        with pytest.raises(BadRequest, match="Category"):
            await client.privateGetV5ExecutionList()
    assert [r["symbol"] for r in default["result"]["list"]] == ["SOLUSDT"]
    assert [r["symbol"] for r in old["result"]["list"]] == ["ETHUSDT"]
    assert [r["symbol"] for r in oldest["result"]["list"]] == ["BTCUSDT"]
    assert [t["info"]["execType"] for t in ccxt_old] == ["AdlTrade"]


async def test_binance_paging_by_id_and_limit(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("DOGEUSDT", "long", 700)
    start = now_ms() - HOUR_MS
    fills = [account.close_position("DOGEUSDT", "long", cause="manual", qty=100, at_ms=start + i)[0] for i in range(7)]
    ids = [int(f.trade_id) for f in fills]
    async with client_for(account) as client:
        latest = await client.fapiPrivateGetUserTrades({"symbol": "DOGEUSDT", "limit": 3})
        first = await client.fapiPrivateGetUserTrades({"symbol": "DOGEUSDT", "startTime": start, "limit": 3})
        pages, from_id = [], ids[0]
        while True:
            chunk = await client.fapiPrivateGetUserTrades({"symbol": "DOGEUSDT", "fromId": from_id, "limit": 3})
            if not chunk:
                break
            pages.append([t["id"] for t in chunk])
            from_id = chunk[-1]["id"] + 1
        orders = await client.fapiPrivateGetAllOrders({"symbol": "DOGEUSDT", "orderId": fills[4].order_id})
        too_many = await client.fapiPrivateGetUserTrades({"symbol": "DOGEUSDT", "limit": 5000})
    assert [t["id"] for t in latest] == ids[4:] and [t["id"] for t in first] == ids[:3]
    assert pages == [ids[:3], ids[3:6], ids[6:]]
    assert [o["orderId"] for o in orders] == [int(f.order_id) for f in fills[4:]]
    assert len(too_many) == 7 and ("DOGEUSDT", "long") not in account.positions


async def test_bybit_paging_with_cursors(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("XRPUSDT", "short", 700)
    start = now_ms() - HOUR_MS
    fills = [account.close_position("XRPUSDT", "short", cause="manual", qty=100, at_ms=start + i)[0] for i in range(7)]
    async with client_for(account) as client:
        seen, cursor = [], ""
        for _ in range(5):
            params = {"category": "linear", "symbol": "XRPUSDT", "limit": 3, "cursor": cursor}
            result = (await client.privateGetV5ExecutionList(params))["result"]
            seen.append([r["execId"] for r in result["list"]])
            cursor = result["nextPageCursor"]
            if not cursor:
                break
        closed = (await client.privateGetV5PositionClosedPnl({"category": "linear", "limit": 5}))["result"]
        rest = await client.privateGetV5PositionClosedPnl(
            {"category": "linear", "limit": 5, "cursor": closed["nextPageCursor"]}
        )
        with pytest.raises(BadRequest, match="cursor"):
            await client.privateGetV5ExecutionList({"category": "linear", "cursor": closed["nextPageCursor"]})
        default = await client.privateGetV5ExecutionList({"category": "linear", "limit": 500})
    newest_first = [f.trade_id for f in reversed(fills)]
    assert seen == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    assert len(closed["list"]) == 5 and len(rest["result"]["list"]) == 2 and rest["result"]["nextPageCursor"] == ""
    assert len(default["result"]["list"]) == 7  # limit is capped at 100


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_history_faults_hit_only_history_endpoints(emu: ExchangeEmulator, venue: str) -> None:
    account = new_account(emu, venue)
    account.set_position("BTCUSDT", "long", 1)
    account.close_position("BTCUSDT", "long", cause="liquidation")
    account.fail("http_500", endpoint="history")
    expected = OperationFailed if venue == "binance" else ExchangeNotAvailable
    async with client_for(account) as client:
        await client.load_markets()
        if venue == "binance":
            calls = [
                client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT"}),
                client.fapiPrivateGetForceOrders(),
                client.fapiPrivateGetOrder({"symbol": "BTCUSDT", "orderId": account.fills[0].order_id}),
                client.fapiPrivateGetAllOrders({"symbol": "BTCUSDT"}),
                client.fapiPrivateGetAlgoOrder({"algoId": 1}),
                client.fapiPrivateGetAllAlgoOrders({"symbol": "BTCUSDT"}),
                client.fetch_my_trades("BTC/USDT:USDT"),
            ]
        else:
            calls = [
                client.privateGetV5ExecutionList({"category": "linear"}),
                client.privateGetV5PositionClosedPnl({"category": "linear"}),
                client.fetch_my_liquidations("BTC/USDT:USDT"),
            ]
        for call in calls:
            with pytest.raises(expected):
                await call
        await client.fetch_positions(["BTC/USDT:USDT"])
        await client.fetch_open_orders("BTC/USDT:USDT")
        account.clear_faults()
        assert len(await client.fetch_my_liquidations("BTC/USDT:USDT")) == 1
    assert account.request_count("history") == len(calls) + 1
    assert account.request_count("open_orders") == 1 and "history" in ENDPOINT_GROUPS


async def test_history_request_weights(emu: ExchangeEmulator) -> None:
    binance, bybit = new_account(emu, "binance"), new_account(emu, "bybit")
    binance.set_position("BTCUSDT", "long", 1, stop_loss=60000)
    [stop] = binance.protective_orders
    binance.close_position("BTCUSDT", "long", cause="stop_loss")
    async with client_for(binance) as client:
        calls = [
            (client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT"}), 5),
            (client.fapiPrivateGetForceOrders({"symbol": "BTCUSDT"}), 20),
            (client.fapiPrivateGetForceOrders(), 50),
            (client.fapiPrivateGetOrder({"symbol": "BTCUSDT", "orderId": binance.fills[0].order_id}), 1),
            (client.fapiPrivateGetAllOrders({"symbol": "BTCUSDT"}), 5),
            (client.fapiPrivateGetAlgoOrder({"algoId": stop.order_id}), 1),
            (client.fapiPrivateGetAllAlgoOrders({"symbol": "BTCUSDT"}), 5),
        ]
        for call, _ in calls:
            await call
        header = client.last_response_headers["X-MBX-USED-WEIGHT-1M"]
    assert [r.weight for r in binance.requests] == [w for _, w in calls]
    assert {r.endpoint for r in binance.requests} == {"history"} and int(header) >= binance.weight_used() == 87
    async with client_for(bybit) as client:
        statuses = []
        for _ in range(2):
            await client.privateGetV5ExecutionList({"category": "linear"})
            statuses.append(client.last_response_headers["X-Bapi-Limit-Status"])
        await client.privateGetV5PositionClosedPnl({"category": "linear"})
        limit = client.last_response_headers["X-Bapi-Limit"]
    assert statuses == ["9", "8"] and limit == "10" and bybit.weight_used() == 3


# ---------------------------------------------------------------------------------------------- state API


async def test_close_position_and_trigger_validation(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("BTCUSDT", "long", 1)
    with pytest.raises(ValueError, match="cause must be one of"):
        account.close_position("BTCUSDT", "long", cause="order")
    with pytest.raises(ValueError, match="holds no short BTCUSDT"):
        account.close_position("BTCUSDT", "short", cause="manual")
    with pytest.raises(ValueError, match="at most the position size"):
        account.close_position("BTCUSDT", "long", cause="adl", qty=2)
    with pytest.raises(ValueError, match="no open stop-loss order protects long BTCUSDT"):
        account.close_position("BTCUSDT", "long", cause="stop_loss")
    with pytest.raises(KeyError, match="no open protective order"):
        account.trigger_protective_order("nope")
    stray = account.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000, quantity=1)
    with pytest.raises(ValueError, match="holds no long ETHUSDT"):
        account.trigger_protective_order(stray.order_id)
    with pytest.raises(ValueError, match="unknown cause"):
        account.history(cause="rug_pull")
    with pytest.raises(ValueError, match="fee_rate"):
        account.fee_rate = 2
    assert account.fills == [] and set(CLOSE_CAUSES) == {
        "manual",
        "stop_loss",
        "take_profit",
        "trailing_stop",
        "liquidation",
        "adl",
        "settlement",
        "delivery",
    }


async def test_fees_are_charged_and_printed(emu: ExchangeEmulator) -> None:
    binance, bybit = new_account(emu, "binance"), new_account(emu, "bybit")
    for account in (binance, bybit):
        account.fee_rate = "0.0005"
        account.set_position("ETHUSDT", "long", 2, entry_price=3000)
        account.close_position("ETHUSDT", "long", cause="manual", price=3100)
        assert account.balances["USDT"] == Decimal(10000) + 200 - Decimal("3.1")
    async with client_for(binance) as client:
        [trade] = await client.fapiPrivateGetUserTrades({"symbol": "ETHUSDT"})
    async with client_for(bybit) as client:
        [execution] = (await client.privateGetV5ExecutionList({"category": "linear"}))["result"]["list"]
        [record] = (await client.privateGetV5PositionClosedPnl({"category": "linear"}))["result"]["list"]
    assert (trade["commission"], trade["realizedPnl"]) == ("3.10000000", "200.00000000")
    assert (execution["execFee"], execution["feeRate"]) == ("3.1", "0.0005")
    assert (record["openFee"], record["closeFee"], record["closedPnl"]) == ("3", "3.1", "193.9")


async def test_history_control_api_and_scenario(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("BTCUSDT", "long", 1, entry_price=60000)
    account.set_position("ETHUSDT", "short", 1, entry_price=3600)
    stop = account.place_protective_order("ETHUSDT", "buy", "stop_market", trigger_price=3800, quantity=1)
    control = f"{emu.base_url}/_emulator/{account.name}"
    earlier = now_ms() - 2 * HOUR_MS
    async with aiohttp.ClientSession() as http:
        body = {"symbol": "BTCUSDT", "side": "long", "cause": "liquidation", "qty": "0.4", "at_ms": earlier}
        async with http.post(f"{control}/close", json=body) as reply:
            assert reply.status == 200
            [closed] = (await reply.json())["fills"]
        async with http.post(f"{control}/trigger", json={"order_id": stop.order_id, "price": 3810}) as reply:
            [triggered] = (await reply.json())["fills"]
        async with http.get(f"{control}/fills", params={"cause": "liquidation"}) as reply:
            listed = await reply.json()
        async with http.get(f"{control}/fills", params={"symbol": "ETHUSDT"}) as reply:
            eth = await reply.json()
        errors = []
        for path, payload in (
            ("close", {"symbol": "BTCUSDT", "side": "long", "cause": "meteor"}),
            ("close", {"symbol": "BTCUSDT", "side": "long"}),
            ("close", {"symbol": "BTCUSDT", "side": "long", "cause": "adl", "at_ms": "yesterday"}),
            ("close", {"symbol": "BTCUSDT", "side": "long", "cause": "adl", "colour": "red"}),
            ("trigger", {"order_id": "404"}),
            ("trigger", {}),
        ):
            async with http.post(f"{control}/{path}", json=payload) as reply:
                errors.append(reply.status)
        async with http.get(f"{control}/fills", params={"cause": "meteor"}) as reply:
            errors.append(reply.status)
        async with http.delete(f"{control}/fills") as reply:
            errors.append(reply.status)
        async with http.post(f"{control}/settings", json={"fee_rate": "0.0004"}) as reply:
            assert (await reply.json())["fee_rate"] == "0.0004"
    assert (closed["cause"], closed["qty"], closed["time_ms"], closed["remaining"]) == (
        "liquidation",
        "0.4",
        earlier,
        "0.6",
    )
    assert closed["client_order_id"].startswith("autoclose-") and listed == [closed]
    assert (triggered["cause"], triggered["order_id"] != stop.order_id, triggered["trigger"]["order_id"]) == (
        "stop_loss",
        True,
        stop.order_id,
    )
    assert [f["trade_id"] for f in eth] == [triggered["trade_id"]]
    assert errors == [400, 400, 400, 400, 404, 400, 400, 405]
    assert account.fee_rate == Decimal("0.0004")

    scenario = ExchangeEmulator.from_scenario(
        {
            "accounts": [
                {
                    "name": "s-bybit",
                    "venue": "bybit",
                    "api_key": "k",
                    "secret": "s",
                    "fee_rate": "0.001",
                    "positions": [{"symbol": "BTCUSDT", "side": "short", "size": 1, "entry_price": 60000}],
                    "closes": [
                        {"symbol": "BTCUSDT", "side": "short", "cause": "adl", "price": 61000, "at_ms": earlier}
                    ],
                }
            ]
        }
    )
    loaded = scenario.account("s-bybit")
    [fill] = loaded.fills
    assert (fill.cause, fill.realized_pnl, fill.fee, fill.time_ms) == ("adl", -1000, Decimal("61.000"), earlier)
    assert loaded.positions == {} and loaded.balances["USDT"] == Decimal(10000) - 1000 - 61
