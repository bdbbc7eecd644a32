"""Thousands of accounts on one machine, and two replicas sharing them.

1. One full check of 1,000 accounts × 100 positions and 5,000 × 10 (half Binance, half Bybit) against the
   emulator in its own process: wall time, CPU, peak resident memory of this process, open files, requests,
   and how long the same round takes under the default request budget (the budget is lifted for the
   measurement, so the figure is the machine's cost, and the budget's bound is computed from the weight spent).
2. Two `run` replicas on one database, 20 accounts, 4 shards: how many times each account is read per round
   with both up, and after `kill -9` of one, how long until the survivor holds every shard and has read every
   account of the dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

from bench.common import (
    ROOT,
    UNLIMITED_BUDGET,
    Databases,
    account_entries,
    accounts_for,
    db_rows,
    emulator_process,
    scenario,
    settings_for,
)
from services.model import ALL_KINDS
from services.runtime import Runtime
from services.settings import VenuesSettings
from services.shards import shard_of
from services.venues.budget import LIMITS

CASES = ((1000, 100), (5000, 10))
QUICK_CASES = ((1000, 100),)


async def _peak_rss(process: psutil.Process, stop: asyncio.Event) -> int:
    peak = process.memory_info().rss
    while not stop.is_set():
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.05)
    return max(peak, process.memory_info().rss)


async def check_cost(databases: Databases, n_accounts: int, n_positions: int) -> dict[str, Any]:
    accounts = accounts_for(n_accounts)
    names = [a.name for a in accounts]
    me = psutil.Process()
    async with (
        emulator_process(scenario(accounts, n_positions)) as emulator,
        databases.fresh(db_rows(accounts, n_positions)) as url,
    ):
        settings = settings_for(accounts, emulator.urls, url)
        venues = VenuesSettings(binanceusdm=UNLIMITED_BUDGET, bybit=UNLIMITED_BUDGET)
        database = settings.database.model_copy(update={"pool_size": 20})
        settings = settings.model_copy(update={"venues": venues, "database": database})
        runtime = await Runtime(settings).start()
        try:
            await runtime.monitor.check(ALL_KINDS)  # warm: markets load once per endpoint
            for name in names:
                await emulator.clear_requests(name)
            gc.collect()
            gc.freeze()  # as `run` does after start-up: what lives as long as the process is not walked again
            budgets = list(runtime.endpoints.budgets.values()) if runtime.endpoints else []
            spent_before = {b.venue: b.spent for b in budgets}
            stop = asyncio.Event()
            sampler = asyncio.create_task(_peak_rss(me, stop))
            wall, cpu = time.perf_counter(), time.process_time()
            result = await runtime.monitor.check(ALL_KINDS)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            stop.set()
            peak = await sampler
            files = me.num_fds()
            assert not result.unchecked, [a.error for a in result.unchecked][:3]
            assert not result.findings, "the benchmark books must match"
            requests = await emulator.total_requests(names)
            spent = {b.venue: b.spent - spent_before[b.venue] for b in budgets}
        finally:
            await runtime.close()
            gc.unfreeze()
    # the same round under the default budget (half of each venue's per-IP limit)
    bounded = max(
        (spent[venue] / (LIMITS[venue].capacity * 0.5) * LIMITS[venue].window_s for venue in spent), default=0.0
    )
    return {
        "accounts": n_accounts,
        "positions_per_account": n_positions,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": peak / 2**20,
        "open_files": files,
        "requests": requests,
        "binance_weight": spent.get("binanceusdm", 0.0),
        "bybit_requests": spent.get("bybit", 0.0),
        "round_at_default_budget_s": bounded,
    }


# -- two replicas ------------------------------------------------------------------------------------------------


def _replica_config(folder: Path, name: str, url: str, accounts: Any, urls: dict[str, str]) -> Path:
    config = {
        "database": {"url": url},
        "accounts": account_entries(accounts, urls, timeout_s=30),
        # one job a round (the reconciliation runs at start only), so reads per round count one per account
        "scan": {"orphan_interval_s": 4, "reconcile_interval_s": 3600, "jitter_s": 0, "grace_s": 0},
        "scale": {"shards": 4, "claim_interval_s": 2},
        "alerts": {"console": False},
        "ops": {"listen": "127.0.0.1:0"},
        # the figures are the replicas', not the budget's
        "venues": {"binanceusdm": UNLIMITED_BUDGET, "bybit": UNLIMITED_BUDGET},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def _start(path: Path) -> tuple[asyncio.subprocess.Process, int, asyncio.Task[None]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "run", "--config", str(path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    port = None
    async with asyncio.timeout(60):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError("replica ended at start-up")
            match = re.search(r"/metrics on [\d.]+:(\d+)", line)
            if match:
                port = int(match.group(1))
            if "reconbot running" in line:
                break

    async def drain() -> None:
        while await process.stdout.readline():  # type: ignore[union-attr]
            pass

    assert port is not None
    return process, port, asyncio.create_task(drain())


async def _held(http: aiohttp.ClientSession, port: int) -> list[int]:
    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
        return (await response.json()).get("shards", {}).get("held", [])


async def replicas(databases: Databases) -> dict[str, Any]:
    accounts = accounts_for(20)
    names = [a.name for a in accounts]
    async with emulator_process(scenario(accounts, 10)) as emulator, databases.fresh(db_rows(accounts, 10)) as url:
        with tempfile.TemporaryDirectory() as folder:
            first = await _start(_replica_config(Path(folder), "a", url, accounts, emulator.urls))
            second = await _start(_replica_config(Path(folder), "b", url, accounts, emulator.urls))
            processes = [first[0], second[0]]
            try:
                async with aiohttp.ClientSession() as http:

                    async def balanced() -> bool:
                        held = [await _held(http, first[1]), await _held(http, second[1])]
                        return [len(h) for h in held] == [2, 2] and sorted(held[0] + held[1]) == [0, 1, 2, 3]

                    await _until(balanced, 30)
                    for name in names:
                        await emulator.clear_requests(name)
                    window = 12.0
                    await asyncio.sleep(window)
                    reads = [
                        await emulator.request_count(name, "positions") / (1 if name.startswith("binance") else 3)
                        for name in names
                    ]
                    held_by_first = await _held(http, first[1])
                    lost = [a.name for a in accounts if shard_of(a.name, 4) in held_by_first]
                    for name in lost:
                        await emulator.clear_requests(name)
                    killed = time.monotonic()
                    first[0].send_signal(signal.SIGKILL)
                    await first[0].wait()

                    async def all_held() -> bool:
                        return await _held(http, second[1]) == [0, 1, 2, 3]

                    async def all_read() -> bool:
                        return all([await emulator.request_count(n, "positions") for n in lost])

                    await _until(all_held, 60)
                    taken = time.monotonic() - killed
                    await _until(all_read, 60)
                    read = time.monotonic() - killed
            finally:
                for process in processes:
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(process.wait(), 30)
                    if process.returncode is None:
                        process.kill()
                for task in (first[2], second[2]):
                    task.cancel()
    return {
        "accounts": len(names),
        "shards": 4,
        "claim_interval_s": 2,
        "interval_s": 4,
        "rounds": window / 4,
        "reads_per_account_min": min(reads),
        "reads_per_account_max": max(reads),
        "accounts_of_the_killed_replica": len(lost),
        "shards_taken_over_s": taken,
        "all_its_accounts_read_s": read,
    }


async def _until(condition: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.1)


async def run(databases: Databases, quick: bool = False) -> dict[str, Any]:
    return {
        "checks": [await check_cost(databases, a, p) for a, p in (QUICK_CASES if quick else CASES)],
        "replicas": await replicas(databases),
    }
