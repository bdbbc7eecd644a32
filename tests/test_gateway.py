"""The exchange gateway against the loopback venues: every category, every page, and every failure as a reason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.model import Side
from services.settings import AccountSettings
from services.venues import MarketCache, VenueError
from services.venues import gateway_for as open_gateway
from tests.helpers import account_config


def summary(positions):
    return sorted((p.market, p.side.value, p.quantity) for p in positions)


async def test_binance_one_way_positions_with_detail(new_account, gateway_for):
    account = new_account("binance")
    account.set_position("BTCUSDT", "long", Decimal("0.5"), entry_price=Decimal("60000"), mark_price=Decimal("61000"))
    account.set_position("1000PEPEUSDT", "short", Decimal("120000"), entry_price=Decimal("0.0123"), leverage=5)
    account.set_position("BTCUSDT_261225", "long", Decimal("0.010"), entry_price=Decimal("66000"))
    account.set_position("ETHUSDC", "short", Decimal("2"), entry_price=Decimal("3000"))
    account.set_position("SOLUSDT", "long", Decimal("0"))
    positions = await gateway_for(account).positions()
    assert summary(positions) == [
        ("1000PEPEUSDT", "short", Decimal("120000")),
        ("BTCUSDT", "long", Decimal("0.5")),
        ("BTCUSDT_261225", "long", Decimal("0.01")),
        ("ETHUSDC", "short", Decimal("2")),
    ]
    btc = next(p for p in positions if p.market == "BTCUSDT")
    assert (btc.symbol, btc.entry_price, btc.mark_price) == ("BTC/USDT:USDT", Decimal("60000"), Decimal("61000"))
    assert btc.unrealized_pnl == Decimal("500")
    assert btc.leverage == Decimal("10")
    assert btc.amount_step == Decimal("0.001")
    assert btc.stop_loss is None and btc.protection is None, "stops come from the order read, not positionRisk"
    assert btc.updated_at is not None
    pepe = next(p for p in positions if p.market == "1000PEPEUSDT")
    assert pepe.leverage == Decimal("5")


async def test_binance_hedge_mode_holds_long_and_short_on_one_market(new_account, gateway_for):
    account = new_account("binance", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("BTCUSDT", "short", Decimal("0.3"))
    positions = await gateway_for(account).positions()
    assert summary(positions) == [("BTCUSDT", "long", Decimal("1")), ("BTCUSDT", "short", Decimal("0.3"))]
    assert len({p.key for p in positions}) == 2


async def test_bybit_reads_every_category_and_every_page(new_account, gateway_for):
    account = new_account("bybit")
    account.page_size = 2
    for market, side, size in [
        ("BTCUSDT", "long", "0.1"),
        ("ETHUSDT", "short", "2"),
        ("SOLUSDT", "long", "10"),
        ("XRPUSDT", "long", "100"),
        ("DOGEUSDT", "short", "1000"),
        ("BTCPERP", "long", "0.2"),
        ("ETHPERP", "long", "1"),
        ("SOLPERP", "short", "3"),
        ("BTCUSD", "short", "500"),
        ("ETHUSD", "long", "300"),
        ("XRPUSD", "long", "50"),
    ]:
        account.set_position(market, side, Decimal(size), stop_loss=Decimal("1") if market == "ETHUSDT" else None)
    gateway = gateway_for(account)
    before = account.request_count("positions")
    positions = await gateway.positions()
    assert len(positions) == 11
    categories = {p.market: p.category for p in positions}
    assert categories["BTCUSDT"] == "linear USDT"
    assert categories["BTCPERP"] == "linear USDC"
    assert categories["BTCUSD"] == "inverse"
    # 5 USDT positions in pages of 2 -> 3 pages; 3 USDC -> 2; 3 inverse -> 2.
    assert account.request_count("positions") - before == 7
    eth = next(p for p in positions if p.market == "ETHUSDT")
    assert eth.stop_loss == Decimal("1"), "Bybit reports a position's own stop with the position"
    btc = next(p for p in positions if p.market == "BTCUSDT")
    assert btc.stop_loss is None
    assert btc.opened_at is not None


async def test_bybit_hedge_mode(new_account, gateway_for):
    account = new_account("bybit", hedge_mode=True)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    account.set_position("BTCUSDT", "short", Decimal("2"))
    assert summary(await gateway_for(account).positions()) == [
        ("BTCUSDT", "long", Decimal("1")),
        ("BTCUSDT", "short", Decimal("2")),
    ]


async def test_an_empty_account_is_an_empty_list(new_account, gateway_for):
    for venue in ("binance", "bybit"):
        assert await gateway_for(new_account(venue)).positions() == []


FAULTS = [
    ("http_500", "exchange", "exchange not available"),
    ("rate_limit", "rate limited", "rate limited"),
    ("empty_body", "bad response", "bad response"),
    ("garbage_json", "bad response", "bad response"),
    ("no_success_marker", "bad response", "bad response"),
    ("bad_key", "authentication failed", "authentication failed"),
    ("timeout", "timed out after 0.5s", "timed out after 0.5s"),
]


@pytest.mark.parametrize("venue", ["binance", "bybit"])
@pytest.mark.parametrize(("kind", "binance_reason", "bybit_reason"), FAULTS)
async def test_every_fault_is_a_reason_never_an_empty_list(
    new_account, gateway_for, venue, kind, binance_reason, bybit_reason
):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    gateway = gateway_for(account, timeout_s=0.5)
    await gateway.load_markets()
    account.fail(kind, endpoint="positions")
    with pytest.raises(VenueError) as caught:
        await gateway.positions()
    reason = caught.value.reason
    assert reason.startswith(binance_reason if venue == "binance" else bybit_reason), reason
    assert "\n" not in reason
    assert account.api_key not in reason and account.secret not in reason
    account.clear_faults()
    assert summary(await gateway.positions()) == [("BTCUSDT", "long", Decimal("1"))]


async def test_a_failure_on_a_later_page_fails_the_whole_read(new_account, gateway_for):
    account = new_account("bybit")
    account.page_size = 1
    for market in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        account.set_position(market, "long", Decimal("1"))
    gateway = gateway_for(account)
    await gateway.load_markets()
    pages_asked = []
    original = gateway.client.privateGetV5PositionList

    async def fail_from_the_second_page(request):
        # The venue starts failing once the first page has been served.
        pages_asked.append(request.get("cursor"))
        if request.get("cursor"):
            account.fail("http_500", endpoint="positions", times=1)
        return await original(request)

    gateway.client.privateGetV5PositionList = fail_from_the_second_page
    with pytest.raises(VenueError, match="exchange not available"):
        await gateway.positions()
    assert any(pages_asked), "a second page was requested"


async def test_market_loading_failure_is_unchecked_too(new_account, gateway_for):
    for venue in ("binance", "bybit"):
        account = new_account(venue)
        account.fail("no_success_marker", endpoint="markets", times=1)
        with pytest.raises(VenueError, match="bad response"):
            await gateway_for(account).positions()


async def test_wrong_secret_is_named_an_authentication_failure(new_account, gateway_for):
    account = new_account("bybit")
    gateway = open_gateway(AccountSettings(**{**account_config(account), "secret": "not-the-secret"}))
    try:
        with pytest.raises(VenueError, match=r"^authentication failed"):
            await gateway.positions()
    finally:
        await gateway.close()


async def test_db_symbols_resolve_to_market_ids(new_account, gateway_for):
    binance = gateway_for(new_account("binance"))
    bybit = gateway_for(new_account("bybit"))
    await binance.load_markets()
    await bybit.load_markets()
    assert binance.resolve_market("BTCUSDT") == ("BTCUSDT", True)
    assert binance.resolve_market("btcusdt") == ("BTCUSDT", True)
    assert binance.resolve_market("BTC/USDT:USDT") == ("BTCUSDT", True)
    assert binance.resolve_market("1000PEPE/USDT:USDT") == ("1000PEPEUSDT", True)
    assert binance.resolve_market("BTC/USDT:USDT-261225") == ("BTCUSDT_261225", True)
    assert bybit.resolve_market("BTC/USDC:USDC") == ("BTCPERP", True)
    assert bybit.resolve_market("BTC/USD:BTC") == ("BTCUSD", True)
    assert bybit.resolve_market("BTCPERP") == ("BTCPERP", True)
    assert binance.resolve_market("NOPEUSDT") == ("NOPEUSDT", False)


async def test_side_is_part_of_the_key(new_account, gateway_for):
    account = new_account("binance")
    account.set_position("ETHUSDT", "short", Decimal("3"))
    [position] = await gateway_for(account).positions()
    assert position.side is Side.SHORT
    assert str(position.key) == f"{account.name} ETHUSDT SHORT"


async def test_accounts_on_one_endpoint_share_one_market_list(new_account):
    account = new_account("bybit")
    account.set_position("BTCPERP", "long", Decimal("1"))
    cache = MarketCache(ttl_s=3600)
    first = open_gateway(AccountSettings(**account_config(account, name="desk-a")), markets=cache)
    second = open_gateway(AccountSettings(**account_config(account, name="desk-b")), markets=cache)
    try:
        await first.positions()
        loads = account.request_count("markets")
        assert loads > 0
        assert summary(await second.positions()) == [("BTCPERP", "long", Decimal("1"))]
        assert account.request_count("markets") == loads, "the second account reuses the first one's markets"
        assert second.client.markets is first.client.markets
        cache.ttl_s = 0
        await second.positions()
        assert account.request_count("markets") > loads, "stale markets are reloaded"
    finally:
        await first.close()
        await second.close()
