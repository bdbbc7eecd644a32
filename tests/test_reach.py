"""The trading bots people run, with their tables as those projects create them (tests/schemas/): the seed's
own monitoring.positions, freqtrade's trades (PostgreSQL and its default SQLite file), and a custom schema with
boolean, enum and naive-timestamp columns. Scanned, reconciled and fixed through the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import yaml

from services.fixes import GHOST_EXIT_REASON
from tests.helpers import account_config, cli, fetch_audit, prepare_database

SCHEMAS = Path(__file__).resolve().parent / "schemas"
NOW = datetime.now(UTC)


def write(tmp_path: Path, database_url: str, accounts, positions: dict, **scan) -> Path:
    path = tmp_path / "config.yaml"
    config = {
        "database": {"url": database_url},
        "accounts": [account_config(a) for a in accounts],
        "scan": {"grace_s": 0, "verify_delay_s": 0, **scan},
        "positions": positions,
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def execute(database_url: str, sql: str, *args) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def fetch(database_url: str, sql: str, *args) -> list[dict]:
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def findings(out: str) -> list[tuple]:
    return sorted((f["kind"], f["symbol"], f["side"]) for f in json.loads(out)["findings"])


# -- the seed's own trading bot ------------------------------------------------------------------------------------


@pytest.fixture
async def seed_db(database_url):
    await prepare_database(database_url)
    await execute(database_url, (SCHEMAS / "seed_monitoring_positions.sql").read_text())
    return database_url


async def seed_row(database_url, exchange, symbol, side, quantity, status="active", **extra) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        values = {
            "exchange": exchange,
            "symbol": symbol,
            "side": side,
            "quantity": Decimal(quantity),
            "entry_price": Decimal("100"),
            "status": status,
            "opened_at": NOW - timedelta(hours=2),
            **extra,
        }
        columns = ", ".join(values)
        marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        return await conn.fetchval(
            f"INSERT INTO monitoring.positions ({columns}) VALUES ({marks}) RETURNING id", *values.values()
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("positions", [{"table": "monitoring.positions"}, {"preset": "seed"}])
async def test_the_seed_bots_own_table(tmp_path, seed_db, new_account, capsys, positions):
    binance, bybit = new_account("binance"), new_account("bybit")
    binance.set_position("ETHUSDT", "long", Decimal("0.5"))
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    ghost = await seed_row(seed_db, "binance", "BTCUSDT", "long", "1")
    await seed_row(seed_db, "binance", "ETHUSDT", "long", "1")
    await seed_row(seed_db, "binance", "SOLUSDT", "long", "3", status="phantom")
    await seed_row(seed_db, "binance", "XRPUSDT", "short", "10", status="closed")
    config = write(tmp_path, seed_db, [binance, bybit], positions)

    code, out, err = await cli(capsys, "check-config", "--config", config)
    assert code == 0, err
    if "preset" not in positions:
        assert "not mapped: account (account)" in out, "the seed's table has no account column: simply unmapped"

    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    assert (code, findings(out)) == (2, [("orphan", "AVLUSDT", "long")])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert findings(out) == [("ghost", "BTCUSDT", "long"), ("quantity_mismatch", "ETHUSDT", "long")]
    assert [f["done"] for f in json.loads(out)["fixes"]] == [True]
    [row] = await fetch(seed_db, "SELECT status, exit_reason, closed_at FROM monitoring.positions WHERE id = $1", ghost)
    assert (row["status"], row["exit_reason"]) == ("closed", GHOST_EXIT_REASON)
    assert abs(row["closed_at"] - datetime.now(UTC)) < timedelta(minutes=1)


async def test_two_accounts_on_one_venue_need_an_account_column(tmp_path, seed_db, new_account, capsys):
    first, second = new_account("binance"), new_account("binance")
    config = write(tmp_path, seed_db, [first, second], {"preset": "seed", "columns": {"account": "account"}})
    code, out, err = await cli(capsys, "scan", "--config", config)
    assert (code, out) == (3, "")
    assert err.strip() == (
        f"error: accounts {first.name}, {second.name} share db_exchange 'binance' but positions table "
        "monitoring.positions has no column account, so their rows cannot be told apart; map positions.columns.account"
    )


async def test_migrate_never_alters_a_table_it_did_not_create(tmp_path, seed_db, new_account, capsys):
    binance = new_account("binance")
    columns = "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 ORDER BY 1"
    before = await fetch(seed_db, columns, "monitoring")
    config = write(tmp_path, seed_db, [binance], {"preset": "seed"})
    code, out, _ = await cli(capsys, "migrate", "--config", config)
    assert code == 0 and "created positions table" not in out
    assert await fetch(seed_db, columns, "monitoring") == before

    freqtrade = write(tmp_path, seed_db, [binance], {"preset": "freqtrade"})
    code, _, err = await cli(capsys, "migrate", "--config", freqtrade)
    assert code == 3
    assert "positions table trades does not exist" in err
    assert await fetch(seed_db, "SELECT to_regclass('trades') AS t") == [{"t": None}], "a bot's table is not created"


# -- freqtrade -------------------------------------------------------------------------------------------------

FREQTRADE_ROWS = [
    # (exchange, pair, is_open, is_short, amount, trading_mode, opened minutes ago)
    ("binance", "BTC/USDT:USDT", True, False, 0.01, "FUTURES", 180),
    ("binance", "ETH/USDT:USDT", True, True, 0.5, "FUTURES", 10),
    ("binance", "SOL/USDT:USDT", True, False, 0.0, "FUTURES", 180),  # entry placed, not filled yet
    ("binance", "BTC/USDT", True, False, 0.02, "SPOT", 180),  # spot is not a position
    ("binance", "XRP/USDT:USDT", False, False, 100.0, "FUTURES", 180),  # closed
    ("bybit", "XRP/USDT:USDT", True, False, 100.0, "FUTURES", 180),
]


def freqtrade_values(row) -> tuple:
    """A trade as freqtrade writes it: naive UTC dates, booleans, its other NOT NULL columns filled."""
    exchange, pair, is_open, is_short, amount, mode, minutes = row
    opened = (NOW - timedelta(minutes=minutes)).replace(tzinfo=None)
    return (exchange, pair, is_open, is_short, amount, mode, opened, 100.0, 0.0005, 0.0005, 10.0, False, 0.0)


FREQTRADE_INSERT = (
    "INSERT INTO trades (exchange, pair, is_open, is_short, amount, trading_mode, open_date, open_rate, fee_open,"
    " fee_close, stake_amount, is_stop_loss_trailing, interest_rate) VALUES ({})"
)


async def freqtrade_postgres(database_url: str) -> None:
    await prepare_database(database_url)
    await execute(database_url, (SCHEMAS / "freqtrade_trades_postgresql.sql").read_text())
    database = urlsplit(database_url).path.lstrip("/")
    await execute(database_url, f"ALTER DATABASE \"{database}\" SET timezone TO 'America/New_York'")
    conn = await asyncpg.connect(database_url)
    try:
        marks = ", ".join(f"${i}" for i in range(1, 14))
        for row in FREQTRADE_ROWS:
            await conn.execute(FREQTRADE_INSERT.format(marks.replace("$6", "$6::tradingmode")), *freqtrade_values(row))
    finally:
        await conn.close()


def freqtrade_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.executescript((SCHEMAS / "freqtrade_trades_sqlite.sql").read_text())
        for row in FREQTRADE_ROWS:
            values = list(freqtrade_values(row))
            values[6] = values[6].isoformat(sep=" ")  # SQLAlchemy's SQLite form: 2026-11-30 09:00:00.000000
            connection.execute(FREQTRADE_INSERT.format(", ".join("?" * 13)), values)
        connection.commit()
    finally:
        connection.close()


@pytest.fixture(params=["postgresql", "sqlite"])
async def freqtrade(request, tmp_path, database_url, new_account):
    binance, bybit = new_account("binance"), new_account("bybit")
    binance.set_position("BTCUSDT", "long", Decimal("0.01"))
    bybit.set_position("XRPUSDT", "long", Decimal("100"))
    positions: dict = {"preset": "freqtrade"}
    if request.param == "sqlite":
        await prepare_database(database_url)
        freqtrade_sqlite(tmp_path / "tradesv3.sqlite")
        positions["url"] = "sqlite:///tradesv3.sqlite"
    else:
        await freqtrade_postgres(database_url)
    return request.param, binance, bybit, positions


async def freqtrade_trade(kind: str, tmp_path: Path, database_url: str, trade_id: int) -> dict:
    if kind == "sqlite":
        connection = sqlite3.connect(tmp_path / "tradesv3.sqlite")
        connection.row_factory = sqlite3.Row
        try:
            return dict(connection.execute("SELECT * FROM trades WHERE id = ?", (trade_id,)).fetchone())
        finally:
            connection.close()
    [row] = await fetch(database_url, "SELECT * FROM trades WHERE id = $1", trade_id)
    return row


async def test_freqtrades_trades_as_freqtrade_writes_them(tmp_path, database_url, freqtrade, capsys):
    _kind, binance, bybit, positions = freqtrade
    config = write(tmp_path, database_url, [binance, bybit], positions, grace_s=60)
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json")
    report = json.loads(out)
    # ETH/USDT:USDT SHORT was opened 10 minutes ago in naive UTC: past the grace window whatever the DB's zone.
    assert (code, findings(out)) == (1, [("ghost", "ETHUSDT", "short")])
    assert report["pending"] == [{"account": binance.name, "symbol": "SOLUSDT", "side": "long"}], "amount 0: unfilled"
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    assert (code, findings(out)) == (0, []), "spot and closed trades are not positions"


async def test_freqtrade_is_read_only_unless_told_otherwise(tmp_path, database_url, freqtrade, capsys):
    kind, binance, bybit, positions = freqtrade
    config = write(tmp_path, database_url, [binance, bybit], positions)
    _code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    [fix] = json.loads(out)["fixes"]
    assert not fix["done"]
    assert "/reload_trade 2" in fix["message"] and "/delete 2" in fix["message"]
    assert "positions.writable: true" in fix["message"]
    assert (await freqtrade_trade(kind, tmp_path, database_url, 2))["is_open"] in (True, 1)
    assert [a["outcome"] for a in await fetch_audit(database_url)] == ["refused"]

    config = write(tmp_path, database_url, [binance, bybit], {**positions, "writable": True})
    _code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert [f["done"] for f in json.loads(out)["fixes"]] == [True]
    trade = await freqtrade_trade(kind, tmp_path, database_url, 2)
    assert trade["is_open"] in (False, 0) and trade["exit_reason"] == GHOST_EXIT_REASON
    closed = trade["close_date"]
    closed = datetime.fromisoformat(closed) if isinstance(closed, str) else closed
    assert abs(closed.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1), "naive UTC, as freqtrade"


async def test_a_locked_sqlite_file_passes_and_a_broken_one_does_not(tmp_path, monkeypatch):
    """freqtrade's lock outlasting the busy timeout is worth waiting for; a file that is no database is not."""
    from services.database import DatabaseError, DatabaseUnreachable
    from services.positions import SqlitePositions, sqlite
    from services.settings import PositionsSettings

    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_S", 0.2)
    settings = PositionsSettings(preset="freqtrade", url="sqlite:///tradesv3.sqlite")
    freqtrade_sqlite(tmp_path / "tradesv3.sqlite")
    holder = sqlite3.connect(tmp_path / "tradesv3.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    store = SqlitePositions(settings, tmp_path / "tradesv3.sqlite")
    try:
        with pytest.raises(DatabaseUnreachable, match=r"cannot read .*tradesv3\.sqlite: database is locked"):
            await store.inspect()
        holder.execute("COMMIT")
        await store.inspect()
        assert "symbol" in store.map
    finally:
        holder.close()
        await store.close()

    (tmp_path / "broken.sqlite").write_bytes(b"not a database at all" * 100)
    broken = SqlitePositions(settings, tmp_path / "broken.sqlite")
    try:
        with pytest.raises(DatabaseError, match="file is not a database") as error:
            await broken.inspect()
        assert not isinstance(error.value, DatabaseUnreachable)
    finally:
        await broken.close()


# -- a custom schema: booleans, enums, naive timestamps, filters, a symbol style ------------------------------

CUSTOM = """
CREATE TYPE trade_state AS ENUM ('OPEN', 'DONE');
CREATE TABLE desk_trades (
    uid uuid PRIMARY KEY DEFAULT gen_random_uuid(), venue text NOT NULL, book text, pair text,
    is_short boolean NOT NULL, size numeric, state trade_state NOT NULL, market_type text NOT NULL,
    created timestamp without time zone NOT NULL)
"""


def custom_positions(**extra) -> dict:
    return {
        "table": "desk_trades",
        "columns": {
            "id": "uid",
            "exchange": "venue",
            "account": "book",
            "symbol": "pair",
            "side": "is_short",
            "quantity": "size",
            "status": "state",
            "opened_at": "created",
        },
        "values": {"active": "OPEN", "closed": "DONE", "long": False, "short": True},
        "filters": {"market_type": "perp"},
        "symbols": [{"pattern": "^([A-Z0-9]+)-([A-Z]+)$", "replace": r"\1\2"}],
        **extra,
    }


async def test_a_custom_schema_with_booleans_enums_filters_and_a_symbol_style(
    tmp_path, database_url, new_account, capsys
):
    binance = new_account("binance")
    an_hour_ago = int((NOW - timedelta(hours=1)).timestamp() * 1000)
    binance.set_position("BTCUSDT", "short", Decimal("2"), opened_ms=an_hour_ago)
    binance.set_position("ETHUSDT", "long", Decimal("1"), opened_ms=an_hour_ago)
    await prepare_database(database_url)
    await execute(database_url, CUSTOM)
    opened = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    conn = await asyncpg.connect(database_url)
    try:
        insert = (
            "INSERT INTO desk_trades (venue, book, pair, is_short, size, state, market_type, created)"
            " VALUES ('binance', $1, $2, $3, $4, $5, $6, $7) RETURNING uid"
        )
        book = binance.name
        mismatch = await conn.fetchval(insert, book, "BTC-USDT", True, Decimal("1.5"), "OPEN", "perp", opened)
        await conn.fetchval(insert, book, "ETH-USDT", False, Decimal("1"), "OPEN", "spot", opened)  # filtered out
        await conn.fetchval(insert, book, "DOGE_USDT", False, Decimal("5"), "OPEN", "perp", opened)  # no rewrite
        await conn.fetchval(insert, book, "SOL-USDT", False, Decimal("3"), "DONE", "perp", opened)  # closed
        ghost = await conn.fetchval(insert, book, "XRP-USDT", False, Decimal("10"), "OPEN", "perp", opened)
    finally:
        await conn.close()
    config = write(tmp_path, database_url, [binance], custom_positions(), grace_s=60)
    _code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert findings(out) == [
        ("ghost", "XRPUSDT", "long"),
        ("quantity_mismatch", "BTCUSDT", "short"),
        ("unknown_symbol", "DOGE_USDT", "long"),
    ]
    assert [f["done"] for f in json.loads(out)["fixes"]] == [True]
    [row] = await fetch(database_url, "SELECT state::text FROM desk_trades WHERE uid = $1", ghost)
    assert row["state"] == "DONE", "closed in the enum's own type"
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    assert (code, findings(out)) == (2, [("orphan", "ETHUSDT", "long")]), "the spot row is filtered out"

    from services.fixes import plan_for_finding  # the Telegram button's plan, applied as a Confirm would
    from services.plans import FixAction
    from services.reconciler import Reconciler
    from services.runtime import Runtime
    from services.settings import load_settings

    async with Runtime(load_settings(config)) as runtime:
        filed = await Reconciler(runtime, []).check()
        [finding] = [f for f in filed.live if f.kind.value == "quantity_mismatch"]
        outcome = await runtime.fixes.apply(plan_for_finding(finding, FixAction.SET_DB_QUANTITY), "test")
    assert outcome.done, outcome.message
    [row] = await fetch(database_url, "SELECT size FROM desk_trades WHERE uid = $1", mismatch)
    assert row["size"] == Decimal("2")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"active": "active", "closed": "DONE", "long": False, "short": True},
            "positions.values.active 'active' is not a value of state's type trade_state (status); "
            "it holds 'OPEN', 'DONE'",
        ),
        (
            {"active": "OPEN", "closed": "DONE", "long": "long", "short": "short"},
            "positions.values.long 'long' cannot be compared with the boolean column is_short (side); "
            "use true or false",
        ),
    ],
)
async def test_values_that_do_not_fit_a_columns_type_are_one_line(
    tmp_path, database_url, new_account, capsys, values, message
):
    binance = new_account("binance")
    await prepare_database(database_url)
    await execute(database_url, CUSTOM)
    config = write(tmp_path, database_url, [binance], custom_positions(values=values))
    for command in ("check-config", "scan"):
        code, _out, err = await cli(capsys, command, "--config", config)
        assert code == 3
        assert err.strip().endswith(message), err
