"""The seed's integration snippet: a trading bot embeds the two monitor classes and gets callbacks."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import pytest

from services.embedding import OrphanedPositionMonitor, PositionReconciliation
from services.model import SCAN_KINDS
from services.monitor import Monitor
from services.positions import PositionsRepository, ReadOnlyStore
from services.settings import AccountSettings, PositionsSettings, ScanSettings
from services.venues import gateway_for
from tests.helpers import account_config, fetch_audit, insert_positions, prepare_database
from tests.test_stream_sightings import POSITIONS_PATH, omit_once


@pytest.fixture
async def parts(database_url, new_account):
    await prepare_database(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    repository = PositionsRepository(pool, PositionsSettings())
    await repository.inspect()
    binance, bybit = new_account("binance"), new_account("bybit")
    gateways = {a.name: gateway_for(AccountSettings(**account_config(a))) for a in (binance, bybit)}
    yield repository, gateways, binance, bybit
    for gateway in gateways.values():
        await gateway.close()
    await pool.close()


SCAN = ScanSettings(grace_s=0, verify_delay_s=0)


async def test_manual_scan_returns_orphans_by_account_and_alerts_once(parts):
    repository, gateways, binance, bybit = parts
    bybit.set_position("AVLUSDT", "long", Decimal("86"), entry_price=Decimal("0.5"))
    alerts = []
    monitor = OrphanedPositionMonitor(
        repository=repository,
        exchange_managers=gateways,
        position_manager=None,
        alert_callback=lambda *args: alerts.append(args),
        scan=SCAN,
    )
    result = await monitor.manual_scan()
    assert result[binance.name] == []
    [orphan] = result[bybit.name]
    assert (orphan["symbol"], orphan["side"], orphan["contracts"], orphan["entry_price"]) == (
        "AVLUSDT",
        "long",
        Decimal("86"),
        Decimal("0.5"),
    )
    assert orphan["has_stop_loss"] is False
    assert [(a[0], a[1], a[2]) for a in alerts] == [("orphaned_position", bybit.name, "AVLUSDT")]
    assert alerts[0][3]["contracts"] == Decimal("86")

    await monitor.manual_scan()
    assert len(alerts) == 1, "the same orphan is not announced twice"
    bybit.tamper(POSITIONS_PATH["bybit"], omit_once("bybit", "AVLUSDT"))
    assert (await monitor.manual_scan())[bybit.name] == [], "one answer left the position out"
    await monitor.manual_scan()
    assert len(alerts) == 1, "one answer that left it out is not the end of the drift: no second alert"
    bybit.remove_position("AVLUSDT", "long")
    await monitor.manual_scan()
    await monitor.manual_scan()
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await monitor.manual_scan()
    assert len(alerts) == 2, "an orphan that two checks no longer saw and that came back is announced again"


async def test_has_stop_loss_comes_from_the_venues_orders(parts):
    """The seed-compatible dict and the alerts share one truth: a stop order protects, a failed read is unknown."""
    repository, gateways, binance, bybit = parts
    bybit.set_position("AVLUSDT", "long", Decimal("86"), mark_price=Decimal("0.13"))
    bybit.place_protective_order("AVLUSDT", "sell", "stop_market", trigger_price="0.12", close_position=True)
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    binance.fail("http_500", endpoint="open_orders")
    monitor = OrphanedPositionMonitor(
        repository=repository, exchange_managers=gateways, position_manager=None, alert_callback=None, scan=SCAN
    )
    result = await monitor.manual_scan()
    [protected] = result[bybit.name]
    assert (protected["has_stop_loss"], protected["stop_loss"], protected["protection"]) == (True, 0.12, "stop")
    [unknown] = result[binance.name]
    assert (unknown["has_stop_loss"], unknown["protection"]) == (None, "unknown")


async def test_manual_reconcile_reports_ghosts_and_mismatches_with_async_callback(parts, database_url):
    repository, gateways, binance, _ = parts
    binance.set_position("ETHUSDT", "short", Decimal("1"))
    await insert_positions(
        database_url,
        [
            {"exchange": "binance", "account": binance.name, "symbol": "BTCUSDT", "side": "long", "quantity": 1},
            {"exchange": "binance", "account": binance.name, "symbol": "ETHUSDT", "side": "short", "quantity": 2},
        ],
    )
    received = []

    async def on_alert(alert_type, exchange, symbol, details):
        received.append((alert_type, exchange, symbol, details["type"]))

    reconciliation = PositionReconciliation(repository, gateways, None, on_alert, scan=SCAN)
    result = await reconciliation.manual_reconcile()
    assert [(d["type"], d["symbol"]) for d in result[binance.name]] == [
        ("missing_on_exchange", "BTCUSDT"),
        ("quantity_mismatch", "ETHUSDT"),
    ]
    assert received == [
        ("reconciliation_mismatch", binance.name, "BTCUSDT", "missing_on_exchange"),
        ("reconciliation_mismatch", binance.name, "ETHUSDT", "quantity_mismatch"),
    ]


async def test_unchecked_account_is_absent_not_empty(parts):
    repository, gateways, binance, bybit = parts
    bybit.fail("rate_limit", endpoint="positions")
    monitor = OrphanedPositionMonitor(repository, gateways, scan=SCAN)
    result = await monitor.manual_scan()
    assert list(result) == [binance.name]
    assert monitor.last_result.unchecked[0].account == bybit.name


async def test_start_runs_in_the_background_and_stop_ends_it(parts):
    repository, gateways, _, bybit = parts
    bybit.set_position("SOLUSDT", "short", Decimal("3"))
    seen = asyncio.Event()
    monitor = OrphanedPositionMonitor(
        repository, gateways, alert_callback=lambda *a: seen.set(), scan=SCAN, interval_s=0.05
    )
    assert monitor.interval_s == 0.05
    assert OrphanedPositionMonitor(repository, gateways).interval_s == 300
    assert PositionReconciliation(repository, gateways).interval_s == 600
    await monitor.start()
    await monitor.start()
    assert monitor.running
    await asyncio.wait_for(seen.wait(), timeout=10)
    requests = bybit.request_count("positions")
    await asyncio.sleep(0.3)
    assert bybit.request_count("positions") > requests, "it keeps checking"
    await monitor.stop()
    assert not monitor.running
    stopped_at = bybit.request_count("positions")
    await asyncio.sleep(0.2)
    assert bybit.request_count("positions") == stopped_at


async def test_a_failing_callback_does_not_stop_the_monitor(parts):
    repository, gateways, _, bybit = parts
    bybit.set_position("SOLUSDT", "short", Decimal("3"))

    def broken(*args):
        raise RuntimeError("callback bug")

    monitor = OrphanedPositionMonitor(repository, gateways, alert_callback=broken, scan=SCAN)
    result = await monitor.manual_scan()
    assert len(result[bybit.name]) == 1


async def test_drift_already_confirmed_needs_no_second_read(parts):
    repository, gateways, _binance, bybit = parts
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    monitor = Monitor(SCAN, gateways, repository)
    await monitor.check(SCAN_KINDS)
    bybit.clear_requests()
    first = await monitor.check(SCAN_KINDS)
    assert bybit.request_count("positions") == 2 * 3, "a new candidate is read twice (3 categories each)"
    bybit.clear_requests()
    known = await monitor.check(SCAN_KINDS, confirmed={f.fingerprint for f in first.findings})
    assert bybit.request_count("positions") == 3, "known drift is reported from the first read"
    assert [f.fingerprint for f in known.findings] == [f.fingerprint for f in first.findings]
    bybit.set_position("SOLUSDT", "short", Decimal("2"))
    bybit.clear_requests()
    both = await monitor.check(SCAN_KINDS, confirmed={f.fingerprint for f in first.findings})
    assert bybit.request_count("positions") == 2 * 3, "something new: that account is read again"
    assert sorted(f.key.market for f in both.findings) == ["AVLUSDT", "SOLUSDT"]


# -- the seed's own dependencies -------------------------------------------------------------------------------


class SeedRepository:
    """A trading bot's repository with the seed's methods, over a plain list."""

    def __init__(self, rows):
        self.rows = rows
        self.updates = []

    async def get_active_positions(self, exchange=None):
        return [dict(r) for r in self.rows if r.get("status", "active") == "active"]

    async def update_position(self, position_id, **fields):
        self.updates.append((position_id, fields))


class ExchangeManager:
    """The seed's manager: a real ccxt exchange in ``.exchange``."""

    def __init__(self, exchange):
        self.exchange = exchange


