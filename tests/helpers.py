"""Building blocks for integration tests: settings for emulated accounts and a seeded positions table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from emulator.exchange import EmulatedAccount
from services import migrations
from services.settings import OpsSettings, PositionsSettings, Settings

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


async def until(condition: Callable[[], Any], timeout: float = 15.0, step: float = 0.05) -> Any:
    """Wait for ``condition()`` (or its awaited value) to be true; its value, or TimeoutError."""
    async with asyncio.timeout(timeout):
        while True:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(step)


@contextlib.asynccontextmanager
async def running(settings: Settings, lines: list[str] | None = None) -> AsyncIterator[Any]:
    """``run`` as a service in this event loop (ops on a free port), stopped gracefully afterwards."""
    from app.service import start_service

    lines = [] if lines is None else lines
    if settings.ops.listen == OpsSettings().listen:
        settings = settings.model_copy(update={"ops": OpsSettings(listen="127.0.0.1:0")})
    await prepare_database(settings.database.url.get_secret_value())
    service = await start_service(settings, say=lines.append)
    for gateway in service.runtime.gateways.values():
        gateway.client.timeout_on_exit = 0
    try:
        yield service
    finally:
        await service.stop(check_timeout_s=10, flush_timeout_s=2)
