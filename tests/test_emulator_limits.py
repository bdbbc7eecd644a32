"""Request weights, usage headers and per-IP limits of the exchange emulator, seen through the real ccxt
clients: every account of a venue shares one IP, as reconbot's accounts do in production."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from decimal import Decimal

import aiohttp
import pytest
from ccxt.base.errors import DDoSProtection, OrderNotFound, RateLimitExceeded

from emulator.exchange import EmulatedAccount, ExchangeEmulator
from services.venues import create_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

_names = itertools.count(1)


def new_account(emu: ExchangeEmulator, venue: str) -> EmulatedAccount:
    number = next(_names)
    return emu.add_account(f"limits-{venue}-{number}", venue=venue, api_key=f"k{number}", secret=f"s{number}")


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


async def test_binance_request_weights_follow_the_docs() -> None:
    async with ExchangeEmulator() as emu:
        account = new_account(emu, "binance")
        account.set_position("BTCUSDT", "long", Decimal("1"))
        classic = account.place_protective_order(
            "BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity=1, service="classic"
        )
        algo = account.place_protective_order("BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity=1)
        async with client_for(account) as client:
            calls = [
                (client.fapiPublicGetExchangeInfo(), 1),
                (client.fapiPublicGetTime(), 1),
                (client.fapiPrivateV3GetPositionRisk(), 5),
                (client.fapiPrivateV2GetPositionRisk({"symbol": "BTCUSDT"}), 5),
                (client.fapiPrivateGetLeverageBracket(), 1),
                (client.fapiPrivateGetPositionSideDual(), 30),
                (client.fapiPrivateGetOpenOrders({"symbol": "BTCUSDT"}), 1),
                (client.fapiPrivateGetOpenOrders(), 40),
                (client.fapiPrivateGetOpenAlgoOrders({"symbol": "BTCUSDT"}), 1),
                (client.fapiPrivateGetOpenAlgoOrders(), 40),
                (client.fapiPrivateDeleteOrder({"symbol": "BTCUSDT", "orderId": classic.order_id}), 1),
                (client.fapiPrivateDeleteAlgoOrder({"algoId": algo.order_id}), 1),
                (
                    client.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": 1}),
                    0,
                ),
                (client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT"}), 5),
                (client.fapiPrivateGetForceOrders({"symbol": "BTCUSDT"}), 20),
                (client.fapiPrivateGetForceOrders(), 50),
                (client.fapiPrivateV3GetBalance(), 5),
                (client.fapiPrivateV3GetAccount(), 5),
                (client.fapiPrivateV2GetAccount(), 5),
            ]
            for call, _ in calls:
                await call
            header = int(client.last_response_headers["X-MBX-USED-WEIGHT-1M"])
        assert [r.weight for r in account.requests] == [weight for _, weight in calls]
        total = sum(weight for _, weight in calls)
        assert account.weight_used() == emu.weight_used("binance") == header == total


async def test_used_weight_is_shared_by_every_account_of_a_venue() -> None:
    async with ExchangeEmulator() as emu:
        first, second = new_account(emu, "binance"), new_account(emu, "binance")
        bybit = new_account(emu, "bybit")
        async with client_for(first) as one, client_for(second) as two, client_for(bybit) as three:
            await one.fapiPrivateV3GetPositionRisk()
            assert one.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "5"
            middle = time.time()
            await two.fapiPrivateGetPositionSideDual()
            assert two.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "35"
            for _ in range(3):
                await three.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
            await one.fapiPublicGetTime()
            assert one.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "36"
        assert (first.weight_used(), second.weight_used(), bybit.weight_used()) == (6, 30, 3)
        assert first.weight_used(since=middle) == 1
        assert emu.weight_used("binanceusdm") == 36 and emu.weight_used("bybit", window_s=5) == 3
        await asyncio.sleep(0.3)
        assert emu.weight_used("binance", window_s=0.2) == 0


async def test_bybit_limit_headers_count_per_account_and_endpoint() -> None:
    async with ExchangeEmulator() as emu:
        account = new_account(emu, "bybit")
        async with client_for(account) as client:
            statuses = []
            for _ in range(3):
                await client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
                statuses.append(client.last_response_headers["X-Bapi-Limit-Status"])
            assert client.last_response_headers["X-Bapi-Limit"] == "50"
            with pytest.raises(OrderNotFound):
                await client.privatePostV5OrderCancel({"category": "linear", "symbol": "BTCUSDT", "orderId": "x"})
            assert client.last_response_headers["X-Bapi-Limit"] == "10"  # set on errors too
            assert client.last_response_headers["X-Bapi-Limit-Status"] == "9"
        async with aiohttp.ClientSession() as http, http.get(f"{account.base_url}/v5/market/time") as reply:
            assert "X-Bapi-Limit" not in reply.headers  # public endpoints are not limited per UID
        assert statuses == ["49", "48", "47"]


async def test_binance_ip_limit_answers_429_then_bans_with_418() -> None:
    async with ExchangeEmulator() as emu:
        emu.set_ip_limit("binance", 12)
        first, second = new_account(emu, "binance"), new_account(emu, "binance")
        async with client_for(first) as one, client_for(second) as two:
            await one.fapiPrivateV3GetPositionRisk()
            await two.fapiPrivateV3GetPositionRisk()
            with pytest.raises(DDoSProtection, match="-1003") as refused:
                await one.fapiPrivateV3GetPositionRisk()  # 10 + 5 > 12, whoever asks
            assert "current limit is 12 request weight per 1 MINUTE" in str(refused.value)
            retry = int(one.last_response_headers["Retry-After"])
            assert 1 <= retry <= 60
            await one.fapiPublicGetTime()  # 11: still fits
            with pytest.raises(DDoSProtection):
                await two.fapiPrivateV3GetPositionRisk()
            with pytest.raises(DDoSProtection):
                await two.fapiPrivateV3GetPositionRisk()
            with pytest.raises(DDoSProtection, match="IP banned until") as banned:
                await one.fapiPrivateV3GetPositionRisk()  # the third refusal in a row
            assert "418" in str(banned.value) and one.last_response_headers["Retry-After"] == "120"
            with pytest.raises(DDoSProtection, match="IP banned until"):
                await one.fapiPublicGetTime()  # banned IPs get nothing, however light
            assert emu.ip_limit("binance")["banned_until_ms"] > time.time() * 1000 + 100_000
            assert emu.weight_used("binance") == 11  # refused requests weigh nothing
            emu.set_ip_limit("binance", None)
            await one.fapiPrivateV3GetPositionRisk()
        # 429, 429, 429 (the third bans: 418), then 418 while banned; lifting the limit keeps the count
        assert emu.ip_refusals("binance") == {"limited": 3, "banned": 2}
        assert emu.ip_refusals("bybit") == {"limited": 0, "banned": 0}
        weights = [r.weight for r in first.requests]
        assert weights == [5, 0, 1, 0, 0, 5]


async def test_binance_ban_ends_and_doubles() -> None:
    async with ExchangeEmulator() as emu:
        emu.set_ip_limit("binance", 1, window_s=0.5, ban_after=1, ban_s=0.5)
        account = new_account(emu, "binance")
        async with client_for(account) as client:
            await client.fapiPublicGetTime()
            with pytest.raises(DDoSProtection, match="IP banned"):
                await client.fapiPublicGetTime()
            await asyncio.sleep(0.6)
            await client.fapiPublicGetTime()
            with pytest.raises(DDoSProtection, match="IP banned"):
                await client.fapiPublicGetTime()
            assert client.last_response_headers["Retry-After"] == "1"  # 2 x 0.5 s, rounded up
            await asyncio.sleep(0.6)
            with pytest.raises(DDoSProtection, match="IP banned"):
                await client.fapiPublicGetTime()  # the second ban lasts 1 s


async def test_bybit_ip_limit_answers_403() -> None:
    async with ExchangeEmulator() as emu:
        emu.set_ip_limit("bybit", 3)
        account, other = new_account(emu, "bybit"), new_account(emu, "bybit")
        async with client_for(account) as client, client_for(other) as other_client:
            for _ in range(3):
                await client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
            with pytest.raises(RateLimitExceeded, match="access too frequent"):
                await other_client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
            with pytest.raises(RateLimitExceeded):
                await client.publicGetV5MarketTime()
            assert emu.ip_limit("bybit")["banned_until_ms"] > time.time() * 1000 + 500_000
            emu.set_ip_limit("bybit", None)
            await client.publicGetV5MarketTime()
        assert emu.weight_used("bybit", window_s=5) == 4


async def test_control_api_says_what_can_be_injected_and_what_the_limit_refused() -> None:
    async with ExchangeEmulator() as emu:
        emu.set_ip_limit("bybit", 1, ban_s=60)
        account = new_account(emu, "bybit")
        async with client_for(account) as client:
            await client.publicGetV5MarketTime()
            for _ in range(2):
                with pytest.raises(RateLimitExceeded):
                    await client.publicGetV5MarketTime()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{emu.base_url}/_emulator/refusals") as reply:
                refusals = await reply.json()
            async with http.get(f"{emu.base_url}/_emulator/capabilities") as reply:
                offered = await reply.json()
            async with http.post(f"{emu.base_url}/_emulator/capabilities", json={}) as reply:
                assert reply.status == 404  # read only
    assert refusals == {"binance": {"limited": 0, "banned": 0}, "bybit": {"limited": 0, "banned": 2}}
    assert offered["venues"] == ["binance", "bybit"]
    assert "timeout" in offered["faults"] and "positions" in offered["endpoints"]
    assert "expire" in offered["stream_faults"]["binance"] and "expire" not in offered["stream_faults"]["bybit"]
    assert {"drop", "stall", "malformed"} <= set(offered["stream_faults"]["bybit"])


async def test_documented_ip_limits_and_their_control_api() -> None:
    emulator = ExchangeEmulator(ip_limits=True)
    assert emulator.ip_limit("binance") == {"limit": 2400, "window_s": 60.0, "used": 0, "banned_until_ms": None}
    assert emulator.ip_limit("bybit")["limit"] == 600 and emulator.ip_limit("bybit")["window_s"] == 5.0
    assert ExchangeEmulator().ip_limit("binance")["limit"] is None
    with pytest.raises(ValueError, match="positive"):
        emulator.set_ip_limit("binance", 0)
    with pytest.raises(ValueError, match="unknown venue"):
        emulator.set_ip_limit("okx", 10)
    async with emulator:
        account = new_account(emulator, "binance")
        async with client_for(account) as client:
            await client.fapiPrivateV3GetPositionRisk()
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{emulator.base_url}/_emulator/limits", json={"bybit": None, "binance": {"limit": 7}}):
                pass
            async with http.get(f"{emulator.base_url}/_emulator/limits") as reply:
                limits = await reply.json()
            async with http.put(f"{emulator.base_url}/_emulator/limits", json={"okx": 1}) as reply:
                assert reply.status == 400
            async with http.get(f"{emulator.base_url}/_emulator/{account.name}/requests") as reply:
                log = await reply.json()
    assert limits["binance"] == {"limit": 7, "window_s": 60.0, "used": 5, "banned_until_ms": None}
    assert limits["bybit"]["limit"] is None
    assert log["weight"] == 5 and log["requests"][0]["weight"] == 5
