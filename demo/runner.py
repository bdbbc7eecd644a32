"""Run reconbot with nothing configured: the loopback exchange emulator, an embedded PostgreSQL of its own
(seeded with a trading bot's positions), and the console as the alert channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from app.service import start_service
from app.startup import StartupError
from emulator.exchange import ExchangeEmulator
from services import migrations
from services.database import Database
from services.findings import FiledCheck
from services.report import render_text
from services.settings import PositionsSettings, Settings, quote_identifier

DEFAULT_SCENARIO = Path(__file__).with_name("scenario.yaml")
DEFAULT_DATA_DIR = Path("var/demo-pgdata")
POSITION_AGE_MS = 2 * 3600 * 1000

Say = Callable[[str], None]


class ScenarioError(ValueError):
    """A scenario file that cannot be used, with the reason."""


@dataclass(frozen=True)
class Scenario:
    exchange: dict[str, Any]
    db_positions: list[dict[str, Any]]


def read_scenario(path: Path) -> Scenario:
    """Load a demo scenario: ``exchange`` is the emulator's scenario, ``database.positions`` the DB rows."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("exchange"), dict):
        raise ScenarioError(f"{path}: needs an 'exchange' mapping (and optionally 'database')")
    unknown = set(data) - {"exchange", "database"}
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    rows = (data.get("database") or {}).get("positions") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ScenarioError(f"{path}: database.positions must be a list of rows")
    exchange = dict(data["exchange"])
    opened = int(time.time() * 1000) - POSITION_AGE_MS
    for account in exchange.get("accounts") or []:
        for position in account.get("positions") or []:
            position.setdefault("opened_ms", opened)
    return Scenario(exchange, rows)


def _telegram_from_environment() -> dict[str, Any]:
    """With RECONBOT_TELEGRAM__TOKEN and an operator id set, the demo runs the real bot too; alerts go to the
    operators' private chats unless RECONBOT_TELEGRAM__ALERT_CHAT_IDS names others."""
    token = os.environ.get("RECONBOT_TELEGRAM__TOKEN")
    operators = json.loads(os.environ.get("RECONBOT_TELEGRAM__OPERATORS") or "[]")
    if not token or not operators:
        return {}
    chats = json.loads(os.environ.get("RECONBOT_TELEGRAM__ALERT_CHAT_IDS") or "null") or operators
    return {"token": token, "operators": operators, "alert_chat_ids": chats}


def demo_settings(emulator: ExchangeEmulator, data_dir: Path, database_url: str | None = None) -> Settings:
    """Settings as a user would write them, pointed at the emulator's accounts, with quick rounds."""
    accounts = [
        {
            "name": account.name,
            "exchange": account.exchange_id,
            "api_key": account.api_key,
            "secret": account.secret,
            "api_base_url": account.base_url,
            "ws_base_url": "ws" + account.base_url.removeprefix("http"),  # the emulator streams on the same port
            "timeout_s": 2,
            "allow_exchange_orders": True,
        }
        for account in emulator.accounts.values()
    ]
    database: dict[str, Any] = {"data_dir": str(data_dir)}
    if database_url:
        database["url"] = database_url
    return Settings(
        database=database,
        accounts=accounts,
        scan={"grace_s": 60, "verify_delay_s": 1, "orphan_interval_s": 20, "reconcile_interval_s": 40, "jitter_s": 0},
        alerts={"console": True, "unchecked_after": 2, "remind_after_s": 300},
        telegram=_telegram_from_environment(),
        ops={"listen": "127.0.0.1:0"},
        config_dir=Path.cwd(),
    )


async def seed_database(pool: asyncpg.Pool, positions: PositionsSettings, rows: list[dict[str, Any]]) -> None:
    """Start from a clean slate: the scenario's rows (ids kept, so '#123' means the same every run) and no
    findings, alerts or audit entries left from an earlier demo."""
    table = positions.qualified_table
    opened_at = datetime.now(UTC) - timedelta(milliseconds=POSITION_AGE_MS)
    async with pool.acquire() as conn, conn.transaction():
        await migrations.migrate(conn, positions)
        await conn.execute(f"TRUNCATE {table}")
        await conn.execute(
            "TRUNCATE reconbot.alert_messages, reconbot.outbox, reconbot.confirmations, reconbot.mute_arrivals, "
            "reconbot.findings, reconbot.account_checks, reconbot.audit_log"
        )
        for row in rows:
            values = {k: (Decimal(str(v)) if k in ("quantity", "entry_price") else v) for k, v in row.items()}
            values.setdefault("status", positions.values.active)
            values.setdefault("opened_at", opened_at)
            values.setdefault("updated_at", opened_at)
            columns = ", ".join(quote_identifier(k) for k in values)
            marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            await conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 -- quoted identifiers only
                *values.values(),
            )
        id_column = quote_identifier(positions.columns.id)
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence($1, $2), greatest((SELECT max({id_column}) FROM {table}), 1))",  # noqa: S608
            table,
            positions.columns.id,
        )


async def run_demo(
    scenario_path: Path = DEFAULT_SCENARIO,
    *,
    data_dir: Path = DEFAULT_DATA_DIR,
    database_url: str | None = None,
    rounds: int | None = None,
    say: Say = print,
) -> int:
    """Run reconbot against the scenario until Ctrl-C (or for ``rounds`` checks); returns the exit code."""
    scenario = read_scenario(scenario_path)
    emulator = ExchangeEmulator.from_scenario(scenario.exchange)
    base = await emulator.start()
    say(f"demo: exchange emulator on {base} with accounts {', '.join(emulator.accounts)}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        settings = demo_settings(emulator, data_dir, database_url)
        database = Database(settings)
        await database.start()
        try:
            say(f"demo: {database.description}; seeding {len(scenario.db_positions)} trading-bot positions")
            await seed_database(database.pool, settings.positions, scenario.db_positions)
        finally:
            await database.close()
        if settings.telegram.enabled:
            say(
                "demo: the Telegram bot runs too; alerts go to " + ", ".join(map(str, settings.telegram.alert_chat_ids))
            )
        else:
            say(
                "demo: console alerts only (set RECONBOT_TELEGRAM__TOKEN and RECONBOT_TELEGRAM__OPERATORS='[<your id>]'"
                " to press the buttons on your phone)"
            )
        checks = 0

        def after_check(filed: FiledCheck) -> None:
            nonlocal checks
            checks += 1
            if checks == 1:
                say(render_text(filed.result, "first check"))
            if rounds is not None and checks >= rounds:
                stop.set()

        try:
            service = await start_service(settings, say=lambda text: say(f"demo: {text}"), console=say)
        except StartupError as exc:
            for problem in exc.problems:
                say(f"problem: {problem}")
            return 3
        service.reconciler.listeners.append(after_check)
        say("demo: running; Ctrl-C stops it" if rounds is None else f"demo: running for {rounds} check(s)")
        await stop.wait()
        say("demo: stopping …")
        await service.stop(check_timeout_s=10, flush_timeout_s=3)
        say("demo: stopped")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await emulator.stop()
