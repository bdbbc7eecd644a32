"""Many accounts on one machine: one aiohttp session per venue endpoint, a per-IP request budget that counts the
venues' real weights and says when it (not the interval) bounds the accounts, and reads of only the checked
accounts' rows. Against the loopback venues and real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import asyncpg
import pytest
import yaml

from services import migrations
from services.positions import PositionsRepository
from services.positions.sqlite import SqlitePositions
from services.runtime import Runtime
from services.settings import PositionsSettings
from services.venues.budget import VenueBudget, VenueLimit
from tests.helpers import cli, config_dict, make_settings


async def test_accounts_on_one_endpoint_share_one_session(db, new_account, exchange_emulator):
    binance_a, binance_b, bybit = new_account("binance"), new_account("binance"), new_account("bybit")
    settings = make_settings(db, [binance_a, binance_b, bybit])
    runtime = await Runtime(settings).start()
    try:
        a, b, c = (runtime.gateways[x.name] for x in (binance_a, binance_b, bybit))
        assert a.client.session is b.client.session, "one Binance endpoint, one session"
        assert a.client.session is not c.client.session
        assert a.client.own_session is False and a.client.ssl_context is c.client.ssl_context
        result = await runtime.monitor.check()
        assert not result.unchecked
        session = a.client.session
    finally:
        await runtime.close()
    assert session.closed, "the runtime closes the sessions it lent, after the clients"


async def test_a_check_spends_binances_real_weights_from_the_budget(db, new_account):
    binance = new_account("binance")
    runtime = await Runtime(make_settings(db, [binance])).start()
    try:
        gateway = runtime.gateways[binance.name]
        await gateway.load_markets()
        before, charged = gateway.budget.spent, sum(r.weight for r in binance.requests)
        await runtime.monitor.check()
        spent = gateway.budget.spent - before
        charged = sum(r.weight for r in binance.requests) - charged
    finally:
        await runtime.close()
    # positionRisk 5 (ccxt would count 1), openOrders and openAlgoOrders without a symbol 40 each
    assert spent == charged == 85


async def test_the_budget_paces_requests_within_its_window():
    budget = VenueBudget("binanceusdm", 1.0, VenueLimit(10, 0.25, "weight"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(6):
        await budget.spend(5)  # 30 weight at 10 per 0.25 s
    elapsed = loop.time() - started
    assert 0.4 <= elapsed < 1.5
    assert budget.spent == 30 and budget.waited_s > 0


def test_the_budget_says_when_it_bounds_the_accounts():
    budget = VenueBudget("bybit", 0.5)
    assert budget.bound_note(1000, 60) is None  # 1,000 requests at 300 per 5 s: 17 s
    assert budget.bound_note(10_000, 60) == (
        "bybit: one check costs 10,000 requests; at 300 per 5s (50% of the venue's limit) a round takes 167s, "
        "longer than the 60s interval: the budget, not the interval, bounds these accounts"
    )


async def test_scan_reports_a_budget_that_bounds_the_accounts(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    config = config_dict(db, [binance], orphan_interval_s=10)
    config["venues"] = {"binanceusdm": {"budget": 0.05}}  # 120 weight a minute; a check costs 85
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, _ = await cli(capsys, "scan", "--config", path, "--json")
    assert code == 0
    [note] = json.loads(out)["budget"]
    # the first check of a process also loads the markets (exchangeInfo, weight 1)
    assert note.startswith("binanceusdm: one check costs 86 weight; at 120 per 60s (5% of the venue's limit)")
    code, out, _ = await cli(capsys, "scan", "--config", path)
    assert "Budget: binanceusdm: one check costs 86 weight" in out


@pytest.mark.parametrize("share", ["0", "1.5", "lots"])
async def test_a_budget_share_outside_0_to_1_is_a_clear_config_error(tmp_path, db, new_account, capsys, share):
    config = config_dict(db, [new_account("bybit")])
    config["venues"] = {"bybit": {"budget": share}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = await cli(capsys, "check-config", "--config", path)
    assert (code, out) == (3, "")
    assert "venues.bybit.budget: " in err


async def test_a_check_of_some_accounts_reads_only_their_rows(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrations.apply_migrations(conn)
            await migrations.ensure_positions_table(conn, PositionsSettings())
            await conn.execute(
                "INSERT INTO positions (exchange, account, symbol, side, quantity, status) VALUES"
                " ('binance', 'a', 'BTCUSDT', 'long', 1, 'active'),"
                " ('binance', 'b', 'ETHUSDT', 'long', 1, 'active'),"
                " ('binance', NULL, 'SOLUSDT', 'long', 1, 'active')"
            )
        repository = PositionsRepository(pool, PositionsSettings())
        await repository.inspect()
        assert [r.symbol for r in await repository.active(["binance"], ["a"])] == ["BTCUSDT", "SOLUSDT"]
        assert [r.symbol for r in await repository.active(["binance"])] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    finally:
        await pool.close()


async def test_sqlite_reads_only_the_checked_accounts_rows_too(tmp_path):
    path = tmp_path / "bot.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(
        "CREATE TABLE positions (id INTEGER PRIMARY KEY, exchange TEXT, account TEXT, symbol TEXT, side TEXT,"
        " quantity NUMERIC, entry_price NUMERIC, status TEXT, opened_at TEXT, closed_at TEXT, exit_reason TEXT,"
        " updated_at TEXT);"
        "INSERT INTO positions (exchange, account, symbol, side, quantity, status) VALUES"
        " ('bybit', 'a', 'BTCUSDT', 'long', 1, 'active'), ('bybit', 'b', 'ETHUSDT', 'long', 1, 'active');"
    )
    connection.commit()
    connection.close()
    store = SqlitePositions(PositionsSettings(url=f"sqlite:///{path}"), path)
    try:
        await store.inspect()
        assert [r.symbol for r in await store.active(["bybit"], ["b"])] == ["ETHUSDT"]
        assert [r.symbol for r in await store.active(["bybit"], [])] == []
    finally:
        await store.close()


async def test_ccxt_tables_are_one_copy_per_class(new_account, gateway_for):
    first, second = gateway_for(new_account("binance")), gateway_for(new_account("binance"))
    bybit = gateway_for(new_account("bybit"))
    assert first.client.api is second.client.api and first.client.exceptions is second.client.exceptions
    assert first.client.api is not bybit.client.api
    assert len(await first.positions()) == len(await second.positions()) == 0  # and they still work