async def test_the_seeds_managers_holding_real_ccxt_exchanges(new_account):
    from services.venues import create_client

    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    bybit.set_position("BTCPERP", "short", Decimal("0.5"))
    client = create_client("bybit", api_key=bybit.api_key, secret=bybit.secret, api_base_url=bybit.base_url)
    repository = SeedRepository([{"id": 123, "symbol": "ETHUSDT", "quantity": 1.0, "side": "long"}])
    try:
        monitor = OrphanedPositionMonitor(
            repository=repository, exchange_managers={"bybit": ExchangeManager(client)}, scan=SCAN
        )
        orphans = (await monitor.manual_scan())["bybit"]
        assert sorted((o["symbol"], o["side"], o["contracts"]) for o in orphans) == [
            ("AVLUSDT", "long", 86.0),
            ("BTCPERP", "short", 0.5),
        ], "every category: USDC perpetuals too, which the seed's linear-only read missed"
        assert orphans[0]["contracts"].exact == Decimal("86")

        reconciliation = PositionReconciliation(repository, {"bybit": ExchangeManager(client)}, scan=SCAN)
        for _ in range(2):
            [ghost] = (await reconciliation.manual_reconcile())["bybit"]
            assert (ghost["type"], ghost["db_position_id"], ghost["db_quantity"]) == ("missing_on_exchange", 123, 1.0)
        [(position_id, fields)] = repository.updates
        assert position_id == 123, "marked closed once"
        assert (fields["status"], fields["exit_reason"]) == ("closed", "reconciliation: position not found on exchange")

        bybit.fail("empty_body", endpoint="positions")
        assert await monitor.manual_scan() == {}, "a failed read is an unchecked account, never no positions"
        assert monitor.last_result.unchecked[0].error.startswith("bad response")
    finally:
        await client.close()


