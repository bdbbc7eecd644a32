"""The exchange emulator, exercised through the real ccxt clients that reconbot builds."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from ccxt.base.errors import (
    AuthenticationError,
    BadRequest,
    BadResponse,
    BadSymbol,
    DDoSProtection,
    ExchangeError,
    ExchangeNotAvailable,
    InvalidOrder,
    OperationFailed,
    OperationRejected,
    RateLimitExceeded,
    RequestTimeout,
)

from emulator.exchange import (
    ENDPOINT_GROUPS,
    FAULT_KINDS,
    EmulatedAccount,
    ExchangeEmulator,
    load_scenario,
)
from services.venues import create_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_DELAY_S = 2.0
_names = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def emu() -> AsyncIterator[ExchangeEmulator]:
    emulator = ExchangeEmulator(timeout_delay_s=TIMEOUT_DELAY_S)
    await emulator.start(host="127.0.0.1", port=0)
    try:
        yield emulator
    finally:
        await emulator.stop()


def new_account(emu: ExchangeEmulator, venue: str, *, hedge_mode: bool = False) -> EmulatedAccount:
    number = next(_names)
    return emu.add_account(
        f"{venue}-{number}", venue=venue, api_key=f"key-{number}", secret=f"secret-{number}", hedge_mode=hedge_mode
    )


@contextlib.asynccontextmanager
async def client_for(
    account: EmulatedAccount, *, secret: str | None = None, api_key: str | None = None, timeout_ms: int = 5000
):
    client = create_client(
        account.exchange_id,
        api_key=api_key or account.api_key,
        secret=secret or account.secret,
        api_base_url=account.base_url,
        timeout_ms=timeout_ms,
    )
    client.enableRateLimit = False  # client-side throttling only slows these tests down
    client.timeout_on_exit = 0  # close() otherwise sleeps 250 ms for TLS transports; this is plain HTTP
    try:
        yield client
    finally:
        await client.close()


# ccxt picks Binance's per-market error table by hostname (https://fapi.binance.com/...). Behind a rebased
# URL only the common table applies, where -2022 is unknown, so it surfaces as ExchangeError; against the
# real host it is InvalidOrder, a subclass, so this assertion holds for both.
BINANCE_REDUCE_ONLY_REJECTED = ExchangeError


async def raw_positions(client, account: EmulatedAccount):
    """One positions request, without market loading."""
    if account.venue == "binance":
        return await client.fapiPrivateV3GetPositionRisk()
    return await client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})


# ---------------------------------------------------------------------------------------------- markets


async def test_binance_load_markets_resolves_catalogue(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    async with client_for(account) as client:
        markets = await client.load_markets()
    by_id = {m["id"]: m for m in markets.values()}
    assert by_id["BTCUSDT"]["symbol"] == "BTC/USDT:USDT" and by_id["BTCUSDT"]["type"] == "swap"
    assert by_id["1000PEPEUSDT"]["symbol"] == "1000PEPE/USDT:USDT"
    assert by_id["AVLUSDT"]["symbol"] == "AVL/USDT:USDT"
    assert by_id["BTCUSDC"]["symbol"] == "BTC/USDC:USDC" and by_id["BTCUSDC"]["settle"] == "USDC"
    quarterly = by_id["BTCUSDT_261225"]
    assert quarterly["symbol"] == "BTC/USDT:USDT-261225"
    assert quarterly["type"] == "future" and quarterly["expiryDatetime"].startswith("2026-12-25")
    btc = by_id["BTCUSDT"]
    assert btc["precision"] == {"amount": 0.001, "price": 0.1, "base": 1e-08, "quote": 1e-08}
    assert btc["limits"]["amount"] == {"min": 0.001, "max": 1000.0}
    assert btc["limits"]["market"] == {"min": 0.001, "max": 120.0}
    assert btc["limits"]["cost"]["min"] == 100.0
    assert all(m["linear"] and m["active"] for m in markets.values())
    assert account.request_count("markets") == 1
    assert [r.path for r in account.requests] == ["/fapi/v1/exchangeInfo"]


async def test_bybit_load_markets_resolves_catalogue_across_instrument_pages(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.instruments_page_size = 4
    async with client_for(account) as client:
        markets = await client.load_markets()
    by_id = {m["id"]: m for m in markets.values()}
    expected = {
        "BTCUSDT": ("BTC/USDT:USDT", "swap", True),
        "1000PEPEUSDT": ("1000PEPE/USDT:USDT", "swap", True),
        "AVLUSDT": ("AVL/USDT:USDT", "swap", True),
        "BTCPERP": ("BTC/USDC:USDC", "swap", True),
        "SOLPERP": ("SOL/USDC:USDC", "swap", True),
        "BTC-26DEC26": ("BTC/USDC:USDC-261226", "future", True),
        "BTCUSD": ("BTC/USD:BTC", "swap", False),
        "XRPUSD": ("XRP/USD:XRP", "swap", False),
    }
    for market_id, (symbol, kind, linear) in expected.items():
        market = by_id[market_id]
        assert (market["symbol"], market["type"], market["linear"]) == (symbol, kind, linear), market_id
    assert len(markets) == 14
    assert by_id["BTCUSD"]["inverse"] and by_id["BTCUSD"]["contractSize"] == 1.0
    assert by_id["1000PEPEUSDT"]["precision"] == {"amount": 100.0, "price": 1e-07}
    assert by_id["BTCPERP"]["limits"]["leverage"]["max"] == 100.0
    cursors = [r.params.get("cursor") for r in account.requests if r.params.get("status") != "PreLaunch"]
    # linear: 11 instruments in pages of 4, inverse: 3 in one page; plus one PreLaunch probe per category
    assert account.request_count("markets") == 3 + 1 + 2
    assert sum(1 for c in cursors if c) == 2


async def test_synthetic_markets_load_on_both_venues() -> None:
    emulator = ExchangeEmulator()
    ids = emulator.add_synthetic_markets("bybit", 30)
    assert ids[:2] == ["SYN0001USDT", "SYN0002USDT"] and len(ids) == 30
    assert emulator.add_synthetic_markets("bybit", 2) == ["SYN0031USDT", "SYN0032USDT"]
    emulator.add_synthetic_markets("binanceusdm", 5)
    emulator.add_market("binance", "FOOUSDT", price="1.5", tick_size="0.0001")
    async with emulator:
        for venue in ("binance", "bybit"):
            account = new_account(emulator, venue)
            async with client_for(account) as client:
                markets = await client.load_markets()
            assert "SYN0001/USDT:USDT" in markets
        assert markets["SYN0032/USDT:USDT"]["precision"]["amount"] == 0.1
    with pytest.raises(ValueError, match="cannot infer"):
        emulator.add_market("bybit", "WEIRD")
    with pytest.raises(ValueError, match="unknown venue"):
        emulator.add_market("okx", "BTCUSDT")


# ---------------------------------------------------------------------------------------------- positions


async def test_binance_one_way_positions_and_zero_rows(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position(
        "BTCUSDT",
        "long",
        Decimal("1.5"),
        entry_price=Decimal("64000"),
        opened_ms=1_700_000_000_000,
        stop_loss=Decimal("60000"),
    )
    account.set_position("ETHUSDT", "short", Decimal("2"), entry_price=Decimal("3600"), mark_price=Decimal("3500"))
    account.set_position("SOLUSDT", "long", 0)
    async with client_for(account) as client:
        raw = await client.fapiPrivateV3GetPositionRisk()
        positions = await client.fetch_positions()
        await client.fetch_positions()
        assert await client.fetch_open_orders("BTC/USDT:USDT") == []
        stops = await client.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True})
        assert await client.fetch_open_orders("ETH/USDT:USDT", params={"trigger": True}) == []
    assert [(o["info"]["orderType"], o["type"], o["side"], o["triggerPrice"], o["reduceOnly"]) for o in stops] == [
        ("STOP_MARKET", "market", "sell", 60000.0, True)
    ]
    rows = {row["symbol"]: row for row in raw}
    assert set(rows) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert rows["SOLUSDT"]["positionAmt"] == "0" and rows["SOLUSDT"]["entryPrice"] == "0.0"
    assert rows["ETHUSDT"]["positionAmt"] == "-2.000" and rows["ETHUSDT"]["positionSide"] == "BOTH"
    assert rows["BTCUSDT"]["updateTime"] == 1_700_000_000_000
    assert rows["BTCUSDT"]["unRealizedProfit"] == "1500.00000000"
    by_symbol = {p["symbol"]: p for p in positions}
    assert set(by_symbol) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert by_symbol["BTC/USDT:USDT"]["side"] == "long" and by_symbol["BTC/USDT:USDT"]["contracts"] == 1.5
    assert by_symbol["ETH/USDT:USDT"]["side"] == "short" and by_symbol["ETH/USDT:USDT"]["entryPrice"] == 3600.0
    assert by_symbol["ETH/USDT:USDT"]["unrealizedPnl"] == 200.0
    assert not any(p["hedged"] for p in positions)
    paths = [r.path for r in account.requests]
    assert paths.count("/fapi/v1/leverageBracket") == 1 and paths.count("/fapi/v3/positionRisk") == 3
    assert paths.count("/fapi/v1/openAlgoOrders") == 2 and account.request_count("open_orders") == 3


async def test_binance_hedge_mode_positions(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"))
    account.set_position("BTCUSDT", "short", Decimal("0.25"), entry_price=Decimal("66000"))
    async with client_for(account) as client:
        raw = await client.fapiPrivateV3GetPositionRisk()
        positions = await client.fetch_positions(["BTC/USDT:USDT"])
        dual = await client.fapiPrivateGetPositionSideDual()
    assert sorted((r["positionSide"], r["positionAmt"]) for r in raw) == [("LONG", "1.000"), ("SHORT", "-0.250")]
    assert sorted((p["side"], p["contracts"], p["hedged"]) for p in positions) == [
        ("long", 1.0, True),
        ("short", 0.25, True),
    ]
    assert dual == {"dualSidePosition": True}


async def test_one_way_account_refuses_both_sides(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("BTCUSDT", "long", 1)
    with pytest.raises(ValueError, match="one-way"):
        account.set_position("BTCUSDT", "short", 1)
    with pytest.raises(ValueError, match="no market"):
        account.set_position("NOPEUSDT", "long", 1)
    with pytest.raises(ValueError, match="side"):
        account.set_position("ETHUSDT", "flat", 1)
    account.set_position("BTCUSDT", "short", 0)
    assert list(account.positions) == [("BTCUSDT", "short")]
    account.clear_positions()
    assert account.positions == {}


@pytest.mark.parametrize(
    "settle, symbols",
    [
        ("USDT", ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]),
        ("USDC", ["BTCPERP", "ETHPERP", "SOLPERP", "BTC-26DEC26", "ETHPERP"]),
    ],
)
async def test_bybit_linear_position_list_paginates(emu: ExchangeEmulator, settle: str, symbols: list[str]) -> None:
    account = new_account(emu, "bybit", hedge_mode=settle == "USDC")
    account.page_size = 2
    for number, symbol in enumerate(symbols):
        side = "short" if (symbol, "long") in account.positions else "long"
        account.set_position(symbol, side, Decimal(number + 1), stop_loss=Decimal(1) if number == 0 else None)
    async with client_for(account) as client:
        pages, cursor = [], None
        while True:
            params = {"category": "linear", "settleCoin": settle, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            answer = await client.privateGetV5PositionList(params)
            pages.append(answer["result"]["list"])
            cursor = answer["result"]["nextPageCursor"]
            if not cursor:
                break
    assert [len(page) for page in pages] == [2, 2, 1]
    rows = [row for page in pages for row in page]
    assert sorted(row["symbol"] for row in rows) == sorted(symbols)
    assert [r.params.get("limit") for r in account.requests] == ["200"] * 3
    first = next(row for row in rows if row["symbol"] == symbols[0])
    assert first["stopLoss"] != "" and first["side"] == "Buy"
    assert all(row["stopLoss"] == "" for row in rows if row is not first)
    if settle == "USDC":
        assert sorted(row["positionIdx"] for row in rows if row["symbol"] == "ETHPERP") == [1, 2]
    else:
        assert {row["positionIdx"] for row in rows} == {0}


async def test_bybit_inverse_and_ccxt_pagination(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.page_size = 2
    account.set_position("BTCUSD", "long", 1000, entry_price=Decimal("60000"))
    account.set_position("ETHUSD", "short", 500)
    account.set_position("XRPUSD", "long", 0)
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"):
        account.set_position(symbol, "long", 1)
    async with client_for(account) as client:
        inverse = await client.privateGetV5PositionList({"category": "inverse", "limit": 200})
        assert inverse["result"]["nextPageCursor"] != ""
        page2 = await client.privateGetV5PositionList(
            {"category": "inverse", "limit": 200, "cursor": inverse["result"]["nextPageCursor"]}
        )
        linear = await client.fetch_positions(None, {"paginate": True})
        inverse_parsed = await client.fetch_positions(None, {"subType": "inverse"})
    inverse_rows = inverse["result"]["list"] + page2["result"]["list"]
    assert [row["symbol"] for row in inverse_rows] == ["BTCUSD", "ETHUSD", "XRPUSD"]
    assert page2["result"]["nextPageCursor"] == "" and inverse_rows[2]["size"] == "0"
    assert len(linear) == 5 and {p["side"] for p in linear} == {"long"}
    btc = next(p for p in inverse_parsed if p["symbol"] == "BTC/USD:BTC")
    assert btc["contracts"] == 1000.0 and btc["side"] == "long"
    assert btc["unrealizedPnl"] == pytest.approx(1000 * (1 / 60000 - 1 / 65000), abs=1e-8)


async def test_bybit_linear_without_settle_coin_is_rejected(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    async with client_for(account) as client:
        with pytest.raises(BadRequest, match="symbol or settleCoin"):
            await client.privateGetV5PositionList({"category": "linear"})
        with pytest.raises(BadSymbol):
            await client.privateGetV5PositionList({"category": "linear", "symbol": "BTCUSD"})
        single = await client.privateGetV5PositionList({"category": "linear", "symbol": "ETHUSDT"})
    row = single["result"]["list"][0]
    assert (row["symbol"], row["size"], row["side"], row["positionIdx"]) == ("ETHUSDT", "0.00", "", 0)


# ---------------------------------------------------------------------------------------------- faults

EXPECTED_ERRORS = {
    ("binance", "http_500"): OperationFailed,
    ("binance", "rate_limit"): DDoSProtection,
    ("binance", "empty_body"): BadResponse,
    ("binance", "timeout"): RequestTimeout,
    ("binance", "bad_key"): AuthenticationError,
    ("binance", "garbage_json"): BadResponse,
    ("binance", "no_success_marker"): BadResponse,
    ("bybit", "http_500"): ExchangeNotAvailable,
    ("bybit", "rate_limit"): RateLimitExceeded,
    ("bybit", "empty_body"): BadResponse,
    ("bybit", "timeout"): RequestTimeout,
    ("bybit", "bad_key"): AuthenticationError,
    ("bybit", "garbage_json"): BadResponse,
    ("bybit", "no_success_marker"): BadResponse,
}


@pytest.mark.parametrize("venue, kind", sorted(EXPECTED_ERRORS))
async def test_fault_kinds_map_to_ccxt_errors(emu: ExchangeEmulator, venue: str, kind: str) -> None:
    account = new_account(emu, venue)
    account.set_position("BTCUSDT", "long", 1)
    account.fail(kind, endpoint="positions")
    async with client_for(account, timeout_ms=300) as client:
        started = time.monotonic()
        with pytest.raises(EXPECTED_ERRORS[(venue, kind)]) as caught:
            await raw_positions(client, account)
        if kind == "timeout":
            assert 0.25 < time.monotonic() - started < TIMEOUT_DELAY_S
        assert type(caught.value) is EXPECTED_ERRORS[(venue, kind)]
        if kind != "timeout":
            with pytest.raises(EXPECTED_ERRORS[(venue, kind)]):
                await raw_positions(client, account)
        account.clear_faults()
        answer = await raw_positions(client, account)
    rows = answer if venue == "binance" else answer["result"]["list"]
    assert [row["symbol"] for row in rows] == ["BTCUSDT"]


async def test_rate_limit_errors_differ_between_venues() -> None:
    assert not issubclass(DDoSProtection, RateLimitExceeded)
    assert not issubclass(RateLimitExceeded, DDoSProtection)
    assert not issubclass(OperationFailed, ExchangeNotAvailable)


async def test_faults_with_times_clear_themselves(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.fail("rate_limit", endpoint="positions", times=2)
    account.fail("http_500", endpoint="orders")
    assert [f.times for f in account.faults] == [2, None]
    async with client_for(account) as client:
        for _ in range(2):
            with pytest.raises(RateLimitExceeded):
                await raw_positions(client, account)
        assert (await raw_positions(client, account))["retCode"] == 0
    assert [f.kind for f in account.faults] == ["http_500"]
    assert account.request_count("positions") == 3


async def test_fault_endpoint_groups_apply_to_market_loading(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.fail("http_500", endpoint="markets", times=1)
    async with client_for(account) as client:
        with pytest.raises(OperationFailed):
            await client.load_markets()
        await raw_positions(client, account)
        markets = await client.load_markets(reload=True)
    assert "BTC/USDT:USDT" in markets
    assert account.request_count("markets") == 2 and account.request_count("positions") == 1


async def test_fault_validation(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    with pytest.raises(ValueError, match="fault kind"):
        account.fail("explode")
    with pytest.raises(ValueError, match="endpoint group"):
        account.fail("http_500", endpoint="tickers")
    with pytest.raises(ValueError, match="times"):
        account.fail("http_500", times=0)
    with pytest.raises(ValueError, match="endpoint group"):
        account.request_count("tickers")
    assert set(FAULT_KINDS) == {
        "http_500",
        "rate_limit",
        "empty_body",
        "timeout",
        "late_answer",
        "bad_key",
        "garbage_json",
        "no_success_marker",
    }
    assert set(ENDPOINT_GROUPS) == {"positions", "markets", "orders", "open_orders", "history", "account", "any"}


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_wrong_credentials_are_authentication_errors(emu: ExchangeEmulator, venue: str) -> None:
    account = new_account(emu, venue)
    async with client_for(account, secret="not-the-secret") as client:
        with pytest.raises(AuthenticationError, match=r"-1022|10004"):
            await raw_positions(client, account)
    other = new_account(emu, venue)
    async with client_for(account, api_key=other.api_key, secret=other.secret) as client:
        with pytest.raises(AuthenticationError, match=r"-2015|10003"):
            await raw_positions(client, account)
    assert other.request_count() == 0 and account.request_count("positions") == 2


async def test_stop_releases_held_requests() -> None:
    emulator = ExchangeEmulator(timeout_delay_s=30.0)
    await emulator.start()
    account = new_account(emulator, "binance")
    account.fail("timeout")
    async with client_for(account, timeout_ms=20_000) as client:
        request = asyncio.create_task(raw_positions(client, account))
        async with asyncio.timeout(5):
            while account.request_count() == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        started = time.monotonic()
        await asyncio.wait_for(emulator.stop(), 5)
        assert time.monotonic() - started < 3
        with pytest.raises(ExchangeNotAvailable):
            await request
    assert not emulator.running


# ---------------------------------------------------------------------------------------------- counting


async def test_request_counts_per_account_and_group(emu: ExchangeEmulator) -> None:
    binance = new_account(emu, "binance")
    bybit = new_account(emu, "bybit")
    bystander = new_account(emu, "bybit")
    binance.set_position("BTCUSDT", "long", 1)
    bybit.set_position("BTCUSDT", "long", 1)
    async with client_for(binance) as bn, client_for(bybit) as by:
        await bn.load_markets()
        await bn.fetch_positions()
        await bn.fetch_positions()
        await bn.create_order("BTC/USDT:USDT", "market", "sell", 0.1, None, {"reduceOnly": True})
        await by.load_markets()
        await by.fetch_positions()
        await by.create_order("BTC/USDT:USDT", "market", "sell", 0.1, None, {"reduceOnly": True})
        await by.create_order("BTC/USDT:USDT", "market", "sell", 0.1, None, {"reduceOnly": True})
    assert {g: binance.request_count(g) for g in ("markets", "positions", "orders", "account")} == {
        "markets": 1,
        "positions": 3,
        "orders": 1,
        "account": 0,
    }
    assert {g: bybit.request_count(g) for g in ("markets", "positions", "orders", "account")} == {
        "markets": 4,
        "positions": 1,
        "orders": 2,
        "account": 2,
    }
    assert binance.request_count() == 5 and bybit.request_count(None) == 9
    assert bystander.request_count() == 0
    record = bybit.requests[-1]
    assert (record.method, record.path, record.endpoint) == ("POST", "/v5/order/create", "orders")
    assert record.params["reduceOnly"] is True and record.timestamp <= time.time()
    method, path, params, _ = bybit.requests[0][:4]
    assert (method, path, params["category"]) == ("GET", "/v5/market/instruments-info", "linear")
    bybit.clear_requests()
    assert bybit.request_count() == 0


# ---------------------------------------------------------------------------------------------- orders


async def test_binance_reduce_only_orders(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("BTCUSDT", "long", Decimal("1.0"), entry_price=Decimal("64000"))
    async with client_for(account) as client:
        order = await client.create_order("BTC/USDT:USDT", "market", "sell", 0.4, None, {"reduceOnly": True})
        assert (order["status"], order["filled"], order["average"], order["reduceOnly"]) == (
            "closed",
            0.4,
            65000.0,
            True,
        )
        assert account.positions[("BTCUSDT", "long")].size == Decimal("0.6")
        with pytest.raises(BINANCE_REDUCE_ONLY_REJECTED, match="-2022"):
            await client.create_order("BTC/USDT:USDT", "market", "buy", 0.1, None, {"reduceOnly": True})
        with pytest.raises(BINANCE_REDUCE_ONLY_REJECTED, match="-2022"):
            await client.create_order("ETH/USDT:USDT", "market", "sell", 0.1, None, {"reduceOnly": True})
        closing = await client.create_order("BTC/USDT:USDT", "market", "sell", 5, None, {"reduceOnly": True})
        with pytest.raises(OperationRejected, match="-4061"):
            await client.create_order("BTC/USDT:USDT", "market", "sell", 1, None, {"positionSide": "LONG"})
    assert closing["filled"] == 0.6
    assert ("BTCUSDT", "long") not in account.positions
    assert [(o.symbol, o.side, o.qty, o.reduce_only) for o in account.orders] == [
        ("BTCUSDT", "sell", Decimal("0.4"), True),
        ("BTCUSDT", "sell", Decimal("0.6"), True),
    ]
    assert account.balances["USDT"] == Decimal(10000) + 1000


async def test_binance_hedge_mode_rejects_reduce_only(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance", hedge_mode=True)
    account.set_position("ETHUSDT", "long", Decimal("2"))
    account.set_position("ETHUSDT", "short", Decimal("1"))
    async with client_for(account) as client:
        with pytest.raises(BadRequest, match="-1106"):
            await client.create_order(
                "ETH/USDT:USDT", "market", "sell", 1, None, {"reduceOnly": True, "positionSide": "LONG"}
            )
        with pytest.raises(BadRequest, match="-1106"):
            await client.create_order("ETH/USDT:USDT", "market", "sell", 1, None, {"reduceOnly": True})
        with pytest.raises(OperationRejected, match="-4061"):
            await client.create_order("ETH/USDT:USDT", "market", "sell", 1)
        await client.create_order("ETH/USDT:USDT", "market", "sell", 0.5, None, {"hedged": True, "reduceOnly": True})
        await client.create_order("ETH/USDT:USDT", "market", "buy", 1, None, {"positionSide": "SHORT"})
        with pytest.raises(BINANCE_REDUCE_ONLY_REJECTED, match="-2022"):
            await client.create_order("ETH/USDT:USDT", "market", "buy", 1, None, {"positionSide": "SHORT"})
    assert account.positions == {("ETHUSDT", "long"): account.positions[("ETHUSDT", "long")]}
    assert account.positions[("ETHUSDT", "long")].size == Decimal("1.5")
    assert [o.position_side for o in account.orders] == ["long", "short"]


async def test_bybit_reduce_only_orders(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("SOLUSDT", "short", Decimal("10"), entry_price=Decimal("160"))
    async with client_for(account) as client:
        order = await client.create_order("SOL/USDT:USDT", "market", "buy", 4, None, {"reduceOnly": True})
        assert order["id"] == account.orders[0].order_id
        assert account.positions[("SOLUSDT", "short")].size == Decimal("6")
        with pytest.raises(InvalidOrder, match="110017"):
            await client.create_order("SOL/USDT:USDT", "market", "sell", 1, None, {"reduceOnly": True})
        with pytest.raises(BadRequest, match="position idx"):
            await client.create_order("SOL/USDT:USDT", "market", "buy", 1, None, {"positionIdx": 1})
        await client.create_order("SOL/USDT:USDT", "market", "buy", 6, None, {"reduceOnly": True})
        with pytest.raises(InvalidOrder, match="110017"):
            await client.create_order("SOL/USDT:USDT", "market", "buy", 1, None, {"reduceOnly": True})
    assert account.positions == {}
    assert [(o.side, o.qty, o.price) for o in account.orders] == [
        ("buy", Decimal("4"), Decimal("150")),
        ("buy", Decimal("6"), Decimal("150")),
    ]
    assert account.balances["USDT"] == Decimal(10000) + 100


async def test_bybit_hedge_mode_orders_use_position_idx(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("0.5"))
    account.set_position("BTCUSDT", "short", Decimal("0.2"))
    async with client_for(account) as client:
        await client.create_order("BTC/USDT:USDT", "market", "buy", 0.1, None, {"hedged": True, "reduceOnly": True})
        with pytest.raises(InvalidOrder, match="110017"):
            await client.create_order(
                "BTC/USDT:USDT", "market", "buy", 0.1, None, {"positionIdx": 1, "reduceOnly": True}
            )
        rows = (await client.privateGetV5PositionList({"category": "linear", "symbol": "BTCUSDT"}))["result"]["list"]
    assert [(r["positionIdx"], r["size"]) for r in rows] == [(1, "0.500"), (2, "0.100")]


async def test_balances_parse_on_both_venues(emu: ExchangeEmulator) -> None:
    binance = new_account(emu, "binance")
    bybit = new_account(emu, "bybit")
    bybit.set_balance("USDT", "2500.5")
    async with client_for(binance) as bn, client_for(bybit) as by:
        assert (await bn.fetch_balance())["USDT"]["total"] == 10000.0
        assert (await by.fetch_balance())["USDT"]["total"] == 2500.5
    assert binance.request_count("account") == 1
    assert bybit.request_count("account") == 3


# ---------------------------------------------------------------------------------------------- control API


async def test_control_api_over_http(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    control = f"{emu.base_url}/_emulator/{account.name}"
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{control}/positions",
            json={
                "positions": [
                    {"symbol": "ETHUSDT", "side": "long", "size": "1.25", "entry_price": 3400, "stop_loss": "3000"},
                    {"symbol": "BTCUSD", "side": "short", "size": 300},
                ]
            },
        ) as reply:
            assert reply.status == 200 and (await reply.json())["count"] == 2
        async with http.get(f"{control}/positions") as reply:
            listed = await reply.json()
        assert [(p["symbol"], p["side"], p["size"]) for p in listed] == [
            ("BTCUSD", "short", "300"),
            ("ETHUSDT", "long", "1.25"),
        ]
        async with http.put(f"{control}/positions", json=[{"symbol": "NOPE", "side": "long", "size": 1}]) as reply:
            assert reply.status == 400 and "no market" in (await reply.json())["error"]
        assert len(account.positions) == 2
        btc = account.positions[("BTCUSD", "short")]
        async with http.post(f"{control}/positions", json={"symbol": "ETHUSDT", "side": "long", "size": "2"}) as reply:
            assert reply.status == 200 and (await reply.json())["position"]["size"] == "2"
        assert account.positions[("ETHUSDT", "long")].size == 2 and account.positions[("BTCUSD", "short")] is btc
        for bad in ({"symbol": "ETHUSDT", "side": "long"}, {"symbol": "ETHUSDT", "side": "up", "size": 1}, [1]):
            async with http.post(f"{control}/positions", json=bad) as reply:
                assert reply.status == 400, bad
        assert account.positions[("ETHUSDT", "long")].size == 2
        eth = {"symbol": "ETHUSDT", "side": "long", "size": "1.25", "entry_price": 3400, "stop_loss": "3000"}
        async with http.post(f"{control}/positions", json=eth) as reply:
            assert reply.status == 200
        async with http.post(f"{control}/faults", json={"kind": "bad_key", "endpoint": "positions", "times": 1}) as r:
            assert r.status == 200
        async with http.post(f"{control}/faults", json={"kind": "meltdown"}) as reply:
            assert reply.status == 400
        async with http.get(f"{control}/faults") as reply:
            assert await reply.json() == [{"kind": "bad_key", "endpoint": "positions", "times": 1}]
        async with client_for(account) as client:
            with pytest.raises(AuthenticationError):
                await raw_positions(client, account)
            rows = (await raw_positions(client, account))["result"]["list"]
            assert [(r["symbol"], r["size"], r["stopLoss"]) for r in rows] == [("ETHUSDT", "1.25", "3000.00")]
        async with http.post(f"{control}/faults", json={"kind": "http_500"}) as reply:
            assert reply.status == 200
        async with http.delete(f"{control}/faults") as reply:
            assert reply.status == 200
        assert account.faults == []
        async with http.get(f"{control}/requests", params={"endpoint": "positions"}) as reply:
            log = await reply.json()
        assert log["count"] == 2 and {r["path"] for r in log["requests"]} == {"/v5/position/list"}
        assert log["requests"][0]["params"]["settleCoin"] == "USDT"
        async with http.post(f"{control}/settings", json={"hedge_mode": True, "page_size": 1}) as reply:
            assert (await reply.json())["page_size"] == 1
        assert account.hedge_mode and account.page_size == 1
        async with http.delete(f"{control}/requests") as reply:
            assert reply.status == 200
        assert account.request_count() == 0
        async with http.get(f"{emu.base_url}/_emulator/nobody/positions") as reply:
            assert reply.status == 404
        async with http.get(f"{emu.base_url}/_emulator/accounts") as reply:
            names = {a["name"]: a["base_url"] for a in await reply.json()}
        assert names[account.name] == account.base_url
        async with http.get(f"{emu.base_url}/nobody/fapi/v1/exchangeInfo") as reply:
            assert reply.status == 404


# ---------------------------------------------------------------------------------------------- scenarios

SCENARIO_YAML = """
timeout_delay_s: 1.5
accounts:
  - name: binance-main
    venue: binance
    api_key: k1
    secret: s1
    hedge_mode: false
    positions:
      - {symbol: BTCUSDT, side: long, size: 0.5, entry_price: 64000, leverage: 5}
      - {symbol: DOGEUSDT, side: short, size: 1000, entry_price: 0.2, mark_price: 0.1}
    faults:
      - {kind: rate_limit, endpoint: positions, times: 1}
  - name: bybit-hedge
    venue: bybit
    api_key: k2
    secret: s2
    hedge_mode: true
    page_size: 1
    positions:
      - {symbol: BTCPERP, side: long, size: "0.01", stop_loss: 50000}
      - {symbol: BTCPERP, side: short, size: "0.02"}
