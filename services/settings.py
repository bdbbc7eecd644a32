"""Configuration: ``config.yaml`` overlaid by ``RECONBOT_…`` environment variables, validated once at start.

Every problem is reported as one line naming the key, so a bad config fails before anything connects.
Secrets are ``SecretStr``: they never show up in a repr, a log line or a traceback.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG_PATH = Path("config.yaml")
ENV_PREFIX = "RECONBOT_"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_DB_EXCHANGE = {"binanceusdm": "binance", "bybit": "bybit"}

_yaml_path: ContextVar[Path | None] = ContextVar("reconbot_yaml_path", default=None)


class ConfigError(Exception):
    """A configuration that cannot run; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_identifier(value: str, what: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"{what} {value!r} is not a plain SQL identifier (letters, digits, _ and $; at most 63)")
    return value


def quote_identifier(name: str) -> str:
    """Double-quote a validated identifier; validation already rules out quotes, so this cannot be escaped."""
    return '"' + _check_identifier(name, "identifier") + '"'


class DatabaseSettings(_Section):
    url: SecretStr | None = Field(default=None, description="PostgreSQL URL; absent: an embedded server under data_dir")
    data_dir: Path = Field(default=Path("var/pgdata"), description="embedded server's data, relative to the config")
    pool_size: int = Field(default=5, ge=1, le=100, description="connections in the pool")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value


class PositionColumns(_Section):
    """Column names of the trading bot's positions table; optional ones may be null when a schema lacks them."""

    id: str = "id"
    exchange: str = "exchange"
    account: str | None = "account"
    symbol: str = "symbol"
    side: str = "side"
    quantity: str = "quantity"
    entry_price: str | None = "entry_price"
    status: str = "status"
    opened_at: str | None = "opened_at"
    closed_at: str | None = "closed_at"
    exit_reason: str | None = "exit_reason"
    updated_at: str | None = "updated_at"

    @model_validator(mode="after")
    def _identifiers(self) -> PositionColumns:
        for key, value in self.model_dump().items():
            if value is not None:
                _check_identifier(value, f"column {key}")
        return self


class PositionValues(_Section):
    """The values the trading bot writes into the status and side columns."""

    active: str = Field(default="active", min_length=1)
    closed: str = Field(default="closed", min_length=1)
    long: str = Field(default="long", min_length=1)
    short: str = Field(default="short", min_length=1)


class PositionsSettings(_Section):
    table: str = Field(default="positions", description="table name, schema-qualified allowed (trading.positions)")
    columns: PositionColumns = PositionColumns()
    values: PositionValues = PositionValues()

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2:
            raise ValueError(f"{value!r}: use table or schema.table")
        for part in parts:
            _check_identifier(part, "table name part")
        return value

    @property
    def qualified_table(self) -> str:
        return ".".join(quote_identifier(part) for part in self.table.split("."))


