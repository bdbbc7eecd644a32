"""The idle footprint of `python main.py run` with 10 accounts: resident memory, CPU per minute and database
transactions per minute between checks, and what the memory is made of (each library's import, measured in a
fresh interpreter)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import yaml

from bench.common import ROOT, Databases, account_entries, accounts_for, db_rows, emulator_process, scenario
from emulator.telegram import BotApiEmulator

TOKEN = "123456:FOOTPRINT"
WARM_UP_S = 20
POSITIONS = 20  # per account
SAMPLE_S = 60
IMPORTS = {
    "python + psutil": "",
    "aiohttp": "import aiohttp",
    "pydantic-settings": "import pydantic_settings",
    "asyncpg": "import asyncpg",
    "APScheduler": "import apscheduler.schedulers.asyncio",
    "prometheus-client": "import prometheus_client",
    "ccxt (async)": "import ccxt.async_support",
    "aiogram": "import aiogram, aiogram.types",
    "everything `run` imports": "import app.service",
}


def import_rss_mib() -> dict[str, float]:
    """Resident memory of a fresh interpreter after each import alone."""
    sizes = {}
    for name, statement in IMPORTS.items():
        code = f"{statement}\nimport psutil\nprint(psutil.Process().memory_info().rss)"
        output = subprocess.run(  # noqa: S603 - our own interpreter and statements
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        sizes[name] = int(output.strip()) / 2**20
    return sizes


async def idle_run(
    databases: Databases, accounts: int = 10, sample_s: int = SAMPLE_S, *, streams: bool | None = None
) -> dict[str, Any]:
    """Resident memory and CPU of an idle `python main.py run` under the default intervals. ``streams`` None:
    the accounts have no WebSocket base URL (they poll, as in every run before live streams); True / False:
    each account has one and ``scan.streams`` says whether it is used."""
    bench_accounts = accounts_for(accounts)
    telegram = BotApiEmulator(token=TOKEN)
    await telegram.start()
    open_streams = None
    try:
        # the trading bot's table agrees with the venues: no drift, nothing to announce, the process at rest
        async with (
            emulator_process(scenario(bench_accounts, POSITIONS)) as emulator,
            databases.fresh(db_rows(bench_accounts, POSITIONS)) as url,
        ):
            config: dict[str, Any] = {
                "database": {"url": url},
                "accounts": account_entries(bench_accounts, emulator.urls, streams=streams is not None),
                "telegram": {"api_base_url": telegram.base_url, "alert_chat_ids": [1], "operators": [1]},
                "alerts": {"console": False},
                "ops": {"listen": "127.0.0.1:0"},
            }
            if streams is not None:
                config["scan"] = {"streams": streams}
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "config.yaml"
                path.write_text(yaml.safe_dump(config))
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "main.py",
                    "run",
                    "--config",
                    str(path),
                    cwd=ROOT,
                    env={**os.environ, "RECONBOT_TELEGRAM__TOKEN": TOKEN},
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                try:
                    assert process.stdout is not None
                    while b"reconbot running" not in await asyncio.wait_for(process.stdout.readline(), 120):
                        pass
                    await asyncio.sleep(WARM_UP_S)
                    if streams is not None:
                        open_streams = await emulator.total_open_streams(a.name for a in bench_accounts)
                    watched = psutil.Process(process.pid)
                    cpu_start = sum(watched.cpu_times()[:2])
                    transactions_start = await transactions(url)
                    rss = []
                    for _ in range(sample_s):
                        rss.append(watched.memory_info().rss / 2**20)
                        await asyncio.sleep(1)
                    cpu_used = sum(watched.cpu_times()[:2]) - cpu_start
                    transactions_used = await transactions(url) - transactions_start
                finally:
                    process.terminate()
                    await asyncio.wait_for(process.wait(), 60)
    finally:
        await telegram.stop()
    return {
        "accounts": accounts,
        "open_streams": open_streams,
        "rss_mib_median": statistics.median(rss),
        "rss_mib_max": max(rss),
        "cpu_s_per_minute": cpu_used * 60 / sample_s,
        "db_transactions_per_minute": transactions_used * 60 / sample_s,
        "exit_code": process.returncode,
    }


async def transactions(url: str) -> int:
    """Transactions the database has counted so far (PostgreSQL reports a backend's counts within a second or
    so of its going idle, which a one-minute sample absorbs)."""
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await conn.close()


async def run(databases: Databases, accounts: int = 10, sample_s: int = SAMPLE_S) -> dict[str, Any]:
    measured = await idle_run(databases, accounts, sample_s)
    measured.pop("open_streams")
    return {**measured, "import_rss_mib": import_rss_mib()}