async def test_a_repository_with_only_close_position_and_no_side():
    from unittest.mock import AsyncMock, Mock

    repository = Mock(spec=["get_active_positions", "close_position"])
    repository.get_active_positions = AsyncMock(return_value=[{"id": 7, "symbol": "SOLUSDT", "quantity": 3}])
    repository.close_position = AsyncMock()
    short_only = Mock(spec=["fetch_positions"])
    short_only.fetch_positions = AsyncMock(return_value=[{"symbol": "SOL/USDT:USDT", "contracts": 3, "side": "short"}])
    reconciliation = PositionReconciliation(repository, {"binance": short_only}, scan=SCAN)
    assert (await reconciliation.manual_reconcile())["binance"] == [], "no side in the DB: any side matches"

    short_only.fetch_positions = AsyncMock(return_value=[])
    [ghost] = (await reconciliation.manual_reconcile())["binance"]
    assert ghost["symbol"] == "SOLUSDT"
    repository.close_position.assert_awaited_once_with(7, reason="reconciliation: position not found on exchange")


async def test_more_ghosts_at_once_than_the_limit_closes_none():
    from unittest.mock import AsyncMock, Mock

    repository = SeedRepository([{"id": i, "symbol": s, "quantity": 1} for i, s in enumerate(["BTCUSDT", "ETHUSDT"])])
    empty = Mock(spec=["fetch_positions"])
    empty.fetch_positions = AsyncMock(return_value=[])
    limited = ScanSettings(grace_s=0, verify_delay_s=0, auto_fix_max_per_run=1)
    reconciliation = PositionReconciliation(repository, {"bybit": empty}, scan=limited)
    assert len((await reconciliation.manual_reconcile())["bybit"]) == 2
    assert repository.updates == []


def test_an_unknown_venue_name_is_a_clear_error():
    from unittest.mock import Mock

    with pytest.raises(ValueError, match=r"exchange_managers\['kraken'\]: reconbot watches binanceusdm, bybit"):
        OrphanedPositionMonitor(Mock(), {"kraken": Mock(spec=["fetch_positions"])})


async def test_stop_works_as_the_seeds_plain_call_and_awaited(parts):
    repository, gateways, _, _ = parts
    monitor = OrphanedPositionMonitor(repository, gateways, scan=SCAN, interval_s=60)
    await monitor.start()
    monitor.stop()  # the seed's glue calls it without await
    await asyncio.sleep(0.05)
    assert not monitor.running
    await monitor.start()
    await monitor.stop()
    assert not monitor.running


# -- a read-only store and the names a bot gives its gateways ---------------------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
async def freqtrade_store(request, tmp_path, database_url):
    """reconbot's own store over freqtrade's ``trades`` as freqtrade creates it (read-only by the preset)."""
    from services.positions import PostgresPositions, SqlitePositions
    from tests.test_reach import freqtrade_postgres, freqtrade_sqlite

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    if request.param == "sqlite":
        await prepare_database(database_url)
        freqtrade_sqlite(tmp_path / "tradesv3.sqlite")
        settings = PositionsSettings(preset="freqtrade", url="sqlite:///tradesv3.sqlite")
        store = SqlitePositions(settings, tmp_path / "tradesv3.sqlite")
    else:
        await freqtrade_postgres(database_url)
        store = PostgresPositions(pool, PositionsSettings(preset="freqtrade"))
    await store.inspect()
    yield request.param, store, pool
    await store.close()
    await pool.close()


