"""One exchange account in the configuration: its venue, where its keys come from (inline, a named variable,
or ``RECONBOT_<NAME>_API_KEY``), and how the DB names it."""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.config_types import BaseUrl, Section, WsBaseUrl

ENV_PREFIX = "RECONBOT_"
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AccountSettings(Section):
    name: str = Field(description="unique name used in commands and alerts")
    exchange: str = Field(description="binanceusdm or bybit")
    api_key_env: str | None = Field(
        default=None, description="environment variable holding the API key (default: RECONBOT_<NAME>_API_KEY)"
    )
    secret_env: str | None = Field(
        default=None, description="environment variable holding the secret (default: RECONBOT_<NAME>_SECRET)"
    )
    api_key: SecretStr | None = Field(
        default=None, validate_default=True, description="inline API key (a private config only)"
    )
    secret: SecretStr | None = Field(
        default=None, validate_default=True, description="inline secret (a private config only)"
    )
    db_exchange: str | None = Field(
        default=None,
        validate_default=True,
        description="value of positions.exchange for this account (default: binance or bybit)",
    )
    db_account: str | None = Field(
        default=None, validate_default=True, description="value of positions.account (default: name)"
    )
    api_base_url: BaseUrl = Field(default=None, description="replaces the venue's REST host for every endpoint")
    ws_base_url: WsBaseUrl = Field(
        default=None,
        description="replaces the venue's WebSocket host for every stream, paths kept (with api_base_url and "
        "without this, the account polls)",
    )
    grace_s: float | None = Field(default=None, ge=0, description="this account's grace window (default: scan.grace_s)")
    testnet: bool = Field(default=False, description="use the venue's testnet")
    demo_trading: bool = Field(default=False, description="use the venue's demo-trading environment")
    allow_exchange_orders: bool = Field(
        default=False, description="allow closing orphans with reduce-only orders and cancelling stray orders"
    )
    require_stop_loss: bool | None = Field(
        default=None, description="overrides scan.require_stop_loss for this account (false: a strategy without stops)"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="per-request timeout")
    read_deadline_s: float | None = Field(
        default=None,
        gt=0,
        le=600,
        description="a whole read's deadline, every page included (default: 6 × timeout_s, at least 30)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ACCOUNT_NAME.match(value):
            raise ValueError(
                f"{value!r}: use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)"
            )
        return value

    @field_validator("exchange")
    @classmethod
    def _supported(cls, value: str) -> str:
        from services.venues import SUPPORTED

        if value not in SUPPORTED:
            raise ValueError(f"{value!r} is not supported ({', '.join(SUPPORTED)})")
        return value

    @field_validator("api_key", "secret", mode="before")
    @classmethod
    def _from_environment(cls, value: Any, info: ValidationInfo) -> Any:
        """Keys come inline, from a named variable, or from RECONBOT_<NAME>_API_KEY / _SECRET."""
        if value not in (None, ""):
            return value
        field = info.field_name or ""
        env_field = f"{field}_env"
        named = info.data.get(env_field)
        name = info.data.get("name")
        default_env = ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + f"_{field.upper()}" if name else None
        found = os.environ.get(named or default_env or "")
        if named and found is None:
            raise ValueError(f"{env_field} names {named}, which is not set in the environment")
        if not found:
            where = f" or set {default_env}" if default_env else ""
            raise ValueError(f"not set: give {field}, {env_field}{where}")
        return found

    @field_validator("db_exchange", mode="before")
    @classmethod
    def _default_db_exchange(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        from services.venues import REGISTRY

        venue = REGISTRY.get(info.data.get("exchange") or "")
        return venue.default_db_exchange if venue else None

    @field_validator("db_account", mode="before")
    @classmethod
    def _default_db_account(cls, value: Any, info: ValidationInfo) -> Any:
        return info.data.get("name") if value is None else value

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