"""


async def test_scenario_file_loading(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO_YAML)
    emulator = load_scenario(path)
    assert emulator.timeout_delay_s == 1.5
    async with emulator:
        binance = emulator.account("binance-main")
        bybit = emulator.account("bybit-hedge")
        assert binance.base_url.endswith("/binance-main") and bybit.page_size == 1
        async with client_for(binance) as client:
            with pytest.raises(DDoSProtection):
                await client.fetch_positions()
            positions = await client.fetch_positions()
        assert sorted((p["symbol"], p["side"], p["contracts"]) for p in positions) == [
            ("BTC/USDT:USDT", "long", 0.5),
            ("DOGE/USDT:USDT", "short", 1000.0),
        ]
        doge = next(p for p in positions if p["symbol"] == "DOGE/USDT:USDT")
        assert doge["unrealizedPnl"] == 100.0
        async with client_for(bybit) as client:
            first = await client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDC"})
            second = await client.privateGetV5PositionList(
                {"category": "linear", "settleCoin": "USDC", "cursor": first["result"]["nextPageCursor"]}
            )
        rows = first["result"]["list"] + second["result"]["list"]
        assert [(r["positionIdx"], r["side"], r["size"], r["stopLoss"]) for r in rows] == [
            (1, "Buy", "0.010", "50000.0"),
            (2, "Sell", "0.020", ""),
        ]
    json_path = tmp_path / "scenario.json"
    json_path.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "name": "x",
                        "venue": "bybit",
                        "api_key": "a",
                        "secret": "b",
                        "faults": [{"kind": "timeout", "endpoint": "orders"}],
                    }
                ]
            }
        )
    )
    from_json = ExchangeEmulator.load_scenario(json_path, timeout_delay_s=0.5)
    assert from_json.timeout_delay_s == 0.5
    assert [f.kind for f in from_json.account("x").faults] == ["timeout"]
    with pytest.raises(ValueError, match="fault kind"):
        ExchangeEmulator.from_scenario(
            {"accounts": [{"name": "y", "venue": "bybit", "api_key": "a", "secret": "b", "faults": [{"kind": "nope"}]}]}
        )


async def test_command_line_serves_scenario_until_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO_YAML)
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator.exchange",
        "--scenario",
        str(path),
        "--port",
        "0",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        lines = [(await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip() for _ in range(3)]
        assert lines[0].startswith("exchange emulator listening on http://127.0.0.1:")
        urls = {line.split()[0]: line.split()[-1] for line in lines[1:]}
        assert set(urls) == {"binance-main", "bybit-hedge"}
        async with aiohttp.ClientSession() as http, http.get(urls["binance-main"] + "/fapi/v1/time") as reply:
            assert "serverTime" in await reply.json()
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
