"""What every positions backend shares: the column mapping learnt from the table itself, values compared in
each column's own type (text, enum or boolean), and rows parsed one by one."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from services.database import DatabaseError
from services.model import Side
from services.positions.rows import PositionRow, parse_decimal, parse_flag, parse_moment
from services.positions_config import REQUIRED, PositionsSettings, Value, value_text

TIMESTAMP_KEYS = ("opened_at", "updated_at", "closed_at")
_BOOLEAN_TEXTS = {"true": True, "t": True, "false": False, "f": False}


@dataclass(frozen=True, slots=True)
class Column:
    """A mapped column and what kind of values it holds."""

    name: str
    type: str
    kind: str  # boolean | enum | number | text | timestamptz | timestamp | other
    labels: tuple[str, ...] = ()


@dataclass
class ColumnMap:
    """The mapping in effect: configured columns the table has, and optional ones it lacks (left unmapped)."""

    columns: dict[str, Column] = field(default_factory=dict)
    unmapped: dict[str, str] = field(default_factory=dict)
    all_columns: dict[str, Column] = field(default_factory=dict)

    def name(self, key: str) -> str | None:
        column = self.columns.get(key)
        return column.name if column else None

    def __contains__(self, key: str) -> bool:
        return key in self.columns


@dataclass
class Change:
    """One fix's write: ``audit`` is reconbot's audit connection, in the same transaction as the write when the
    trading bot's table lives in reconbot's database; ``handle`` is the backend's own connection."""

    audit: asyncpg.Connection
    handle: Any


class ReadOnlyStore(DatabaseError):
    """A write asked of a table reconbot may not write (``positions.writable``, false for freqtrade by default).
    Raised by the store itself, so no caller (a fix, auto-fix, the embedding API) can write it by forgetting to
    ask; ``reason(id)`` is the remedy every path gives."""

    def __init__(self, settings: PositionsSettings):
        super().__init__(settings.read_only_reason("ID"))
        self._settings = settings

    def reason(self, position_id: str) -> str:
        return self._settings.read_only_reason(position_id)


