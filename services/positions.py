"""The trading bot's positions table, read and written through the configured names only.

Every identifier comes from validated settings and is quoted; every value is a bind parameter. Values are read
as text and parsed row by row, so one row holding garbage spoils only its own account's check instead of the
whole query. Each write is one statement whose precondition sits in its WHERE clause, so a stale request
changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from services.database import DatabaseError
from services.model import Side
from services.settings import PositionsSettings, quote_identifier

log = logging.getLogger(__name__)

_SAFE_TYPE = re.compile(r"^[a-z][a-z0-9 _(),]*$")
REQUIRED_COLUMNS = ("id", "exchange", "symbol", "side", "quantity", "status")
TIMESTAMP_COLUMNS = ("opened_at", "updated_at", "closed_at")
_TZ_AWARE = "timestamp with time zone"
_NAIVE = ("timestamp without time zone", "date")


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A row as stored. ``problem`` names what makes it unreadable (NULL or non-numeric size, no symbol, a side
    value reconbot does not know); such a row makes its account unchecked rather than being guessed at."""

    id: str
    exchange: str | None
    account: str | None
    symbol: str | None
    side: Side | None
    quantity: Decimal | None
    entry_price: Decimal | None
    status: str | None
    opened_at: datetime | None
    updated_at: datetime | None
    closed_at: datetime | None
    exit_reason: str | None
    problem: str | None = None
    side_text: str | None = field(default=None, compare=False)
    quantity_text: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit trail."""
        return {
            "id": self.id,
            "exchange": self.exchange,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value if self.side else self.side_text,
            "quantity": None if self.quantity is None else str(self.quantity),
            "entry_price": None if self.entry_price is None else str(self.entry_price),
            "status": self.status,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "exit_reason": self.exit_reason,
        }


def _decimal(text: str | None) -> tuple[Decimal | None, str | None]:
    """A finite decimal from a column's text, or None and why not."""
    if text is None:
        return None, "is NULL"
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None, f"{text[:40]!r} is not a number"
    if not value.is_finite():
        return None, f"{text[:40]!r} is not a finite number"
    return value, None


