"""The trading bot's table in a SQLite file (``positions.url: sqlite:///tradesv3.sqlite``), as freqtrade keeps it.

SQLite holds values as they were written (freqtrade: booleans as 0/1, dates as naive UTC text), so rows are read
raw and parsed one by one, and configured values are bound in the column's own form. The file is opened
read-only unless the table may be written. reconbot's own state stays in PostgreSQL; a write here commits before
its audit row there.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from services.database import DatabaseError, DatabaseUnreachable, TableMissing
from services.model import Side
from services.positions.rows import PositionRow
from services.positions.store import TIMESTAMP_KEYS, Change, Column, PositionsStore
from services.positions_config import PositionsSettings, Value, quote_identifier, value_text

# How long a statement waits for the trading bot's lock (freqtrade holds the file only while it writes).
BUSY_TIMEOUT_S = 10.0
_KEYS = ("id", "exchange", "account", "symbol", "side", "quantity", "entry_price", "status", "exit_reason")


def _kind(declared: str) -> str:
    """SQLite's type affinity, read from the declared type as SQLite itself does."""
    upper = declared.upper()
    if "BOOL" in upper:
        return "boolean"
    if any(word in upper for word in ("INT", "REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "number"
    if "DATE" in upper or "TIME" in upper:
        return "timestamp"
    return "text"


class SqlitePositions(PositionsStore):
    def __init__(self, settings: PositionsSettings, path: Path):
        super().__init__(settings)
        if "." in settings.table:
            raise DatabaseError(f"positions.table {settings.table!r}: a SQLite table has no schema")
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._table = quote_identifier(settings.table)
        self._select = ""

    async def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            if not self.path.exists():
                raise DatabaseError(f"positions.url: no SQLite file at {self.path}")
            mode = "rw" if self.writable else "ro"
            try:
                self._conn = await aiosqlite.connect(f"file:{self.path}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_S)
            except Exception as exc:  # aiosqlite raises sqlite3's errors, which share no base with ours
                raise self._failure("cannot open", exc) from None
        return self._conn

    def _failure(self, doing: str, exc: Exception) -> DatabaseError:
        """A lock the trading bot still held after the busy timeout passes by itself (``DatabaseUnreachable``:
        start-up waits for it); anything else is the file's or the config's fault."""
        code = getattr(exc, "sqlite_errorcode", None)  # the primary code is the low byte of an extended one
        locked = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        return (DatabaseUnreachable if locked else DatabaseError)(f"positions.url: {doing} {self.path}: {exc}")

    async def inspect(self) -> None:
        conn = await self._connection()
        try:
            async with conn.execute(f"PRAGMA table_info({self._table})") as cursor:
                rows = await cursor.fetchall()
        except Exception as exc:
            raise self._failure("cannot read", exc) from None
        if not rows:
            raise TableMissing(f"positions table {self._settings.table} does not exist in {self.path}")
        self._apply_columns({row[1]: Column(row[1], (row[2] or "").lower(), _kind(row[2] or "")) for row in rows})
        q = quote_identifier
        parts = []
        for key in (*_KEYS, *TIMESTAMP_KEYS, "stop_loss", "has_stop_loss"):
            column = self.map.columns.get(key)
            parts.append(f"{q(column.name)} AS {key}" if column else f"NULL AS {key}")
        self._select = ", ".join(parts)

    def _bind(self, column: Column, value: Value) -> Any:
        """A configured value in the form the column stores: booleans as 0/1, numbers as numbers."""
        if column.kind == "boolean":
            return 1 if value_text(value).lower() in ("true", "t", "1") else 0
        if column.kind == "number" and not isinstance(value, bool):
            return value if isinstance(value, int) else float(str(value))
        return value_text(value)

    def build_row(self, raw: Any) -> PositionRow:
        values = dict(raw)
        for key in ("side", "status", "has_stop_loss"):
            column = self.map.columns.get(key)
            if column is not None and column.kind == "boolean" and isinstance(values.get(key), int):
                values[key] = bool(values[key])
        return super().build_row(values)

    def _where_active(self) -> tuple[str, list[Any]]:
        q = quote_identifier
        status = self.map.columns["status"]
        conditions = [f"{q(status.name)} = ?"]
        values: list[Any] = [self._bind(status, self._settings.values.active)]
        for name, value in self._settings.filters.items():
            conditions.append(f"{q(name)} = ?")
            values.append(self._bind(self.map.all_columns[name], value))
        return " AND ".join(conditions), values

    async def active(
        self, db_exchanges: Collection[str], db_accounts: Collection[str] | None = None
    ) -> list[PositionRow]:
        exchanges = list(db_exchanges)
        if not exchanges:
            return []
        q = quote_identifier
        condition, values = self._where_active()
        marks = ", ".join("?" for _ in exchanges)
        accounts = ""
        if db_accounts is not None and self.has_account_column:
            column = q(self.map.columns["account"].name)
            names = list(db_accounts)
            listed = f"{column} IN ({', '.join('?' for _ in names)}) OR " if names else ""
            accounts = f"AND ({listed}{column} IS NULL OR {column} = '') "
            values = [*values, *names]
        sql = (
            f"SELECT {self._select} FROM {self._table} WHERE {q(self.map.columns['exchange'].name)} IN ({marks}) "
            f"AND {condition} {accounts}ORDER BY {q(self.map.columns['id'].name)}"
        )
        conn = await self._connection()
        conn.row_factory = aiosqlite.Row
        async with conn.execute(sql, [*exchanges, *values]) as cursor:
            return [self.build_row(row) for row in await cursor.fetchall()]

    async def get(self, position_id: str) -> PositionRow | None:
        conn = await self._connection()
        conn.row_factory = aiosqlite.Row
        sql = f"SELECT {self._select} FROM {self._table} WHERE {quote_identifier(self.map.columns['id'].name)} = ?"
        key: Any = int(position_id) if position_id.isdigit() else position_id
        async with conn.execute(sql, [key]) as cursor:
            row = await cursor.fetchone()
        return self.build_row(row) if row else None

    # -- writes, only when positions.writable allows them -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _change(self, audit_pool: asyncpg.Pool) -> AsyncIterator[Change]:
        conn = await self._connection()
        async with audit_pool.acquire() as audit, audit.transaction():
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield Change(audit, conn)
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    async def _returning(
        self, conn: aiosqlite.Connection, sql: str, params: list[Any], row_id: Any
    ) -> PositionRow | None:
        cursor = await conn.execute(sql, params)
        if cursor.rowcount != 1:
            return None
        conn.row_factory = aiosqlite.Row
        where = f"{quote_identifier(self.map.columns['id'].name)} = ?"
        async with conn.execute(f"SELECT {self._select} FROM {self._table} WHERE {where}", [row_id]) as read:
            row = await read.fetchone()
        return self.build_row(row) if row else None

    def _now_text(self) -> str:
        return datetime.now(UTC).astimezone(self.zone).replace(tzinfo=None).isoformat(sep=" ")

    async def insert_if_untracked(
        self,
        change: Change,
        *,
        exchange: str,
        account: str | None,
        symbol: str,
        side: Side,
        quantity: Decimal,
        entry_price: Decimal | None,
    ) -> PositionRow | None:
        raise DatabaseError("adopting into a SQLite table is not supported; add the trade in the trading bot")

    async def set_quantity_if(self, change: Change, row: PositionRow, quantity: Decimal) -> PositionRow | None:
        q = quote_identifier
        c = self.map.columns
        signed = -quantity if str(row.quantity_raw or "").startswith("-") else quantity
        new = float(signed) if c["quantity"].kind == "number" else str(signed)
        sql = (
            f"UPDATE {self._table} SET {q(c['quantity'].name)} = ? WHERE {q(c['id'].name)} = ? "
            f"AND {q(c['status'].name)} = ? AND {q(c['quantity'].name)} = ?"
        )
        active = self._bind(c["status"], self._settings.values.active)
        params = [new, _key(row.id), active, row.quantity_raw]
        return await self._returning(change.handle, sql, params, _key(row.id))

    async def close_if_active(
        self,
        change: Change,
        position_id: str,
        exit_reason: str,
        expected: PositionRow | None = None,
        *,
        closed_at: datetime | None = None,
        exit_price: Decimal | None = None,
        realized_pnl: Decimal | None = None,
    ) -> PositionRow | None:
        q = quote_identifier
        c = self.map.columns
        v = self._settings.values
        assignments = [f"{q(c['status'].name)} = ?"]
        params: list[Any] = [self._bind(c["status"], v.closed)]
        if "closed_at" in self.map:
            stamp = closed_at.astimezone(self.zone).replace(tzinfo=None).isoformat(sep=" ") if closed_at else None
            assignments.append(f"{q(c['closed_at'].name)} = ?")
            params.append(stamp or self._now_text())
        if "exit_reason" in self.map:
            assignments.append(f"{q(c['exit_reason'].name)} = ?")
            params.append(exit_reason)
        for key, value in (("exit_price", exit_price), ("realized_pnl", realized_pnl)):
            if key in self.map and value is not None:
                assignments.append(f"{q(c[key].name)} = ?")
                params.append(float(value) if c[key].kind == "number" else str(value))
        where = f"{q(c['id'].name)} = ? AND {q(c['status'].name)} = ?"
        params += [_key(position_id), self._bind(c["status"], v.active)]
        if expected is not None:
            where += f" AND {q(c['quantity'].name)} = ?"
            params.append(expected.quantity_raw)
        sql = f"UPDATE {self._table} SET {', '.join(assignments)} WHERE {where}"
        return await self._returning(change.handle, sql, params, _key(position_id))

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


def _key(position_id: str) -> Any:
    return int(position_id) if position_id.isdigit() else position_id
