"""How reconbot reads the trading bot's positions: which table, which columns, which values mean active, long
and short, how its symbols map to the venue's, and presets for the bots people run.

Every name is a validated identifier (quoted where it is used), every value a bind parameter, so a config can
never inject SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, StrictBool, StrictInt, field_validator, model_validator

from services.config_types import Section

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")

Value = StrictBool | StrictInt | str


def check_identifier(value: str, what: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"{what} {value!r} is not a plain SQL identifier (letters, digits, _ and $; at most 63)")
    return value


def quote_identifier(name: str) -> str:
    """Double-quote a validated identifier; validation already rules out quotes, so this cannot be escaped."""
    return '"' + check_identifier(name, "identifier") + '"'


def value_text(value: Value) -> str:
    """A configured value as the database renders it in text: booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Columns a table must have; the others are mapped when the table has them and skipped (with a note) when not.
REQUIRED = ("id", "exchange", "symbol", "side", "quantity", "status")


class PositionColumns(Section):
    """Column names of the trading bot's positions table. Optional ones that the table lacks are not mapped;
    null leaves one unmapped on purpose."""

    id: str = Field(default="id", description="the row's primary key")
    exchange: str = Field(default="exchange", description="the venue (matched to accounts[].db_exchange)")
    account: str | None = Field(
        default="account", description="the account (accounts[].db_account); needed only when accounts share a venue"
    )
    symbol: str = Field(default="symbol", description="market id (BTCUSDT) or ccxt symbol (BTC/USDT:USDT)")
    side: str = Field(default="side", description="long or short (see positions.values); text, enum or boolean")
    quantity: str = Field(default="quantity", description="size in contracts; 0 is an entry not filled yet")
    entry_price: str | None = Field(default="entry_price", description="entry price")
    status: str = Field(default="status", description="active or closed (see positions.values); text, enum or boolean")
    opened_at: str | None = Field(default="opened_at", description="when the position was opened")
    closed_at: str | None = Field(default="closed_at", description="set when reconbot closes a ghost")
    exit_reason: str | None = Field(default="exit_reason", description="set when reconbot closes a ghost")
    updated_at: str | None = Field(default="updated_at", description="last change of the row")
    stop_loss: str | None = Field(default=None, description="the stop-loss price the trading bot believes it set")
    has_stop_loss: str | None = Field(default=None, description="whether the trading bot believes it set a stop")
    exit_price: str | None = Field(default=None, description="set to the venue's exit price when a ghost is closed")
    realized_pnl: str | None = Field(default=None, description="set to the venue's realized PnL when a ghost is closed")

    @model_validator(mode="after")
    def _identifiers(self) -> PositionColumns:
        for key, value in self.model_dump().items():
            if value is not None:
                check_identifier(value, f"column {key}")
        return self


class PositionValues(Section):
    """The values the trading bot writes into the status and side columns, in the column's own type."""

    active: Value = Field(default="active", description="status value of an open position (true for a boolean)")
    closed: Value = Field(default="closed", description="status value reconbot writes to close a ghost")
    long: Value = Field(default="long", description="side value of a long (false for an is_short column)")
    short: Value = Field(default="short", description="side value of a short (true for an is_short column)")

    @field_validator("active", "closed", "long", "short")
    @classmethod
    def _not_empty(cls, value: Value) -> Value:
        if isinstance(value, str) and not value:
            raise ValueError("must not be empty")
        return value


class SymbolRewrite(Section):
    """A DB symbol style the venue does not use, rewritten before it is resolved through the venue's markets."""

    pattern: str = Field(description="regular expression matching the whole DB symbol, e.g. ^([A-Z0-9]+)-([A-Z]+)$")
    replace: str = Field(description="the symbol it stands for, with \\1 … for groups, e.g. \\1\\2")

    @model_validator(mode="after")
    def _compiles(self) -> SymbolRewrite:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern {self.pattern!r} is not a regular expression: {exc}") from None
        groups = {int(g) for g in re.findall(r"\\(\d+)", self.replace)}
        if groups and max(groups) > compiled.groups:
            raise ValueError(f"replace {self.replace!r} names group {max(groups)}; the pattern has {compiled.groups}")
        return self

    def apply(self, symbol: str) -> str | None:
        match = re.fullmatch(self.pattern, symbol)
        return match.expand(self.replace) if match else None