async def test_auto_fix_never_writes_a_read_only_store(
    freqtrade_store, tmp_path, database_url, gateway_for, new_account, caplog
):
    """freqtrade keeps open trades in memory: a confirmed ghost is reported, its trade stays open, and the refusal
    says why in the words every other fix path uses."""
    from tests.test_reach import freqtrade_trade

    kind, store, pool = freqtrade_store
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("0.01"))
    before = await freqtrade_trade(kind, tmp_path, database_url, 2)
    reconciliation = PositionReconciliation(store, {binance.name: gateway_for(binance)}, scan=SCAN)
    assert reconciliation.auto_fix, "on by default, as the seed's"
    with caplog.at_level("WARNING", logger="services.embedding"):
        [ghost] = (await reconciliation.manual_reconcile())[binance.name]
        await reconciliation.manual_reconcile()
    assert (ghost["type"], ghost["db_position_id"], ghost["symbol"]) == ("missing_on_exchange", 2, "ETHUSDT")
    assert await freqtrade_trade(kind, tmp_path, database_url, 2) == before, "freqtrade's trade is unchanged"
    reason = store.settings.read_only_reason("2")
    assert "/reload_trade 2" in reason
    assert reconciliation.refused == {"2": reason}
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning == f"auto-fix refused for position #2: {reason}", "said once, not every round"
    if kind == "postgresql":
        [audit] = await fetch_audit(database_url)
        assert (audit["action"], audit["outcome"], audit["reason"]) == ("close_ghost", "refused", reason)

    with pytest.raises(ReadOnlyStore, match="reload_trade ID"):
        store.change(pool)  # the store itself refuses, whoever asks
    assert await freqtrade_trade(kind, tmp_path, database_url, 2) == before


async def test_a_gateway_under_any_key(parts):
    """The bot's own names for its managers key the results, whatever the gateway's account is called."""
    repository, gateways, binance, bybit = parts
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    alerts = []
    renamed = {"ft-bin": gateways[binance.name], "ft-bybit": gateways[bybit.name]}
    monitor = OrphanedPositionMonitor(repository, renamed, alert_callback=lambda *a: alerts.append(a), scan=SCAN)
    result = await monitor.manual_scan()
    assert list(result) == ["ft-bin", "ft-bybit"]
    assert [o["symbol"] for o in result["ft-bybit"]] == ["AVLUSDT"]
    assert [(a[1], a[2], a[3]["exchange"]) for a in alerts] == [("ft-bybit", "AVLUSDT", "ft-bybit")]
    reconciliation = PositionReconciliation(repository, renamed, scan=SCAN)
    assert list(await reconciliation.manual_reconcile()) == ["ft-bin", "ft-bybit"]
    bybit.fail("rate_limit", endpoint="positions")
    assert list(await monitor.manual_scan()) == ["ft-bin"], "an unchecked account is still absent"


def test_two_names_for_one_account_is_a_clear_error(parts):
    repository, gateways, binance, _ = parts
    twice = {"a": gateways[binance.name], "b": gateways[binance.name]}
    with pytest.raises(
        ValueError, match=rf"exchange_managers\['b'\]: another manager already watches account '{binance.name}'"
    ):
        OrphanedPositionMonitor(repository, twice)


async def test_auto_fix_writes_freqtrade_when_told_to(database_url, gateway_for, new_account):
    """``writable: true`` lets it close the trade, its naive close_date in UTC as freqtrade writes it."""
    from datetime import UTC, datetime, timedelta

    from services.positions import PostgresPositions
    from tests.test_reach import freqtrade_postgres, freqtrade_trade

    await freqtrade_postgres(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = PostgresPositions(pool, PositionsSettings(preset="freqtrade", writable=True))
        await store.inspect()
        binance = new_account("binance")
        binance.set_position("BTCUSDT", "long", Decimal("0.01"))
        reconciliation = PositionReconciliation(store, {binance.name: gateway_for(binance)}, scan=SCAN)
        await reconciliation.manual_reconcile()
        trade = await freqtrade_trade("postgresql", None, database_url, 2)
        assert (trade["is_open"], trade["exit_reason"]) == (False, "reconciliation: position not found on exchange")
        assert abs(trade["close_date"].replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
        assert [(a["outcome"], a["target"]) for a in await fetch_audit(database_url)] == [("done", "position #2")]
    finally:
        await pool.close()
