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
from typing import Annotated, Any

import yaml
from pydantic import (
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

from services.account_settings import ENV_PREFIX, AccountSettings
from services.causes import CloseKind
from services.chat_address import ChatAddress, chat_of
from services.config_types import BaseUrl, Section
from services.model import FindingKind
from services.positions_config import PositionsSettings, quote_identifier
from services.severity import MutedCritical, Notify, NotifyKey, Severity, severity_of

DEFAULT_CONFIG_PATH = Path("config.yaml")

_yaml_path: ContextVar[Path | None] = ContextVar("reconbot_yaml_path", default=None)


class ConfigError(Exception):
    """A configuration that cannot run; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class DatabaseSettings(Section):
    url: SecretStr | None = Field(default=None, description="PostgreSQL URL; absent: an embedded server under data_dir")
    data_dir: Path = Field(default=Path("var/pgdata"), description="embedded server's data, relative to the config")
    pool_size: int = Field(default=5, ge=1, le=100, description="connections in the pool")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value


class ScanSettings(Section):
    grace_s: float = Field(default=60, ge=0, description="positions younger than this are pending, not findings")
    verify_delay_s: float = Field(default=2, ge=0, le=300, description="delay before the confirming second read")
    quantity_tolerance: Decimal = Field(
        default=Decimal("0.001"), ge=0, lt=1, description="relative size difference tolerated (0.001 = 0.1 %)"
    )
    auto_fix_ghosts: bool = Field(default=False, description="mark confirmed ghosts closed without asking")
    auto_fix_max_per_run: int = Field(default=3, ge=1, le=1000, description="beyond this many ghosts, ask a human")
    require_stop_loss: bool = Field(
        default=True,
        description="report tracked positions without a covering stop as unprotected (per account: "
        "accounts[].require_stop_loss)",
    )
    orphan_interval_s: float = Field(
        default=300, ge=1, description="how often run scans for orphans, unprotected positions and stray orders"
    )
    reconcile_interval_s: float = Field(default=600, ge=1, description="how often run reconciles")
    jitter_s: float = Field(default=3, ge=0, le=60, description="random delay of scheduled checks")
    streams: bool = Field(
        default=True, description="watch each account's private stream and check it on every change (run only)"
    )
    db_poll_s: float = Field(
        default=5, ge=0, description="how often run re-reads the DB side to catch rows the bot changed (0: off)"
    )
    stream_grace_s: float = Field(
        default=60, ge=0, description="a stream down this long raises a notice (and one when it is back)"
    )
    stream_settle_s: float = Field(
        default=0.25, ge=0, le=10, description="after a stream event, wait this long for a burst to settle"
    )
    settle_interval_s: float = Field(
        default=60,
        ge=1,
        description="how often run settles confirmed fixes a stopped process left unfinished (also at start)",
    )
    stall_after_s: float | None = Field(
        default=None,
        gt=0,
        description="no check on an account held this long raises a loud notice (default: twice the shorter "
        "interval, at least 60 s)",
    )

    @property
    def stall_threshold_s(self) -> float:
        """A whole interval past the check that was due, with a floor against false alarms on short intervals."""
        if self.stall_after_s is not None:
            return self.stall_after_s
        return max(2 * min(self.orphan_interval_s, self.reconcile_interval_s) + self.jitter_s, 60.0)


class TelegramSettings(Section):
    token: SecretStr | None = Field(default=None, description="the bot token from @BotFather")
    alert_chat_ids: list[ChatAddress] = Field(
        default_factory=list,
        description="users or groups that receive alerts; a forum group's topic as chat_id:thread_id",
    )
    operators: list[int] = Field(default_factory=list, description="user ids that may approve fixes")
    viewers: list[int] = Field(default_factory=list, description="user ids that may look")
    api_base_url: BaseUrl = Field(default=None, description="custom Bot API server (default: Telegram's)")
    confirm_ttl_s: float = Field(default=300, gt=0, le=86400, description="how long a Confirm button stays valid")
    snooze_s: float = Field(default=3600, gt=0, le=7 * 86400, description="how long Snooze silences a finding")
    mute_critical: MutedCritical = Field(
        default=MutedCritical.RING, description="in a /mute'd chat, critical alerts still ring (ring) or arrive silent"
    )

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"^\d+:[A-Za-z0-9_-]+$", value.get_secret_value()):
            raise ValueError("does not look like a bot token from @BotFather (digits:letters)")
        return value

    @property
    def enabled(self) -> bool:
        return self.token is not None

    @property
    def alert_chats(self) -> list[int]:
        """The chats that receive alerts (a topic's chat once)."""
        return list(dict.fromkeys(chat_of(address) for address in self.alert_chat_ids))


class EmailSettings(Section):
    host: str = Field(min_length=1, description="SMTP server")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS")
    ca_file: Path | None = Field(default=None, description="CA bundle for a relay with a private certificate")
    username: str | None = Field(default=None, description="SMTP login, if the relay wants one")
    password: SecretStr | None = Field(default=None, description="SMTP password")
    sender: str = Field(default="reconbot@localhost", description="From address")
    recipients: list[str] = Field(min_length=1, description="To addresses")
    timeout_s: float = Field(default=20, gt=0, le=300, description="SMTP timeout")

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if not re.match(r"^[^@\s]+@[^@\s]+$", a)]
        if bad:
            raise ValueError(f"not e-mail addresses: {', '.join(bad)}")
        return value


class SeveritySettings(Section):
    critical_usd: Decimal = Field(
        default=Decimal(10_000), ge=0, description="exposure from which a finding is critical"
    )
    warning_usd: Decimal = Field(default=Decimal(1_000), ge=0, description="exposure from which a finding is a warning")

    @model_validator(mode="after")
    def _ordered(self) -> SeveritySettings:
        if self.warning_usd > self.critical_usd:
            raise ValueError("warning_usd must not exceed critical_usd")
        return self

    def of(self, exposure_usd: Decimal | None) -> Severity:
        return severity_of(exposure_usd, self.critical_usd, self.warning_usd)


class AlertSettings(Section):
    remind_after_s: float = Field(default=3600, gt=0, description="remind while a finding stays open this long")
    severity: SeveritySettings = Field(
        default_factory=SeveritySettings, description="USD exposure thresholds: critical, warning, else info"
    )
    digest_after: int = Field(
        default=5, ge=1, le=1000, description="more new findings than this in one check arrive as one digest"
    )
    notify: dict[NotifyKey, Notify] = Field(
        default_factory=dict,
        description="per kind and per cause: loud, silent or off (default: orphan, unprotected, liquidation and "
        "adl loud, the rest silent); a finding's cause beats its kind",
    )
    unchecked_after: int = Field(default=3, ge=1, le=1000, description="rounds an account may fail before an alert")
    regrowth_factor: Decimal = Field(
        default=Decimal(2),
        gt=1,
        description="a snoozed, acknowledged or alerted finding whose size or USD exposure grows this many times "
        "(or whose severity rises) alerts again",
    )
    console: bool = Field(default=True, description="print alerts on standard output")
    email: EmailSettings | None = Field(default=None, description="send alerts by e-mail too")

    @field_validator("notify", mode="before")
    @classmethod
    def _kinds_and_causes(cls, value: Any) -> Any:
        """Name what a key may be, rather than only the kinds pydantic would list for a union's first member; a
        bare ``off`` is YAML 1.1's false, and means off."""
        if isinstance(value, dict):
            value = {k: Notify.OFF if v is False else v for k, v in value.items()}
            known = {str(k) for k in (*FindingKind, *CloseKind)}
            unknown = [str(k) for k in value if str(k) not in known]
            if unknown:
                names = ", ".join(repr(k) for k in unknown)
                raise ValueError(
                    f"unknown kind or cause {names}; kinds: {', '.join(FindingKind)}; causes: {', '.join(CloseKind)}"
                )
        return value


class OpsSettings(Section):
    listen: str | None = Field(
        default="127.0.0.1:9108", description="host:port for /healthz and /metrics (port 0: any free); null: off"
    )
    stale_after_s: float | None = Field(
        default=None, gt=0, description="/healthz fails when an account's last check is older (default 3 rounds)"
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("use host:port, e.g. 127.0.0.1:9108")
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class ScaleSettings(Section):
    shards: int = Field(
        default=16, ge=1, le=4096, description="accounts are split into this many shards, shared by the replicas"
    )
    claim_interval_s: float = Field(
        default=30, ge=0.1, description="how often a replica claims its share of shards (and takes a dead one's)"
    )


class VenueSettings(Section):
    budget: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="share of the venue's per-IP request limit reconbot may spend (the rest is left to the "
        "trading bot on the same IP)",
    )
    limit: float | None = Field(
        default=None,
        gt=0,
        description="the venue's per-IP limit, when yours differs (Binance: 2400 weight a minute; Bybit: 600 "
        "requests in 5 s)",
    )


class VenuesSettings(Section):
    binanceusdm: VenueSettings = Field(default_factory=VenueSettings, description="Binance USDⓈ-M: weight per minute")
    bybit: VenueSettings = Field(default_factory=VenueSettings, description="Bybit: requests per 5 seconds")

    def budgets(self) -> dict[str, VenueSettings]:
        return {name: getattr(self, name) for name in type(self).model_fields}


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
    accounts: Annotated[list[AccountSettings], Field(min_length=1, description="the exchange accounts to watch")]
    scan: ScanSettings = ScanSettings()
    telegram: TelegramSettings = TelegramSettings()
    alerts: AlertSettings = AlertSettings()
    ops: OpsSettings = OpsSettings()
    venues: VenuesSettings = VenuesSettings()
    scale: ScaleSettings = ScaleSettings()
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
        for url in (self.database.url, self.positions.url):
            if url is not None:
                values.append(url.get_secret_value())
        if self.telegram.token is not None:
            values.append(self.telegram.token.get_secret_value())
        if self.alerts.email is not None and self.alerts.email.password is not None:
            values.append(self.alerts.email.password.get_secret_value())
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
            element = node[item] if isinstance(node, list) and item < len(node) else None
            name = element.get("name") if isinstance(element, dict) else None
            parts[-1] += f"[{name}]" if isinstance(name, str) and name else f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "config"


SECRET_FIELDS = frozenset({"api_key", "secret", "token", "password", "url"})


def _echo(loc: tuple[Any, ...], value: Any) -> str:
    """The offending value, for scalar inputs of fields that cannot hold a secret."""
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if last in SECRET_FIELDS or isinstance(value, dict | list) or value is None:
        return ""
    text = repr(value)
    return f" (got {text[:60]}{'…' if len(text) > 60 else ''})"


def _problems(error: ValidationError, raw: dict[str, Any]) -> list[str]:
    lines = []
    for item in error.errors(include_url=False, include_input=True):
        loc = tuple(p for p in item["loc"] if p not in ("function-after",))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required"
        elif item["type"] != "value_error":
            message += _echo(loc, item.get("input"))
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
        telegram = raw.get("telegram")
        if isinstance(telegram, dict) and telegram.get("token"):
            raise ConfigError(
                ["telegram.token: keep the bot token out of the file; set RECONBOT_TELEGRAM__TOKEN instead"]
            )
        email = (raw.get("alerts") or {}).get("email") if isinstance(raw.get("alerts"), dict) else None
        if isinstance(email, dict) and email.get("password"):
            raise ConfigError(
                ["alerts.email.password: keep the password out of the file; set RECONBOT_ALERTS__EMAIL__PASSWORD"]
            )
    elif explicit:
        raise ConfigError([f"{config_path}: no such file"])
    token = _yaml_path.set(config_path if config_path.exists() else None)
    try:
        return Settings(config_dir=config_path.resolve().parent, **overrides)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, raw)) from None
    finally:
        _yaml_path.reset(token)


__all__ = ["PositionsSettings", "quote_identifier"]
