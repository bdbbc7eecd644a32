"""What one full check costs: wall time, CPU time, peak Python memory, exchange requests and Binance request weight
(positions and protective orders), for 1, 10 and 100 accounts × 10, 100 and 1 000 positions each, against the
emulator (in its own process) and real PostgreSQL."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from typing import Any

from bench.common import Databases, accounts_for, db_rows, emulator_process, scenario, settings_for
from services.model import ALL_KINDS
from services.runtime import Runtime

ACCOUNTS = (1, 10, 100)
POSITIONS = (10, 100, 1000)
REPEATS = 3


async def measure(databases: Databases, n_accounts: int, n_positions: int) -> dict[str, Any]:
    accounts = accounts_for(n_accounts)
    names = [a.name for a in accounts]
    async with (
        emulator_process(scenario(accounts, n_positions)) as emulator,
        databases.fresh(db_rows(accounts, n_positions)) as url,
    ):
        runtime = await Runtime(settings_for(accounts, emulator.urls, url)).start()
        try:
            await runtime.monitor.check(ALL_KINDS)  # warm: markets and Binance's leverage brackets load once
            for name in names:
                await emulator.clear_requests(name)
            walls, cpus = [], []
            for _ in range(REPEATS):
                wall, cpu = time.perf_counter(), time.process_time()
                result = await runtime.monitor.check(ALL_KINDS)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            assert not result.unchecked and not result.findings, "the benchmark books must match"
            requests = await emulator.total_requests(names) / REPEATS
            positions_requests = await emulator.total_requests(names, "positions") / REPEATS
            order_requests = await emulator.total_requests(names, "open_orders") / REPEATS
            binance = [a.name for a in accounts if a.venue == "binance"]
            binance_weight = await emulator.total_weight(binance) / REPEATS
            binance_order_weight = await emulator.total_weight(binance, "open_orders") / REPEATS
            tracemalloc.start()
            await runtime.monitor.check(ALL_KINDS)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        finally:
            await runtime.close()
    # Binance reads one category (USDⓈ-M), Bybit three (linear USDT, linear USDC, inverse).
    categories = sum(1 if a.venue == "binance" else 3 for a in accounts)
    return {
        "accounts": n_accounts,
        "positions_per_account": n_positions,
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "peak_mib": peak / 2**20,
        "requests": requests,
        "positions_requests": positions_requests,
        "positions_requests_per_category": positions_requests / categories,
        "order_requests": order_requests,
        "binance_weight_per_account": binance_weight / max(len(binance), 1),
        "binance_order_weight_per_account": binance_order_weight / max(len(binance), 1),
    }


async def run(databases: Databases, quick: bool = False) -> list[dict[str, Any]]:
    rows = []
    for n_accounts in ACCOUNTS:
        for n_positions in POSITIONS:
            if quick and n_accounts * n_positions > 10_000:
                continue
            rows.append(await measure(databases, n_accounts, n_positions))
            print(
                f"  check {n_accounts:>3} accounts × {n_positions:>4} positions: "
                f"{rows[-1]['wall_s'] * 1000:8.1f} ms wall",
                flush=True,
            )
    return rows