class AccountSettings(_Section):
    name: str = Field(description="unique name used in commands and alerts")
    exchange: Literal["binanceusdm", "bybit"]
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    secret_env: str | None = Field(default=None, description="environment variable holding the secret")
    db_exchange: str | None = Field(default=None, description="value of positions.exchange for this account")
    db_account: str | None = Field(default=None, description="value of positions.account (default: name)")
    api_base_url: str | None = Field(default=None, description="replaces the venue's REST host for every endpoint")
    testnet: bool = False
    demo_trading: bool = False
    allow_exchange_orders: bool = Field(default=False, description="allow closing orphans with reduce-only orders")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="per-request timeout")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ACCOUNT_NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="before")
    @classmethod
    def _fill_from_environment(cls, data: Any) -> Any:
        """Keys come inline, from a named variable, or from RECONBOT_<NAME>_API_KEY / _SECRET."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data
        data = dict(data)
        env_stem = ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", data["name"]).upper()
        for field, env_field, default_env in (
            ("api_key", "api_key_env", env_stem + "_API_KEY"),
            ("secret", "secret_env", env_stem + "_SECRET"),
        ):
            if data.get(field) not in (None, ""):
                continue
            named = data.get(env_field)
            value = os.environ.get(named or default_env)
            if named and value is None:
                raise ValueError(f"{env_field} names {named}, which is not set in the environment")
            if not value:
                raise ValueError(f"{field} is not set: give {field}, {env_field} or set {default_env}")
            data[field] = value
        data.setdefault("db_exchange", DEFAULT_DB_EXCHANGE.get(data.get("exchange", "")))
        data.setdefault("db_account", data["name"])
        return data

    @model_validator(mode="after")
    def _one_environment(self) -> AccountSettings:
        if self.testnet and self.demo_trading:
            raise ValueError("testnet and demo_trading exclude each other; choose one")
        return self

    def credentials(self) -> tuple[str, str]:
        assert self.api_key is not None and self.secret is not None
        return self.api_key.get_secret_value(), self.secret.get_secret_value()

    def secrets(self) -> tuple[str, ...]:
        return tuple(s.get_secret_value() for s in (self.api_key, self.secret) if s is not None)


class ScanSettings(_Section):
    grace_s: float = Field(default=60, ge=0, description="positions younger than this are pending, not findings")
    verify_delay_s: float = Field(default=2, ge=0, le=300, description="delay before the confirming second read")
    quantity_tolerance: Decimal = Field(
        default=Decimal("0.001"), ge=0, lt=1, description="relative size difference tolerated (0.001 = 0.1 %)"
    )
    auto_fix_ghosts: bool = Field(default=False, description="mark confirmed ghosts closed without asking")


class Settings(BaseSettings):
    """Everything reconbot needs to run; see ``config.yaml`` for an annotated example."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database: DatabaseSettings = DatabaseSettings()
    positions: PositionsSettings = PositionsSettings()
    accounts: Annotated[list[AccountSettings], Field(min_length=1)]
    scan: ScanSettings = ScanSettings()
    config_dir: Path = Field(default=Path("."), exclude=True, description="directory relative paths start from")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _yaml_path.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _accounts_distinct(self) -> Settings:
        names = [a.name for a in self.accounts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"account names must be unique; repeated: {', '.join(duplicates)}")
        if self.positions.columns.account is None:
            venues = [a.db_exchange for a in self.accounts]
            shared = sorted({v for v in venues if v is not None and venues.count(v) > 1})
            if shared:
                raise ValueError(
                    f"accounts share db_exchange {', '.join(shared)} but positions.columns.account is null, "
                    "so their DB rows cannot be told apart"
                )
        return self

    def account(self, name: str) -> AccountSettings:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction of anything printed."""
        values = [s for a in self.accounts for s in a.secrets()]
        if self.database.url is not None:
            values.append(self.database.url.get_secret_value())
        return tuple(v for v in values if v)

    @property
    def data_dir(self) -> Path:
        path = self.database.data_dir.expanduser()
        return path if path.is_absolute() else (self.config_dir / path).resolve()


def _format_location(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """``accounts[1].api_key`` reads better as ``accounts[bybit-main].api_key`` when the name is known."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) else None
            parts[-1] += f"[{name}]" if isinstance(name, str) and name else f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "config"


def _problems(error: ValidationError, raw: dict[str, Any]) -> list[str]:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        loc = tuple(p for p in item["loc"] if p not in ("function-after",))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required"
        lines.append(f"{_format_location(loc, raw)}: {message}")
    return lines


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read, merge and validate the config; raise ConfigError with one line per problem."""
    explicit = path is not None or "RECONBOT_CONFIG" in os.environ
    config_path = Path(path or os.environ.get("RECONBOT_CONFIG") or DEFAULT_CONFIG_PATH).expanduser()
    raw: dict[str, Any] = {}
    if config_path.exists():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError([f"{config_path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
        except OSError as exc:
            raise ConfigError([f"{config_path}: cannot read ({exc.strerror})"]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"{config_path}: the top level must be a mapping of sections"])
        raw = loaded or {}
    elif explicit:
        raise ConfigError([f"{config_path}: no such file"])
    token = _yaml_path.set(config_path if config_path.exists() else None)
    try:
        return Settings(config_dir=config_path.resolve().parent, **overrides)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, raw)) from None
    finally:
        _yaml_path.reset(token)