PRESETS: dict[str, dict[str, Any]] = {
    # The seed's own trading bot: monitoring.positions, one row per position, no account column.
    "seed": {
        "table": "monitoring.positions",
        "columns": {
            "account": None,
            "stop_loss": "stop_loss",
            "has_stop_loss": "has_stop_loss",
            "exit_price": "current_price",
            "realized_pnl": "realized_pnl",
        },
    },
    # freqtrade's trades table as freqtrade writes it: ccxt pairs, booleans, naive UTC dates, futures only.
    "freqtrade": {
        "table": "trades",
        "columns": {
            "id": "id",
            "exchange": "exchange",
            "account": None,
            "symbol": "pair",
            "side": "is_short",
            "quantity": "amount",
            "entry_price": "open_rate",
            "status": "is_open",
            "opened_at": "open_date",
            "closed_at": "close_date",
            "exit_reason": "exit_reason",
            "updated_at": None,
            "stop_loss": "stop_loss",
            "exit_price": "close_rate",
            "realized_pnl": "realized_profit",
        },
        "values": {"active": True, "closed": False, "long": False, "short": True},
        "filters": {"trading_mode": "FUTURES"},
        "writable": False,
    },
}
# A read-only bot's own command that settles one of its rows: offered in place of the fix reconbot may not make.
READ_ONLY_COMMAND = {"freqtrade": "/reload_trade {id}"}
READ_ONLY_REMEDY = {
    "freqtrade": (
        "freqtrade keeps open trades in memory, so reconbot does not write its database: use freqtrade's own "
        "{command} (to re-read the trade from the exchange) or /delete {id}, or set positions.writable: "
        "true to let reconbot write anyway"
    ),
}


@dataclass(frozen=True, slots=True)
class BookWrites:
    """Whether fixes may write the trading bot's table; when they may not, the bot's own command for one row
    (freqtrade's ``/reload_trade 7``), shown in place of a fix that would only be refused."""

    writable: bool = True
    command: str | None = None  # with ``{id}`` for the row

    def remedy(self, position_id: str) -> str | None:
        """The command that settles this row in the trading bot itself; None where reconbot may write."""
        if self.writable or self.command is None:
            return None
        return self.command.format(id=position_id)


WRITABLE = BookWrites()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


class PositionsSettings(Section):
    preset: Literal["seed", "freqtrade"] | None = Field(
        default=None, description="defaults for a known trading bot's table: seed or freqtrade"
    )
    url: SecretStr | None = Field(
        default=None,
        description="where the trading bot's table lives when not in database.url: postgresql://… or sqlite:///file",
    )
    table: str = Field(default="positions", description="table name, schema-qualified allowed (trading.positions)")
    columns: PositionColumns = PositionColumns()
    values: PositionValues = PositionValues()
    symbols: list[SymbolRewrite] = Field(
        default_factory=list, description="rewrites for DB symbol styles the venue does not use (BTC-USDT)"
    )
    timezone: str = Field(default="UTC", description="the zone of timestamps stored without one")
    filters: dict[str, Value] = Field(
        default_factory=dict, description="only rows whose columns equal these values (trading_mode: FUTURES)"
    )
    writable: bool | None = Field(
        default=None, description="may reconbot write this table (default: yes, except for the freqtrade preset)"
    )

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in PRESETS:
            return _merge(PRESETS[data["preset"]], data)
        return data

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2:
            raise ValueError(f"{value!r}: use table or schema.table")
        for part in parts:
            check_identifier(part, "table name part")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgres://", "postgresql://", "sqlite:///")
        ):
            raise ValueError("must start with postgresql://, postgres:// or sqlite:///")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            if not _TIMEZONE.match(value):
                raise ZoneInfoNotFoundError(value)
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone name (UTC, Europe/Berlin, America/New_York)") from None
        return value

    @field_validator("filters")
    @classmethod
    def _filter_columns(cls, value: dict[str, Value]) -> dict[str, Value]:
        for column in value:
            check_identifier(column, "filter column")
        return value

    @property
    def qualified_table(self) -> str:
        return ".".join(quote_identifier(part) for part in self.table.split("."))

    @property
    def sqlite_path(self) -> str | None:
        url = self.url.get_secret_value() if self.url else ""
        return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None

    @property
    def may_write(self) -> bool:
        return self.writable if self.writable is not None else self.preset != "freqtrade"

    @property
    def writes(self) -> BookWrites:
        return BookWrites(self.may_write, READ_ONLY_COMMAND.get(self.preset or ""))

    def read_only_reason(self, position_id: str) -> str:
        remedy = READ_ONLY_REMEDY.get(self.preset or "")
        if remedy:
            return remedy.format(id=position_id, command=READ_ONLY_COMMAND[self.preset or ""].format(id=position_id))
        return "positions.writable is false: reconbot does not write the trading bot's table; set it to true to allow"

    def rewrite_symbol(self, symbol: str) -> str:
        """The first configured rewrite that matches, else the symbol as stored."""
        for rewrite in self.symbols:
            rewritten = rewrite.apply(symbol)
            if rewritten is not None:
                return rewritten
        return symbol
