"""The trading bot's table in PostgreSQL: reconbot's own database, or another one named by ``positions.url``.

Values are read as text and parsed row by row; configured values are bound as text and cast to each column's
own type, so text, enum and boolean columns all compare correctly. Each write is one statement whose
precondition sits in its WHERE clause, so a stale request changes nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Collection
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.database import DatabaseError, TableMissing
from services.model import Side
from services.positions.rows import PositionRow
from services.positions.store import TIMESTAMP_KEYS, Change, Column, PositionsStore
from services.positions_config import PositionsSettings, quote_identifier, value_text

_SAFE_TYPE = re.compile(r"^[a-z][a-z0-9 _(),]*$")
_TZ_AWARE = "timestamp with time zone"
_NAIVE = ("timestamp without time zone", "date")
_NUMBERS = ("numeric", "double precision", "real", "integer", "bigint", "smallint")
_TEXT_KEYS = ("id", "exchange", "account", "symbol", "side", "quantity", "entry_price", "status", "exit_reason")


def _kind(type_name: str, typtype: str) -> str:
    if typtype == "e":
        return "enum"
    if type_name == "boolean":
        return "boolean"
    if type_name == _TZ_AWARE:
        return "timestamptz"
    if type_name in _NAIVE:
        return "timestamp"
    if type_name.startswith(_NUMBERS):
        return "number"
    return "text" if type_name.startswith(("text", "character")) else "other"


class PostgresPositions(PositionsStore):
    """Reads active positions and applies guarded changes to single rows, in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, settings: PositionsSettings, *, own_pool: bool = False):
        super().__init__(settings)
        self._pool = pool
        self._own_pool = own_pool
        self._table = settings.qualified_table
        self._select = ""

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def inspect(self) -> None:
        """Check that the table and every configured column exist, and learn each column's type."""
        async with self._pool.acquire() as conn:
            oid = await conn.fetchval("SELECT to_regclass($1)::oid", self._table)
            if oid is None:
                raise TableMissing(
                    f"positions table {self._settings.table} does not exist; run `python main.py migrate` "
                    "to create it, or set positions.table to the trading bot's table"
                )
            rows = await conn.fetch(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, t.typtype::text AS typtype, "
                "ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = a.atttypid ORDER BY e.enumsortorder) "
                "AS labels FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
                oid,
            )
        found: dict[str, Column] = {}
        for row in rows:
            name, kind = row["attname"], row["type"]
            if not _SAFE_TYPE.match(kind) and row["typtype"] != "e":
                kind = "unsupported"
            found[name] = Column(name, kind, _kind(kind, row["typtype"]), tuple(row["labels"]))
        self._apply_columns(found)
        for key in ("id", *TIMESTAMP_KEYS):
            column = self.map.columns.get(key)
            if column is not None and column.type == "unsupported":
                raise DatabaseError(f"positions.columns.{key} ({column.name}) has a type reconbot cannot read")
        self._select = self._select_list()

    def _type(self, column: Column) -> str:
        """A type name safe to put in a CAST: the catalog's name, quoted when it is an enum's."""
        if column.kind == "enum":
            return ".".join(quote_identifier(part) for part in column.type.replace('"', "").split("."))
        return column.type

    def _select_list(self) -> str:
        """Every mapped column as text, timestamps as aware timestamps, so parsing happens row by row."""
        q = quote_identifier
        zone = self._settings.timezone.replace("'", "")
        parts = []
        for key in (*_TEXT_KEYS, "stop_loss", "has_stop_loss"):
            column = self.map.columns.get(key)
            parts.append(f"{q(column.name)}::text AS {key}" if column else f"NULL::text AS {key}")
        for key in TIMESTAMP_KEYS:
            column = self.map.columns.get(key)
            if column is None:
                parts.append(f"NULL::timestamptz AS {key}")
            elif column.kind == "timestamptz":
                parts.append(f"{q(column.name)} AS {key}")
            elif column.kind == "timestamp":
                parts.append(f"({q(column.name)}::timestamp AT TIME ZONE '{zone}') AS {key}")
            else:
                parts.append(f"{q(column.name)}::text AS {key}")
        return ", ".join(parts)

    def _cast(self, placeholder: str, key_or_column: str | Column) -> str:
        """A bind parameter sent as text and cast to the column's own type."""
        column = key_or_column if isinstance(key_or_column, Column) else self.map.columns[key_or_column]
        return f"CAST({placeholder}::text AS {self._type(column)})"

    def _where_active(self, first: int) -> tuple[str, list[str]]:
        """The active-status condition and the configured filters, with their values as text."""
        q = quote_identifier
        conditions = [f"{q(self.map.columns['status'].name)} = {self._cast(f'${first}', 'status')}"]
        values = [value_text(self._settings.values.active)]
        for name, value in self._settings.filters.items():
            values.append(value_text(value))
            conditions.append(f"{q(name)} = {self._cast(f'${first + len(values) - 1}', self.map.all_columns[name])}")
        return " AND ".join(conditions), values

    # -- reading ------------------------------------------------------------------------------------------------

    async def active(
        self, db_exchanges: Collection[str], db_accounts: Collection[str] | None = None
    ) -> list[PositionRow]:
        q = quote_identifier
        condition, values = self._where_active(2)
        accounts = ""
        if db_accounts is not None and self.has_account_column:
            column = q(self.map.columns["account"].name)
            number = len(values) + 2
            accounts = f"AND ({column}::text = ANY(${number}::text[]) OR {column} IS NULL OR {column}::text = '') "
            values = [*values, list(db_accounts)]
        sql = (
            f"SELECT {self._select} FROM {self._table} "
            f"WHERE {q(self.map.columns['exchange'].name)}::text = ANY($1::text[]) AND {condition} {accounts}"
            f"ORDER BY {q(self.map.columns['id'].name)}"
        )
        async with self._pool.acquire() as conn:
            records = await conn.fetch(sql, list(db_exchanges), *values)
        return [self.build_row(record) for record in records]

    async def get(self, position_id: str, conn: asyncpg.Connection | None = None) -> PositionRow | None:
        sql = f"SELECT {self._select} FROM {self._table} WHERE {self._id_is('$1')}"
        try:
            if conn is not None:
                record = await conn.fetchrow(sql, position_id)
            else:
                async with self._pool.acquire() as own:
                    record = await own.fetchrow(sql, position_id)
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
            return None
        return self.build_row(record) if record else None

    def _id_is(self, placeholder: str) -> str:
        return f"{quote_identifier(self.map.columns['id'].name)} = {self._cast(placeholder, 'id')}"

    # -- guarded writes -----------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _change(self, audit_pool: asyncpg.Pool) -> AsyncIterator[Change]:
        if audit_pool is self._pool:
            async with self._pool.acquire() as conn, conn.transaction():
                yield Change(conn, conn)
            return
        # Another database: the write commits first, then its audit row.
        async with audit_pool.acquire() as audit, audit.transaction(), self._pool.acquire() as conn, conn.transaction():
            yield Change(audit, conn)

    def _now(self, key: str) -> str:
        """The current time in the column's own kind: naive columns hold the configured zone's wall time."""
        column = self.map.columns[key]
        if column.kind == "timestamp":
            zone = self._settings.timezone.replace("'", "")
            return f"CAST(now() AT TIME ZONE '{zone}' AS {column.type})"
        if column.kind == "timestamptz":
            return "now()"
        return f"CAST(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') AS {column.type})"

    def _moment(self, key: str, placeholder: str) -> str:
        column = self.map.columns[key]
        if column.kind == "timestamp":
            zone = self._settings.timezone.replace("'", "")
            return f"CAST({placeholder}::text::timestamptz AT TIME ZONE '{zone}' AS {column.type})"
        return self._cast(placeholder, column)

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
        q = quote_identifier
        v = self._settings.values
        values: dict[str, str | None] = {
            "exchange": exchange,
            "symbol": symbol,
            "side": value_text(v.long if side is Side.LONG else v.short),
            "status": value_text(v.active),
            "quantity": str(quantity),
        }
        if "account" in self.map:
            values["account"] = account
        if "entry_price" in self.map:
            values["entry_price"] = None if entry_price is None else str(entry_price)
        columns = [self.map.columns[key].name for key in values]
        expressions = [self._cast(f"${i}", key) for i, key in enumerate(values, start=1)]
        for key in ("opened_at", "updated_at"):
            if key in self.map:
                columns.append(self.map.columns[key].name)
                expressions.append(self._now(key))
        c = self.map.columns
        # $1..$4 are exchange, symbol, side and status, in that order; $6 is the account when there is one.
        same_key = [
            f"{q(c['exchange'].name)}::text = $1",
            f"{q(c['symbol'].name)}::text = $2",
            f"{q(c['side'].name)} = {self._cast('$3', 'side')}",
            f"{q(c['status'].name)} = {self._cast('$4', 'status')}",
        ]
        if "account" in self.map:
            same_key.append(f"{q(c['account'].name)}::text IS NOT DISTINCT FROM $6")
        sql = (
            f"INSERT INTO {self._table} ({', '.join(q(col) for col in columns)}) "
            f"SELECT {', '.join(expressions)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self._table} WHERE {' AND '.join(same_key)}) "
            f"RETURNING {self._select}"
        )
        record = await change.handle.fetchrow(sql, *values.values())
        return self.build_row(record) if record else None

    async def set_quantity_if(self, change: Change, row: PositionRow, quantity: Decimal) -> PositionRow | None:
        q = quote_identifier
        c = self.map.columns
        signed = -quantity if str(row.quantity_raw or "").strip().startswith("-") else quantity
        assignments = [f"{q(c['quantity'].name)} = {self._cast('$2', 'quantity')}"]
        if "updated_at" in self.map:
            assignments.append(f"{q(c['updated_at'].name)} = {self._now('updated_at')}")
        sql = (
            f"UPDATE {self._table} SET {', '.join(assignments)} "
            f"WHERE {self._id_is('$1')} AND {q(c['status'].name)} = {self._cast('$3', 'status')} "
            f"AND {q(c['quantity'].name)} = {self._cast('$4', 'quantity')} "
            f"RETURNING {self._select}"
        )
        active = value_text(self._settings.values.active)
        record = await change.handle.fetchrow(sql, row.id, str(signed), active, row.quantity_raw)
        return self.build_row(record) if record else None

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
        args: list[Any] = [position_id, value_text(v.closed), value_text(v.active)]

        def bind(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        assignments = [f"{q(c['status'].name)} = {self._cast('$2', 'status')}"]
        if "closed_at" in self.map:
            stamp = self._moment("closed_at", bind(closed_at.isoformat())) if closed_at else self._now("closed_at")
            assignments.append(f"{q(c['closed_at'].name)} = {stamp}")
        if "exit_reason" in self.map:
            assignments.append(f"{q(c['exit_reason'].name)} = {self._cast(bind(exit_reason), 'exit_reason')}")
        for key, value in (("exit_price", exit_price), ("realized_pnl", realized_pnl)):
            if key in self.map and value is not None:
                assignments.append(f"{q(c[key].name)} = {self._cast(bind(str(value)), key)}")
        if "updated_at" in self.map:
            assignments.append(f"{q(c['updated_at'].name)} = {self._now('updated_at')}")
        guard = ""
        if expected is not None:
            guard = f" AND {q(c['quantity'].name)} = {self._cast(bind(expected.quantity_raw), 'quantity')}"
        sql = (
            f"UPDATE {self._table} SET {', '.join(assignments)} "
            f"WHERE {self._id_is('$1')} AND {q(c['status'].name)} = {self._cast('$3', 'status')}{guard} "
            f"RETURNING {self._select}"
        )
        record = await change.handle.fetchrow(sql, *args)
        return self.build_row(record) if record else None

    async def close(self) -> None:
        if self._own_pool:
            await self._pool.close()
