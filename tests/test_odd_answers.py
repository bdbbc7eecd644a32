"""Odd venue answers, through the real ccxt clients against the loopback venues: nothing dropped, nothing
guessed, and a failed read names its real reason."""

from __future__ import annotations

import base64
import copy
from decimal import Decimal

import pytest

from services.venues import BadAnswer, Unavailable, VenueError


def summary(positions):
    return sorted((p.market, p.side.value, p.quantity, p.entry_price) for p in positions)


async def test_binance_position_with_entry_price_zero_is_a_position(new_account, gateway_for):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("0.5"), entry_price=0)
    account.set_position("ETHUSDT", "short", Decimal("2"), entry_price=Decimal("3000"))
    positions = await gateway_for(account).positions()
    assert summary(positions) == [
        ("BTCUSDT", "long", Decimal("0.5"), None),
        ("ETHUSDT", "short", Decimal("2"), Decimal("3000")),
    ]


async def test_binance_position_without_entry_price_field_is_a_position(new_account, gateway_for):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.tamper(
        "/fapi/v3/positionRisk", lambda rows: [{k: v for k, v in r.items() if k != "entryPrice"} for r in rows]
    )
    assert summary(await gateway_for(account).positions()) == [("BTCUSDT", "long", Decimal("1"), None)]


def _duplicate_first(rows):
    return [*rows, copy.deepcopy(rows[0])]


def _flip_notional(rows):
    rows = copy.deepcopy(rows)
    rows[0]["notional"] = str(-Decimal(rows[0]["notional"]))
    return rows


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (_duplicate_first, "two rows for BTCUSDT LONG in one answer"),
        (_flip_notional, "contradicts positionAmt"),
        (lambda rows: [42, *rows], "position row 1 of /fapi/v3/positionRisk is not an object"),
        (lambda rows: [{**rows[0], "positionAmt": "abc"}], "positionAmt 'abc', not a number"),
        (lambda rows: [{**rows[0], "positionSide": "SHORT"}], "positionSide 'SHORT' with positionAmt 1"),
        (lambda rows: [{**rows[0], "positionAmt": "NaN"}], "not a finite number"),
    ],
)
async def test_binance_rows_that_contradict_themselves_make_the_account_unchecked(
    new_account, gateway_for, transform, reason
):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("ETHUSDT", "long", Decimal("2"))
    account.tamper("/fapi/v3/positionRisk", transform, times=1)
    gateway = gateway_for(account)
    with pytest.raises(BadAnswer) as caught:
        await gateway.positions()
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason
    assert len(await gateway.positions()) == 2, "the next, normal answer reads as usual"


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (lambda r: {**r, "list": [*r["list"], copy.deepcopy(r["list"][0])]}, "two rows for BTCUSDT LONG in one answer"),
        (lambda r: {**r, "list": ["oops"]}, "row 1 is not an object"),
        (lambda r: {**r, "list": [{**r["list"][0], "size": "abc"}]}, "size 'abc', not a number"),
        (lambda r: {**r, "list": [{**r["list"][0], "side": ""}]}, "side '' for a position of size"),
    ],
)
async def test_bybit_rows_that_cannot_be_understood_make_the_account_unchecked(
    new_account, gateway_for, transform, reason
):
    account = new_account("bybit")
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.tamper("/v5/position/list", transform, times=1)
    with pytest.raises(BadAnswer) as caught:
        await gateway_for(account).positions()
    assert reason in caught.value.reason


def _rewind(cursor: str) -> str:
    """A cursor that points at the first row again, as a venue might send with an empty first page."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    scope, _, _offset = raw.rpartition("|")
    return base64.urlsafe_b64encode(f"{scope}|0".encode()).decode().rstrip("=")


async def test_an_empty_bybit_page_that_carries_a_cursor_is_followed(new_account, gateway_for):
    account = new_account("bybit")
    account.page_size = 2
    for market in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"):
        account.set_position(market, "long", Decimal("1"))
    account.tamper(
        "/v5/position/list", lambda r: {**r, "list": [], "nextPageCursor": _rewind(r["nextPageCursor"])}, times=1
    )
    positions = await gateway_for(account).positions()
    assert sorted(p.market for p in positions) == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


async def test_a_read_stopped_by_its_deadline_says_so_and_how_far_it_got(new_account, gateway_for, exchange_emulator):
    markets = exchange_emulator.add_synthetic_markets("bybit", 400)
    account = new_account("bybit")
    account.page_size = 1
    for market in markets:
        account.set_position(market, "long", Decimal("1"))
    gateway = gateway_for(account, read_deadline_s=0.5)  # 400 pages, one request each, take longer
    await gateway.load_markets()
    with pytest.raises(Unavailable) as caught:
        await gateway.positions()
    reason = caught.value.reason
    assert reason.startswith("the read did not finish within its 0.5s deadline ("), reason
    assert "pages of linear USDT positions read)" in reason
    assert "timed out after" not in reason


async def test_a_request_timeout_is_still_named_as_one(new_account, gateway_for):
    account = new_account("binance")
    gateway = gateway_for(account, timeout_s=0.5)
    await gateway.load_markets()
    account.fail("timeout", endpoint="positions", times=1)
    with pytest.raises(VenueError, match=r"^timed out after 0.5s$"):
        await gateway.positions()
