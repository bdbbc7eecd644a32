"""reconbot's schedule against the seed's design, for the same accounts.

The seed runs two independent loops — an orphan scan every 5 minutes and a reconciliation every 10 — each
fetching every exchange in turn. Both designs run here for one hour compressed 100 times (3 s and 6 s
loops for 36 s), reading through the same gateway, and the emulator counts the requests. Check wall time
is one pass over all accounts: one after the other (seed) or all at once (reconbot).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.common import Databases, accounts_for, db_rows, emulator_process, scenario, settings_for
from services.model import ALL_KINDS
from services.reconciler import Reconciler
from services.runtime import Runtime
from services.scheduler import CheckScheduler
from services.venues import VenueError

SPEED_UP = 100
ORPHAN_S, RECONCILE_S = 300 / SPEED_UP, 600 / SPEED_UP
HOUR_S = 3600 / SPEED_UP


async def seed_pass(runtime: Runtime) -> None:
    """One iteration of a seed loop: every exchange in turn, then the DB."""
    for gateway in runtime.gateways.values():
        with contextlib.suppress(VenueError):
            await gateway.positions()
    await runtime.repository.active({g.account.db_exchange or "" for g in runtime.gateways.values()})


async def seed_hour(runtime: Runtime) -> None:
    async def loop(interval: float) -> None:
        while True:
            started = time.monotonic()
            await seed_pass(runtime)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    tasks = [asyncio.create_task(loop(ORPHAN_S)), asyncio.create_task(loop(RECONCILE_S))]
    await asyncio.sleep(HOUR_S)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def reconbot_hour(runtime: Runtime) -> None:
    scan = runtime.settings.scan.model_copy(
        update={"orphan_interval_s": ORPHAN_S, "reconcile_interval_s": RECONCILE_S, "jitter_s": 0}
    )
    scheduler = CheckScheduler(Reconciler(runtime, []), scan)
    scheduler.start()
    await asyncio.sleep(HOUR_S)
    scheduler.shutdown()
    await scheduler.wait_running(30)


async def measure(databases: Databases, n_accounts: int, n_positions: int, hour: bool) -> dict[str, Any]:
    accounts = accounts_for(n_accounts)
    names = [a.name for a in accounts]
    row: dict[str, Any] = {"accounts": n_accounts, "positions_per_account": n_positions}
    async with (
        emulator_process(scenario(accounts, n_positions)) as emulator,
        databases.fresh(db_rows(accounts, n_positions)) as url,
    ):
        runtime = await Runtime(settings_for(accounts, emulator.urls, url)).start()
        try:
            await runtime.monitor.check(ALL_KINDS)  # warm both designs' clients the same way
            started = time.perf_counter()
            await seed_pass(runtime)
            row["seed_check_wall_s"] = time.perf_counter() - started
            started = time.perf_counter()
            await runtime.monitor.check(ALL_KINDS)
            row["reconbot_check_wall_s"] = time.perf_counter() - started
            if hour:
                for design, hour_run in (("seed", seed_hour), ("reconbot", reconbot_hour)):
                    for name in names:
                        await emulator.clear_requests(name)
                    await hour_run(runtime)
                    row[f"{design}_requests_per_hour"] = await emulator.total_requests(names)
        finally:
            await runtime.close()
    row["check_wall_ratio"] = row["reconbot_check_wall_s"] / row["seed_check_wall_s"]
    if hour:
        row["requests_per_hour_ratio"] = row["reconbot_requests_per_hour"] / row["seed_requests_per_hour"]
    return row


async def run(databases: Databases, quick: bool = False) -> list[dict[str, Any]]:
    rows = [await measure(databases, 10, 100, hour=True)]
    print(f"  seed comparison, 10 accounts: {rows[-1]['requests_per_hour_ratio']:.2f}× the requests", flush=True)
    if not quick:
        rows.append(await measure(databases, 100, 100, hour=False))
        print(f"  seed comparison, 100 accounts: {rows[-1]['check_wall_ratio']:.2f}× the wall time", flush=True)
    return rows
