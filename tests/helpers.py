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
from services.delivery import Deliverer
from services.findings import FindingsStore
from services.outbox import Destination, Outbox, OutboxItem, OutboxKind, enqueue_many
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


class RecordingChannel(Deliverer):
    """An outbox channel that records each send in a list shared by every replica, so a test sees a row sent
    twice whichever replicas sent it. A send takes ``send_s``, so rows are in flight when a replica fails."""

    channel = "recording"

    def __init__(self, findings: FindingsStore, outbox: Outbox, sends: list[int], send_s: float = 0.02):
        super().__init__(findings, outbox)
        self.sends = sends
        self.send_s = send_s

    async def deliver(self, item: OutboxItem) -> None:
        await asyncio.sleep(self.send_s)
        self.sends.append(item.id)


@contextlib.asynccontextmanager
async def delivery_replica(
    database_url: str, name: str, sends: list[int], on_query: Callable[[Any], None] | None = None
) -> AsyncIterator[RecordingChannel]:
    """A replica's deliverer of the recording channel, running: its own pool and lock connection, every
    session named ``name`` (pg_stat_activity.application_name); ``on_query`` sees every statement it sends."""
    settings = {"application_name": name}

    async def instrument(conn: asyncpg.Connection) -> None:
        if on_query is not None:
            conn.add_query_logger(on_query)

    async def connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(database_url, server_settings=settings)
        await instrument(conn)
        return conn

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3, server_settings=settings, init=instrument)
    deliverer = RecordingChannel(FindingsStore(pool), Outbox(pool, connect), sends)
    task = asyncio.create_task(deliverer.run())
    try:
        yield deliverer
    finally:
        deliverer.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await pool.close()


async def queue_rows(database_url: str, channel: str, destinations: Sequence[str], per_destination: int) -> list[int]:
    """Queue outbox rows as another replica's check would (its own connection); returns their ids."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(per_destination):
            await enqueue_many(conn, [Destination(channel, d) for d in destinations], OutboxKind.NOTICE)  # type: ignore[arg-type]
        return [r["id"] for r in await conn.fetch("SELECT id FROM reconbot.outbox WHERE channel = $1", channel)]
    finally:
        await conn.close()


async def lock_holders(database_url: str, key: int) -> list[tuple[int, str]]:
    """(pid, application_name) of every session holding the advisory lock ``key`` (a one-number key)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1::bigint::oid "
            "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            key,
        )
        return [(r["pid"], r["application_name"]) for r in rows]
    finally:
        await conn.close()
