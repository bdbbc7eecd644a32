"""The trading bot's positions table, read and written through the configured names only.

Every identifier comes from validated settings and is quoted; every value is a bind parameter. Each write is
one statement whose precondition sits in its WHERE clause, so a stale request changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.database import DatabaseError
from services.model import Side
from services.settings import PositionsSettings, quote_identifier

log = logging.getLogger(__name__)

_SAFE_TYPE = re.compile(r"^[a-z][a-z0-9 _(),]*$")
_REQUIRED = ("id", "exchange", "symbol", "side", "quantity", "status")


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A row as stored; ``side`` is None when the column holds a value reconbot does not know."""

    id: str
    exchange: str
    account: str | None
    symbol: str
    side: Side | None
    quantity: Decimal
    entry_price: Decimal | None
    status: str
    opened_at: datetime | None
    updated_at: datetime | None
    closed_at: datetime | None
    exit_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit trail."""
        return {
            "id": self.id,
            "exchange": self.exchange,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value if self.side else None,
            "quantity": str(self.quantity),
            "entry_price": None if self.entry_price is None else str(self.entry_price),
            "status": self.status,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "exit_reason": self.exit_reason,
        }


class PositionsRepository:
    """Reads active positions and applies guarded changes to single rows."""

    def __init__(self, pool: asyncpg.Pool, settings: PositionsSettings):
        self._pool = pool
        self._settings = settings
        self._types: dict[str, str] = {}
        c = settings.columns
        q = quote_identifier

        def optional(column: str | None, cast: str) -> str:
            return f"{q(column)}::{cast}" if column else f"NULL::{cast}"

        self._table = settings.qualified_table
        self._select = ", ".join(
            [
                f"{q(c.id)}::text AS id",
                f"{q(c.exchange)}::text AS exchange",
                f"{optional(c.account, 'text')} AS account",
                f"{q(c.symbol)}::text AS symbol",
                f"{q(c.side)}::text AS side",
                f"{q(c.quantity)}::numeric AS quantity",
                f"{optional(c.entry_price, 'numeric')} AS entry_price",
                f"{q(c.status)}::text AS status",
                f"{optional(c.opened_at, 'timestamptz')} AS opened_at",
                f"{optional(c.updated_at, 'timestamptz')} AS updated_at",
                f"{optional(c.closed_at, 'timestamptz')} AS closed_at",
                f"{optional(c.exit_reason, 'text')} AS exit_reason",
            ]
        )
        self._sides = {
            settings.values.long.casefold(): Side.LONG,
            settings.values.short.casefold(): Side.SHORT,
        }

    @property
    def settings(self) -> PositionsSettings:
        return self._settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def inspect(self) -> None:
        """Check that the table and every configured column exist; remember the id column's type."""
        c = self._settings.columns
        async with self._pool.acquire() as conn:
            oid = await conn.fetchval("SELECT to_regclass($1)::oid", self._table)
            if oid is None:
                raise DatabaseError(
                    f"positions table {self._settings.table} does not exist; run `python main.py migrate` "
                    "to create it, or set positions.table to the trading bot's table"
                )
            rows = await conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
                "WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                oid,
            )
        types = {row["attname"]: row["type"] for row in rows}
        configured = {key: value for key, value in c.model_dump().items() if value is not None}
        missing = [f"{key} ({name})" for key, name in configured.items() if name not in types]
        if missing:
            raise DatabaseError(
                f"positions table {self._settings.table} lacks configured columns: {', '.join(missing)}; "
                "map them under positions.columns (optional ones may be null)"
            )
        unsafe = {name: kind for name, kind in types.items() if not _SAFE_TYPE.match(kind)}
        if c.id in unsafe:
            raise DatabaseError(f"positions.{c.id} has an unsupported type {unsafe[c.id]!r}")
        self._types = {name: kind for name, kind in types.items() if name not in unsafe}

    def _type(self, column: str) -> str:
        """The column's SQL type as the catalog names it (checked to be a plain type name)."""
        if not self._types:
            raise DatabaseError("positions repository used before inspect()")
        return self._types[column]

    def _id_param(self) -> str:
        return f"CAST($1::text AS {self._type(self._settings.columns.id)})"

    def _row(self, record: asyncpg.Record) -> PositionRow:
        side_text = (record["side"] or "").strip().casefold()
        return PositionRow(
            id=record["id"],
            exchange=record["exchange"],
            account=record["account"],
            symbol=record["symbol"],
            side=self._sides.get(side_text),
            quantity=abs(record["quantity"]),
            entry_price=record["entry_price"],
            status=record["status"],
            opened_at=record["opened_at"],
            updated_at=record["updated_at"],
            closed_at=record["closed_at"],
            exit_reason=record["exit_reason"],
        )

    async def active(self, db_exchanges: Collection[str]) -> list[PositionRow]:
        """Every active row of the given exchanges, in id order."""
        c = self._settings.columns
        sql = (
            f"SELECT {self._select} FROM {self._table} "
            f"WHERE {quote_identifier(c.status)} = $1 AND {quote_identifier(c.exchange)} = ANY($2::text[]) "
            f"ORDER BY {quote_identifier(c.id)}"
        )
        async with self._pool.acquire() as conn:
            records = await conn.fetch(sql, self._settings.values.active, list(db_exchanges))
        return [self._row(record) for record in records]

    async def get(self, position_id: str, conn: asyncpg.Connection | None = None) -> PositionRow | None:
        """One row by id, whatever its status; None when no such row or the id is not of the column's type."""
        sql = f"SELECT {self._select} FROM {self._table} WHERE {quote_identifier(self._settings.columns.id)} = "
        sql += self._id_param()
        try:
            if conn is not None:
                record = await conn.fetchrow(sql, position_id)
            else:
                async with self._pool.acquire() as own:
                    record = await own.fetchrow(sql, position_id)
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
            return None
        return self._row(record) if record else None

    async def insert_if_untracked(
        self,
        conn: asyncpg.Connection,
        *,
        exchange: str,
        account: str | None,
        symbol: str,
        side: Side,
        quantity: Decimal,
        entry_price: Decimal | None,
    ) -> PositionRow | None:
        """Adopt a position: insert an active row unless one already tracks (exchange, account, symbol, side).

        Values travel as text and are cast to each column's own type, so any schema's numeric or float
        columns take them.
        """
        c = self._settings.columns
        v = self._settings.values
        q = quote_identifier
        values: dict[str, str | None] = {
            c.exchange: exchange,
            c.symbol: symbol,
            c.side: v.long if side is Side.LONG else v.short,
            c.status: v.active,
            c.quantity: str(quantity),
        }
        if c.account:
            values[c.account] = account
        if c.entry_price:
            values[c.entry_price] = None if entry_price is None else str(entry_price)
        columns = list(values)
        expressions = [f"CAST(${i}::text AS {self._type(col)})" for i, col in enumerate(columns, start=1)]
        for stamp in (c.opened_at, c.updated_at):
            if stamp:
                columns.append(stamp)
                expressions.append("now()")
        # $1..$4 are exchange, symbol, side and status, in that order; $6 is the account when there is one.
        same_key = [
            f"{q(c.exchange)}::text = $1",
            f"{q(c.symbol)}::text = $2",
            f"lower({q(c.side)}::text) = lower($3)",
            f"{q(c.status)}::text = $4",
        ]
        if c.account:
            same_key.append(f"{q(c.account)}::text IS NOT DISTINCT FROM $6")
        sql = (
            f"INSERT INTO {self._table} ({', '.join(q(col) for col in columns)}) "
            f"SELECT {', '.join(expressions)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self._table} WHERE {' AND '.join(same_key)}) "
            f"RETURNING {self._select}"
        )
        record = await conn.fetchrow(sql, *values.values())
        return self._row(record) if record else None

    async def set_quantity_if(
        self, conn: asyncpg.Connection, position_id: str, expected: Decimal, quantity: Decimal
    ) -> PositionRow | None:
        """Set a row's size only if it is still active and still holds the size the operator saw."""
        c = self._settings.columns
        q = quote_identifier
        quantity_type = self._type(c.quantity)
        assignments = [f"{q(c.quantity)} = CAST($2::text AS {quantity_type})"]
        if c.updated_at:
            assignments.append(f"{q(c.updated_at)} = now()")
        sql = (
            f"UPDATE {self._table} SET {', '.join(assignments)} "
            f"WHERE {q(c.id)} = {self._id_param()} AND {q(c.status)} = $3 "
            f"AND {q(c.quantity)} = CAST($4::text AS {quantity_type}) "
            f"RETURNING {self._select}"
        )
        record = await conn.fetchrow(sql, position_id, str(quantity), self._settings.values.active, str(expected))
        return self._row(record) if record else None

    async def close_if_active(self, conn: asyncpg.Connection, position_id: str, exit_reason: str) -> PositionRow | None:
        """Mark one row closed only if it is still active; None when it was not (closed meanwhile, unknown)."""
        c = self._settings.columns
        q = quote_identifier
        assignments = [f"{q(c.status)} = $2"]
        if c.closed_at:
            assignments.append(f"{q(c.closed_at)} = now()")
        if c.exit_reason:
            assignments.append(f"{q(c.exit_reason)} = $4")
        if c.updated_at:
            assignments.append(f"{q(c.updated_at)} = now()")
        sql = (
            f"UPDATE {self._table} SET {', '.join(assignments)} "
            f"WHERE {q(c.id)} = {self._id_param()} AND {q(c.status)} = $3 RETURNING {self._select}"
        )
        args: list[Any] = [position_id, self._settings.values.closed, self._settings.values.active]
        if c.exit_reason:
            args.append(exit_reason)
        record = await conn.fetchrow(sql, *args)
        return self._row(record) if record else None
