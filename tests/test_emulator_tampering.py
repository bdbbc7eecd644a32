"""Tampering: tests make the exchange emulator serve odd venue answers (rows that are not objects, unparseable
amounts, zero entry prices, duplicates, contradictory signs, empty pages with a cursor) to real ccxt clients."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from ccxt.base.errors import OperationFailed

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


def new_account(emu: ExchangeEmulator, venue: str) -> EmulatedAccount:
    number = next(_names)
    return emu.add_account(f"tamper-{venue}-{number}", venue=venue, api_key=f"k{number}", secret=f"s{number}")


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


def with_row_changes(**changes: Any):
    """A transform setting (or, for None, removing) fields of every position row that is an object."""

    def transform(rows: list[Any]) -> list[Any]:
        changed = []
        for row in rows:
            if not isinstance(row, dict):
                changed.append(row)
                continue
            row = dict(row)
            for key, value in changes.items():
                if value is None:
                    row.pop(key, None)
                else:
                    row[key] = value
            changed.append(row)
        return changed

    return transform


async def test_binance_position_rows_can_be_tampered_with(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    path = "/fapi/v3/positionRisk"
    # all four apply, in order, to the next answer only
    account.tamper(path, lambda rows: [*rows, "not an object", rows[0]], times=1)
    account.tamper(path, with_row_changes(positionAmt="abc"), times=1)
    account.tamper(path, with_row_changes(entryPrice=None), times=1)
    account.tamper(path, with_row_changes(notional="-65000.00000000"), times=1)
    async with client_for(account) as client:
        answers = [await client.fapiPrivateV3GetPositionRisk() for _ in range(2)]
    duplicated, untouched = answers
    assert duplicated[1] == "not an object" and duplicated[2] == duplicated[0]
    assert duplicated[0]["positionAmt"] == "abc" and "entryPrice" not in duplicated[0]
    assert duplicated[0]["notional"] == "-65000.00000000"  # contradicts positionAmt
    assert untouched == [
        {**untouched[0], "positionAmt": "1.000", "entryPrice": "65000.0", "notional": "65000.00000000"}
    ]
    assert account.tampering == []


async def test_binance_rows_with_a_zero_entry_price(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("ETHUSDT", "short", Decimal("2"), entry_price=0)
    async with client_for(account) as client:
        [row] = await client.fapiPrivateV3GetPositionRisk()
        positions = await client.fetch_positions()
    assert (row["positionAmt"], row["entryPrice"], row["breakEvenPrice"]) == ("-2.000", "0.0", "0.0")
    assert positions == []  # ccxt's fetchPositions drops rows whose entryPrice is not positive
    bybit = new_account(emu, "bybit")
    with pytest.raises(ValueError, match="positive"):
        bybit.set_position("ETHUSDT", "short", Decimal("2"), entry_price=0)


async def test_bybit_tampering_rewrites_the_result_inside_the_envelope(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.set_position("SOLUSDT", "long", Decimal("3"))
    seen: list[Any] = []

    def empty_page_with_cursor(result: dict[str, Any]) -> dict[str, Any]:
        seen.append(result)
        return {**result, "list": [], "nextPageCursor": "more-please"}

    account.tamper("/v5/position/list", empty_page_with_cursor, times=1)
    async with client_for(account) as client:
        tampered = await client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
        normal = await client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
    assert (tampered["retCode"], tampered["retMsg"]) == (0, "OK") and "time" in tampered
    assert tampered["result"] == {"category": "linear", "list": [], "nextPageCursor": "more-please"}
    assert seen[0]["list"][0]["symbol"] == "SOLUSDT" and "retCode" not in seen[0]
    assert [row["symbol"] for row in normal["result"]["list"]] == ["SOLUSDT"]


async def test_faults_win_and_leave_tampering_unused(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.tamper("/fapi/v3/positionRisk", lambda rows: ["tampered"], times=1)
    account.fail("http_500", endpoint="positions", times=1)
    async with client_for(account) as client:
        with pytest.raises(OperationFailed):
            await client.fapiPrivateV3GetPositionRisk()
        assert await client.fapiPrivateV3GetPositionRisk() == ["tampered"]
        assert await client.fapiPrivateV3GetPositionRisk() == []


async def test_tampering_by_method_and_until_cleared(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.tamper("/fapi/v1/order", lambda answer: {**answer, "status": "EXPIRED"}, method="delete")
    account.tamper("/fapi/v1/openOrders", lambda rows: [*rows, {"orderId": 1}])
    order = account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=60000, quantity=1, service="classic"
    )
    async with client_for(account) as client:
        created = await client.create_order("BTC/USDT:USDT", "market", "sell", 0.1, None, {"reduceOnly": True})
        for _ in range(2):
            rows = await client.fapiPrivateGetOpenOrders({"symbol": "BTCUSDT"})
            assert rows[-1] == {"orderId": 1} and len(rows) == 2
        cancelled = await client.fapiPrivateDeleteOrder({"symbol": "BTCUSDT", "orderId": order.order_id})
        account.clear_tampering()
        assert await client.fapiPrivateGetOpenOrders({"symbol": "BTCUSDT"}) == []
    assert created["info"]["status"] == "FILLED" and cancelled["status"] == "EXPIRED"


async def test_tampering_is_checked_and_broken_transforms_are_http_500(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    with pytest.raises(ValueError, match="serves no path"):
        account.tamper("/fapi/v9/positionRisk", lambda rows: rows)
    with pytest.raises(ValueError, match="callable"):
        account.tamper("/fapi/v3/positionRisk", "rows")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        account.tamper("/fapi/v3/positionRisk", lambda rows: rows, times=0)
    account.tamper("/fapi/v1/time", lambda answer: 1 / 0, times=1)
    account.tamper("/fapi/v1/time", lambda answer: {"serverTime": object()}, times=1)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.get(f"{account.base_url}/fapi/v1/time") as reply:
                assert reply.status == 500 and "tampering /fapi/v1/time failed" in await reply.text()
        async with http.get(f"{account.base_url}/fapi/v1/time") as reply:
            assert reply.status == 200 and "serverTime" in await reply.json()