def _moment(value: Any) -> tuple[datetime | None, str | None]:
    """A timestamp from a typed column (already aware) or from text (ISO 8601; naive means UTC)."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value, None
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None, f"{str(value)[:40]!r} is not a time"
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), None


class PositionsRepository:
    """Reads active positions and applies guarded changes to single rows."""

    def __init__(self, pool: asyncpg.Pool, settings: PositionsSettings):
        self._pool = pool
        self._settings = settings
        self._types: dict[str, str] = {}
        self._table = settings.qualified_table
        self._select = ""
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

    # -- the table's shape -----------------------------------------------------------------------------------

    async def inspect(self) -> None:
        """Check that the table and every configured column exist, and learn each column's type."""
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
        for key, name in configured.items():
            if name in unsafe and key in ("id", *TIMESTAMP_COLUMNS):
                raise DatabaseError(f"positions.columns.{key} ({name}) has an unsupported type {unsafe[name]!r}")
        self._types = {name: kind for name, kind in types.items() if name not in unsafe}
        self._select = self._select_list()

    def _type(self, column: str) -> str:
        """The column's SQL type as the catalog names it (checked to be a plain type name)."""
        if not self._types:
            raise DatabaseError("positions repository used before inspect()")
        return self._types.get(column, "text")

    def _select_list(self) -> str:
        """Every mapped column as text, timestamps as aware timestamps, so parsing happens row by row."""
        c = self._settings.columns
        q = quote_identifier

        def text(column: str | None) -> str:
            return f"{q(column)}::text" if column else "NULL::text"

        def moment(column: str | None) -> str:
            if not column:
                return "NULL::timestamptz"
            kind = self._type(column)
            if kind == _TZ_AWARE:
                return q(column)
            if kind in _NAIVE:
                return f"({q(column)}::timestamp AT TIME ZONE 'UTC')"
            return f"{q(column)}::text"

        return ", ".join(
            [
                f"{text(c.id)} AS id",
                f"{text(c.exchange)} AS exchange",
                f"{text(c.account)} AS account",
                f"{text(c.symbol)} AS symbol",
                f"{text(c.side)} AS side",
                f"{text(c.quantity)} AS quantity",
                f"{text(c.entry_price)} AS entry_price",
                f"{text(c.status)} AS status",
                f"{moment(c.opened_at)} AS opened_at",
                f"{moment(c.updated_at)} AS updated_at",
                f"{moment(c.closed_at)} AS closed_at",
                f"{text(c.exit_reason)} AS exit_reason",
            ]
        )

    def _cast(self, placeholder: str, column: str) -> str:
        """A bind parameter sent as text and cast to the column's own type, so any schema's types take it."""
        return f"CAST({placeholder}::text AS {self._type(column)})"

    def _id_param(self) -> str:
        return self._cast("$1", self._settings.columns.id)

    # -- reading -----------------------------------------------------------------------------------------------

    def _row(self, record: asyncpg.Record) -> PositionRow:
        problems: list[str] = []
        quantity, why = _decimal(record["quantity"])
        if why:
            problems.append(f"quantity {why}")
        symbol = record["symbol"]
        if symbol is None or not symbol.strip():
            problems.append("symbol is empty" if symbol is not None else "symbol is NULL")
            symbol = None
        side_text = record["side"]
        side = self._sides.get((side_text or "").strip().casefold())
        if side is None:
            v = self._settings.values
            problems.append(f"side {side_text!r} is neither {v.long!r} nor {v.short!r} (see positions.values)")
        entry_price, _ = _decimal(record["entry_price"])
        moments: dict[str, datetime | None] = {}
        for key in TIMESTAMP_COLUMNS:
            moments[key], why = _moment(record[key])
            if why:
                problems.append(f"{key} {why}")
        return PositionRow(
            id=record["id"],
            exchange=record["exchange"],
            account=record["account"],
            symbol=symbol,
            side=side,
            quantity=abs(quantity) if quantity is not None else None,
            entry_price=entry_price,
            status=record["status"],
            opened_at=moments["opened_at"],
            updated_at=moments["updated_at"],
            closed_at=moments["closed_at"],
            exit_reason=record["exit_reason"],
            problem="; ".join(problems) or None,
            side_text=side_text,
            quantity_text=record["quantity"],
        )

    async def active(self, db_exchanges: Collection[str]) -> list[PositionRow]:
        """Every active row of the given exchanges, in id order."""
        c = self._settings.columns
        q = quote_identifier
        sql = (
            f"SELECT {self._select} FROM {self._table} "
            f"WHERE {q(c.status)} = {self._cast('$1', c.status)} AND {q(c.exchange)}::text = ANY($2::text[]) "
            f"ORDER BY {q(c.id)}"
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

    # -- guarded writes ----------------------------------------------------------------------------------------

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
        """Adopt a position: insert an active row unless one already tracks (exchange, account, symbol, side)."""
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
        expressions = [self._cast(f"${i}", col) for i, col in enumerate(columns, start=1)]
        for stamp in (c.opened_at, c.updated_at):
            if stamp:
                columns.append(stamp)
                expressions.append(self._now(stamp))
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

    def _now(self, column: str) -> str:
        """The current time in the column's own kind: naive columns hold UTC."""
        kind = self._type(column)
        if kind in _NAIVE:
            return f"CAST(now() AT TIME ZONE 'UTC' AS {kind})"
        if kind == _TZ_AWARE:
            return "now()"
        return f"CAST(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') AS {kind})"

    async def set_quantity_if(
        self, conn: asyncpg.Connection, row: PositionRow, quantity: Decimal
    ) -> PositionRow | None:
        """Set a row's size only if it is still active and still holds exactly the size the operator saw.

        The new size keeps the sign convention of the stored one (some bots store shorts as negative sizes)."""
        c = self._settings.columns
        q = quote_identifier
        signed = -quantity if (row.quantity_text or "").strip().startswith("-") else quantity
        assignments = [f"{q(c.quantity)} = {self._cast('$2', c.quantity)}"]
        if c.updated_at:
            assignments.append(f"{q(c.updated_at)} = {self._now(c.updated_at)}")
        sql = (
            f"UPDATE {self._table} SET {', '.join(assignments)} "
            f"WHERE {q(c.id)} = {self._id_param()} AND {q(c.status)} = {self._cast('$3', c.status)} "
            f"AND {q(c.quantity)} = {self._cast('$4', c.quantity)} "
            f"RETURNING {self._select}"
        )
        record = await conn.fetchrow(sql, row.id, str(signed), self._settings.values.active, row.quantity_text)
        return self._row(record) if record else None

    async def close_if_active(
        self, conn: asyncpg.Connection, position_id: str, exit_reason: str, expected: PositionRow | None = None
    ) -> PositionRow | None:
        """Mark one row closed only if it is still active (and, when ``expected`` is given, still holds the size
        the operator saw); None when it was not (closed meanwhile, resized, unknown)."""
        c = self._settings.columns
        q = quote_identifier
        args: list[Any] = [position_id, self._settings.values.closed, self._settings.values.active]
        assignments = [f"{q(c.status)} = {self._cast('$2', c.status)}"]
        if c.closed_at:
            assignments.append(f"{q(c.closed_at)} = {self._now(c.closed_at)}")
        if c.exit_reason:
            args.append(exit_reason)
            assignments.append(f"{q(c.exit_reason)} = {self._cast(f'${len(args)}', c.exit_reason)}")
        if c.updated_at:
            assignments.append(f"{q(c.updated_at)} = {self._now(c.updated_at)}")
        guard = ""
        if expected is not None:
            args.append(expected.quantity_text)
            guard = f" AND {q(c.quantity)} = {self._cast(f'${len(args)}', c.quantity)}"
        sql = (
            f"UPDATE {self._table} SET {', '.join(assignments)} "
            f"WHERE {q(c.id)} = {self._id_param()} AND {q(c.status)} = {self._cast('$3', c.status)}{guard} "
            f"RETURNING {self._select}"
        )
        record = await conn.fetchrow(sql, *args)
        return self._row(record) if record else None
