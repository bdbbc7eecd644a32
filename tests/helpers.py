"""Building blocks for integration tests: settings for emulated accounts and a seeded positions table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from emulator.exchange import EmulatedAccount
from services import migrations
from services.settings import PositionsSettings, Settings

LONG_AGO = datetime.now(UTC) - timedelta(days=1)


async def cli(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    """Run the command line in-process: (exit code, stdout, stderr)."""
    from main import run_cli

    code = await run_cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def account_config(account: EmulatedAccount, **extra: Any) -> dict[str, Any]:
    return {
        "name": account.name,
        "exchange": account.exchange_id,
        "api_key": account.api_key,
        "secret": account.secret,
        "api_base_url": account.base_url,
        "timeout_s": 1.0,
        **extra,
    }


def config_dict(database_url: str, accounts: Sequence[EmulatedAccount], **scan: Any) -> dict[str, Any]:
    return {
        "database": {"url": database_url},
        "accounts": [account_config(a) for a in accounts],
        "scan": {"grace_s": 0, "verify_delay_s": 0, **scan},
    }


def make_settings(database_url: str, accounts: Sequence[EmulatedAccount], **scan: Any) -> Settings:
    return Settings(**config_dict(database_url, accounts, **scan))


def write_config(path: Path, database_url: str, accounts: Sequence[EmulatedAccount], **scan: Any) -> Path:
    path.write_text(yaml.safe_dump(config_dict(database_url, accounts, **scan)))
    return path


async def prepare_database(database_url: str, positions: PositionsSettings | None = None) -> None:
    """Apply reconbot's migrations and create the positions table."""
    conn = await asyncpg.connect(database_url)
    try:
        await migrations.apply_migrations(conn)
        await migrations.ensure_positions_table(conn, positions or PositionsSettings())
    finally:
        await conn.close()


def position_row(account: EmulatedAccount, symbol: str, side: str, quantity: str, **extra: Any) -> dict[str, Any]:
    """A positions-table row that belongs to an emulated account."""
    exchange = "binance" if account.venue == "binance" else "bybit"
    return {
        "exchange": exchange,
        "account": account.name,
        "symbol": symbol,
        "side": side,
        "quantity": Decimal(quantity),
        **extra,
    }


async def insert_positions(database_url: str, rows: Iterable[dict[str, Any]]) -> list[int]:
    """Insert rows into the default positions table; opened a day ago unless told otherwise."""
    conn = await asyncpg.connect(database_url)
    ids = []
    try:
        for row in rows:
            values = {"status": "active", "opened_at": LONG_AGO, "updated_at": LONG_AGO, **row}
            columns = ", ".join(values)
            placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            ids.append(
                await conn.fetchval(
                    f"INSERT INTO positions ({columns}) VALUES ({placeholders}) RETURNING id", *values.values()
                )
            )
    finally:
        await conn.close()
    return ids


async def fetch_positions_table(database_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM positions ORDER BY id")]
    finally:
        await conn.close()


async def fetch_audit(database_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM reconbot.audit_log ORDER BY id")]
    finally:
        await conn.close()
