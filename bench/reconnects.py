"""Memory over forced stream reconnects: `run` (in this process) streams one Binance and one Bybit account from an
emulator in its own process; every round the emulator closes both sockets (close frame 1001) and reconbot
reconnects with a new ccxt.pro client each. After every ``every`` rounds: resident memory, the ccxt.pro clients
still alive (after a full garbage collection), asyncio tasks and timers. A measurement, not a timed assertion:
tests/test_streams.py holds the assertion that no old client stays alive."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import psutil

from app.service import start_service
from bench.common import Databases, account_entries, accounts_for, emulator_process, scenario
from bench.streams import _until as until
from services.settings import Settings
from services.streams import Backoff, StreamState
from services.venues.binance import BinanceUsdmStream
from services.venues.bybit import BybitStream

RECONNECTS = 100
EVERY = 25


def _sample(after: int) -> dict[str, Any]:
    gc.collect()
    objects = gc.get_objects()
    loop = asyncio.get_running_loop()
    return {
        "reconnects": after,
        "rss_mib": psutil.Process().memory_info().rss / 2**20,
        "binance_clients": sum(isinstance(o, BinanceUsdmStream) for o in objects),
        "bybit_clients": sum(isinstance(o, BybitStream) for o in objects),
        "tasks": len(asyncio.all_tasks()),
        "timers": len(getattr(loop, "_scheduled", ())),
    }


async def run(databases: Databases, reconnects: int = RECONNECTS, every: int = EVERY) -> list[dict[str, Any]]:
    accounts = accounts_for(2)  # one Binance, one Bybit
    async with emulator_process(scenario(accounts, 5)) as emulator, databases.fresh() as url:
        settings = Settings(
            database={"url": url},
            accounts=account_entries(accounts, emulator.urls, streams=True, timeout_s=10),
            scan={"grace_s": 0, "orphan_interval_s": 3600, "reconcile_interval_s": 3600, "stream_grace_s": 3600},
            alerts={"console": False},
            ops={"listen": None},
        )
        service = await start_service(settings, say=lambda _line: None)
        try:
            assert service.streams is not None
            streams = service.streams.streams
            for stream in streams.values():
                stream.backoff = Backoff(first_s=0.05, most_s=0.1)

            async def all_up(connects: int) -> None:
                def up() -> bool:
                    return all(s.state is StreamState.UP and s.connects >= connects for s in streams.values())

                await until(up, 30, f"streams up after {connects - 1} reconnects")

            await all_up(1)
            await service.reconciler.wait_idle(30)
            samples = [_sample(0)]
            for round_number in range(1, reconnects + 1):
                for name in streams:
                    async with emulator.http.delete(f"{emulator.base}/_emulator/{name}/streams") as response:
                        await response.read()
                await all_up(round_number + 1)
                if round_number % every == 0:
                    await service.reconciler.wait_idle(30)  # the reconnect checks are done
                    samples.append(_sample(round_number))
            return samples
        finally:
            await service.stop(check_timeout_s=10, flush_timeout_s=2)
