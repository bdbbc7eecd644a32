"""The positions repository and migrations against real PostgreSQL, including a trading bot's own schema."""

from __future__ import annotations

import re
from decimal import Decimal

import asyncpg
import pytest

from services import migrations
from services.database import DatabaseError
from services.model import Side
from services.positions import PositionsRepository
from services.settings import PositionsSettings


@pytest.fixture
async def pool(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    yield pool
    await pool.close()


async def migrated(pool, settings: PositionsSettings) -> PositionsRepository:
    async with pool.acquire() as conn:
        await migrations.apply_migrations(conn)
        await migrations.ensure_positions_table(conn, settings)
    repository = PositionsRepository(pool, settings)
    await repository.inspect()
    return repository


async def test_migrations_apply_once_and_create_the_default_table(pool):
    async with pool.acquire() as conn:
        first = await migrations.apply_migrations(conn)
        again = await migrations.apply_migrations(conn)
        assert [m.version for m in first] == [m.version for m in migrations.MIGRATIONS]
        assert again == []
        assert await migrations.current_version(conn) == migrations.LATEST_VERSION
        assert await migrations.ensure_positions_table(conn, PositionsSettings()) is True
        assert await migrations.ensure_positions_table(conn, PositionsSettings()) is False
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'positions' ORDER BY ordinal_position"
        )
    assert [c["column_name"] for c in columns] == [
        "id",
        "exchange",
        "account",
        "symbol",
        "side",
        "quantity",
        "entry_price",
        "status",
        "opened_at",
        "closed_at",
        "exit_reason",
        "updated_at",
    ]


async def test_active_rows_are_read_with_decimal_quantities(pool):
    repository = await migrated(pool, PositionsSettings())
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO positions (exchange, account, symbol, side, quantity, entry_price, status) VALUES"
            " ('binance', 'a', 'BTCUSDT', 'long', 1.5, 65000, 'active'),"
            " ('binance', 'a', 'ETHUSDT', 'SHORT', 0.30000000000000004, NULL, 'active'),"
            " ('binance', 'a', 'SOLUSDT', 'long', 3, NULL, 'closed'),"
            " ('bybit', 'b', 'BTCUSDT', 'long', 1, NULL, 'active')"
        )
    rows = await repository.active(["binance"])
    assert [(r.symbol, r.side, r.quantity) for r in rows] == [
        ("BTCUSDT", Side.LONG, Decimal("1.5")),
        ("ETHUSDT", Side.SHORT, Decimal("0.30000000000000004")),
    ]
    assert rows[0].entry_price == Decimal("65000")
    assert rows[0].id == "1"


async def test_a_trading_bots_own_schema_is_mapped(pool):
    async with pool.acquire() as conn:
        await conn.execute(
            """CREATE SCHEMA trading;
               CREATE TABLE trading."Trades" (
                   trade_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                   venue text, pair text, direction text, size double precision,
                   state text, closed timestamptz)"""
        )
        await conn.execute(
            """INSERT INTO trading."Trades" (venue, pair, direction, size, state) VALUES
               ('BYBIT', 'BTC/USDT:USDT', 'BUY', 0.25, 'OPEN'), ('BYBIT', 'ETHUSDT', 'SELL', 2, 'DONE')"""
        )
    settings = PositionsSettings.model_validate(
        {
            "table": "trading.Trades",
            "columns": {
                "id": "trade_uuid",
                "exchange": "venue",
                "account": None,
                "symbol": "pair",
                "side": "direction",
                "quantity": "size",
                "entry_price": None,
                "status": "state",
                "opened_at": None,
                "closed_at": "closed",
                "exit_reason": None,
                "updated_at": None,
            },
            "values": {"active": "OPEN", "closed": "DONE", "long": "buy", "short": "sell"},
        }
    )
    repository = PositionsRepository(pool, settings)
    await repository.inspect()
    [row] = await repository.active(["BYBIT"])
    assert (row.symbol, row.side, row.quantity, row.account) == ("BTC/USDT:USDT", Side.LONG, Decimal("0.25"), None)
    async with repository.change(pool) as change:
        closed = await repository.close_if_active(change, row.id, "ignored: no exit_reason column")
        assert closed is not None and closed.status == "DONE" and closed.closed_at is not None
        assert await repository.close_if_active(change, row.id, "again") is None
    assert await repository.get("not-a-uuid") is None


async def test_missing_table_and_columns_are_named(pool):
    with pytest.raises(
        DatabaseError, match=re.escape("positions table positions does not exist; run `python main.py migrate`")
    ):
        await PositionsRepository(pool, PositionsSettings()).inspect()
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE positions (id serial PRIMARY KEY, exchange text, symbol text)")
    with pytest.raises(DatabaseError) as caught:
        await PositionsRepository(pool, PositionsSettings()).inspect()
    assert str(caught.value).startswith(
        "positions table positions lacks configured columns: side (side), quantity (quantity), status (status)"
    ), "optional columns (account) are simply not mapped"


async def test_guarded_close_changes_a_row_once(pool):
    repository = await migrated(pool, PositionsSettings())
    async with pool.acquire() as conn:
        pid = await conn.fetchval(
            "INSERT INTO positions (exchange, symbol, side, quantity)"
            " VALUES ('binance', 'BTCUSDT', 'long', 1) RETURNING id"
        )
    async with repository.change(pool) as change:
        first = await repository.close_if_active(change, str(pid), "reason")
        second = await repository.close_if_active(change, str(pid), "other reason")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, exit_reason, closed_at FROM positions WHERE id = $1", pid)
    assert first is not None and first.exit_reason == "reason"
    assert second is None
    assert (row["status"], row["exit_reason"]) == ("closed", "reason")
    assert await repository.get("999") is None
    assert await repository.get("abc") is None