class PositionsStore(ABC):
    """The trading bot's positions, read and written through the configured names only."""

    def __init__(self, settings: PositionsSettings):
        self._settings = settings
        self.map = ColumnMap()
        self.zone = ZoneInfo(settings.timezone)
        v = settings.values
        self._sides = {value_text(v.long).casefold(): Side.LONG, value_text(v.short).casefold(): Side.SHORT}

    @property
    def settings(self) -> PositionsSettings:
        return self._settings

    @property
    def has_account_column(self) -> bool:
        return "account" in self.map

    @property
    def writable(self) -> bool:
        return self._settings.may_write

    # -- the table's shape -------------------------------------------------------------------------------------

    @abstractmethod
    async def inspect(self) -> None:
        """Learn the table's columns and check the configured mapping against them."""

    def _apply_columns(self, found: Mapping[str, Column]) -> None:
        """Keep the configured columns the table has; a missing required one is an error, a missing optional one
        is left unmapped and noted; every configured value must fit its column's type."""
        configured = {key: name for key, name in self._settings.columns.model_dump().items() if name is not None}
        missing = [f"{key} ({name})" for key, name in configured.items() if key in REQUIRED and name not in found]
        if missing:
            raise DatabaseError(
                f"positions table {self._settings.table} lacks configured columns: {', '.join(missing)}; "
                "map them under positions.columns"
            )
        self.map = ColumnMap(
            columns={key: found[name] for key, name in configured.items() if name in found},
            unmapped={key: name for key, name in configured.items() if name not in found},
            all_columns=dict(found),
        )
        v = self._settings.values
        self._check_values("status", self.map.columns["status"], {"active": v.active, "closed": v.closed})
        self._check_values("side", self.map.columns["side"], {"long": v.long, "short": v.short})
        for name, value in self._settings.filters.items():
            column = found.get(name)
            if column is None:
                raise DatabaseError(f"positions.filters: the table {self._settings.table} has no column {name}")
            self._check_values(f"filter {name}", column, {name: value}, where="positions.filters")

    @staticmethod
    def _check_values(what: str, column: Column, values: Mapping[str, Value], where: str = "positions.values") -> None:
        for key, value in values.items():
            text = value_text(value).casefold()
            if column.kind == "boolean" and text not in _BOOLEAN_TEXTS:
                raise DatabaseError(
                    f"{where}.{key} {value!r} cannot be compared with the boolean column {column.name} ({what}); "
                    "use true or false"
                )
            if column.kind == "enum" and value_text(value) not in column.labels:
                raise DatabaseError(
                    f"{where}.{key} {value!r} is not a value of {column.name}'s type {column.type} ({what}); "
                    f"it holds {', '.join(map(repr, column.labels))}"
                )
            if column.kind == "number" and parse_decimal(value_text(value))[1]:
                raise DatabaseError(f"{where}.{key} {value!r} is not a number, as {column.name} ({what}) is")
        if len({value_text(v).casefold() for v in values.values()}) < len(values):
            raise DatabaseError(f"{where}: {what} values must differ ({', '.join(map(repr, values.values()))})")

    def notes(self) -> list[str]:
        """What ``check-config`` says about the mapping: optional columns the table does not have."""
        if not self.map.unmapped:
            return []
        listing = ", ".join(f"{key} ({name})" for key, name in self.map.unmapped.items())
        return [f"positions: optional columns {self._settings.table} does not have, so not mapped: {listing}"]

    # -- rows ----------------------------------------------------------------------------------------------------

    def is_active(self, row: PositionRow) -> bool:
        return (row.status or "").casefold() == value_text(self._settings.values.active).casefold()

    def build_row(self, raw: Mapping[str, Any]) -> PositionRow:
        """One row from the backend's raw values, with every problem named."""
        problems: list[str] = []
        quantity, why = parse_decimal(raw.get("quantity"))
        if why:
            problems.append(f"quantity {why}")
        symbol = raw.get("symbol")
        if symbol is None or not str(symbol).strip():
            problems.append("symbol is empty" if symbol is not None else "symbol is NULL")
            symbol = None
        side_text = _text(raw.get("side"))
        side = self._sides.get((side_text or "").strip().casefold())
        if side is None:
            v = self._settings.values
            problems.append(f"side {side_text!r} is neither {v.long!r} nor {v.short!r} (see positions.values)")
        moments: dict[str, datetime | None] = {}
        for key in TIMESTAMP_KEYS:
            moments[key], why = parse_moment(raw.get(key), self.zone)
            if why:
                problems.append(f"{key} {why}")
        stop_loss, _ = parse_decimal(raw.get("stop_loss"))
        return PositionRow(
            id=str(raw.get("id")),
            exchange=_text(raw.get("exchange")),
            account=_text(raw.get("account")),
            symbol=str(symbol) if symbol is not None else None,
            side=side,
            quantity=abs(quantity) if quantity is not None else None,
            entry_price=parse_decimal(raw.get("entry_price"))[0],
            status=_text(raw.get("status")),
            opened_at=moments["opened_at"],
            updated_at=moments["updated_at"],
            closed_at=moments["closed_at"],
            exit_reason=_text(raw.get("exit_reason")),
            problem="; ".join(problems) or None,
            side_text=side_text,
            quantity_raw=raw.get("quantity"),
            stop_loss=stop_loss if stop_loss else None,
            has_stop_loss=parse_flag(raw.get("has_stop_loss")),
        )

    # -- reading and writing ---------------------------------------------------------------------------------------

    @abstractmethod
    async def active(
        self, db_exchanges: Collection[str], db_accounts: Collection[str] | None = None
    ) -> list[PositionRow]:
        """Every active row of the given exchanges (and the configured filters), in id order; with
        ``db_accounts`` and an account column, only those accounts' rows and rows that name no account (a
        check of a few accounts reads only theirs)."""

    @abstractmethod
    async def get(self, position_id: str) -> PositionRow | None:
        """One row by id, whatever its status; None when there is none."""

    def change(self, audit_pool: asyncpg.Pool) -> contextlib.AbstractAsyncContextManager[Change]:
        """One write and its audit row (atomically when both live in one database). Every write needs the
        ``Change`` this yields, so a read-only store refuses here, before anything is opened."""
        self.require_writable()
        return self._change(audit_pool)

    def require_writable(self) -> None:
        """The one guard of every write; callers may ask early to refuse before reading anything."""
        if not self.writable:
            raise ReadOnlyStore(self._settings)

    @abstractmethod
    def _change(self, audit_pool: asyncpg.Pool) -> contextlib.AbstractAsyncContextManager[Change]:
        """The backend's own ``change``: its connection and transaction."""

    @abstractmethod
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
        """Adopt a position: insert an active row unless one already tracks it."""

    @abstractmethod
    async def set_quantity_if(self, change: Change, row: PositionRow, quantity: Decimal) -> PositionRow | None:
        """Set a row's size only if it is still active and still holds exactly the size the operator saw."""

    @abstractmethod
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
        """Mark one row closed only if it is still active (and of the size seen); None when it was not."""

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing of their own
        """Release what the backend holds of its own (reconbot's pool is not its to close)."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
