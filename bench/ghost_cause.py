"""What telling why a ghost vanished costs: the history requests and Binance weight of one reconciliation that
finds 1, 10 and 50 new ghosts per account (liquidations, ADL, stop-losses and manual closes), its wall time,
and the same check without the history reads (a ghost that only says "not found", as the seed's bot wrote it).
A ghost already confirmed costs nothing more: its cause is read once, when it is first confirmed."""

from __future__ import annotations

import time
from typing import Any

from bench.common import Databases, accounts_for, db_rows, emulator_process, markets_for, scenario, settings_for
from services.causes import CloseCause
from services.model import RECONCILIATION
from services.runtime import Runtime

POSITIONS = 100
GHOSTS = (1, 10, 50)
CAUSES = ("liquidation", "adl", "stop_loss", "manual")


async def _close(emulator: Any, account: str, symbol: str, cause: str) -> None:
    body = {"symbol": symbol, "side": "long", "cause": cause}
    async with emulator.http.post(f"{emulator.base}/_emulator/{account}/close", json=body) as response:
        response.raise_for_status()


async def _without_history(*_args: Any) -> CloseCause:
    return CloseCause.unknown("history not read")


async def measure(databases: Databases, ghosts: int) -> dict[str, Any]:
    accounts = accounts_for(2)  # one Binance, one Bybit
    names = [a.name for a in accounts]
    async with (
        emulator_process(scenario(accounts, POSITIONS)) as emulator,
        databases.fresh(db_rows(accounts, POSITIONS)) as url,
    ):
        for account in accounts:
            for index, market in enumerate(markets_for(ghosts)):
                await _close(emulator, account.name, market, CAUSES[index % len(CAUSES)])
        runtime = await Runtime(settings_for(accounts, emulator.urls, url)).start()
        try:
            await runtime.monitor.check(RECONCILIATION)  # warm: markets load once
            for name in names:
                await emulator.clear_requests(name)
            started = time.perf_counter()
            result = await runtime.monitor.check(RECONCILIATION)
            with_history = time.perf_counter() - started
            history_requests = await emulator.total_requests(names, "history")
            binance_weight = await emulator.request_weight(names[0], "history")
            explained = sum(1 for f in result.findings if f.cause is not None and f.cause.closed_at is not None)
            for gateway in runtime.gateways.values():
                gateway.close_cause = _without_history  # type: ignore[method-assign]
            started = time.perf_counter()
            await runtime.monitor.check(RECONCILIATION)
            without = time.perf_counter() - started
        finally:
            await runtime.close()
    return {
        "ghosts_per_account": ghosts,
        "explained": explained,
        "ghosts": len(result.findings),
        "history_requests_per_ghost": history_requests / max(1, len(result.findings)),
        "binance_history_weight": binance_weight,
        "wall_s": with_history,
        "wall_s_without_history": without,
    }


async def run(databases: Databases) -> list[dict[str, Any]]:
    return [await measure(databases, ghosts) for ghosts in GHOSTS]
