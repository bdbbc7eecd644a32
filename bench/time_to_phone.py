"""How soon an orphan reaches a phone: from the moment the emulator starts reporting a new position to the
moment the loopback Bot API receives its alert, through the real `run` pipeline (scheduler, confirmation,
findings, outbox, aiogram)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

from app.service import start_service
from bench.common import Databases, account_entries, accounts_for, scenario
from emulator.exchange import ExchangeEmulator
from emulator.telegram import BotApiEmulator
from services.settings import Settings

TOKEN = "123456:BENCH"
CHAT = 4242
SHORT = {"orphan_interval_s": 2, "reconcile_interval_s": 4, "grace_s": 0, "verify_delay_s": 0.5, "jitter_s": 0}
DEFAULT = {"orphan_interval_s": 300, "reconcile_interval_s": 600, "grace_s": 60, "verify_delay_s": 2, "jitter_s": 3}


def expected_latency_s(scan: dict[str, float]) -> tuple[float, float]:
    """From the schedule alone: a position is reported by the first scan at which it is older than the grace
    window, so the wait is grace + up to one interval (+ jitter), then the confirming read."""
    grace, interval = scan["grace_s"], scan["orphan_interval_s"]
    return grace + interval / 2 + scan["verify_delay_s"], grace + interval + scan["jitter_s"] + scan["verify_delay_s"]


async def _latencies(databases: Databases, scan: dict[str, float], samples: int, parallel: bool) -> list[float]:
    accounts = accounts_for(samples if parallel else 1)
    emulator = ExchangeEmulator.from_scenario(scenario(accounts, 0))
    emulator.add_synthetic_markets("bybit", samples)
    emulator.add_synthetic_markets("binance", samples)
    telegram = BotApiEmulator(token=TOKEN)
    await emulator.start()
    await telegram.start()
    try:
        async with databases.fresh() as url:
            settings = Settings(
                database={"url": url},
                accounts=account_entries(
                    accounts, {a.name: emulator.account(a.name).base_url for a in accounts}, timeout_s=10
                ),
                scan=scan,
                telegram={
                    "token": TOKEN,
                    "api_base_url": telegram.base_url,
                    "alert_chat_ids": [CHAT],
                    "operators": [CHAT],
                },
                alerts={"console": False},
                ops={"listen": None},
            )
            service = await start_service(settings, say=lambda _: None)
            try:
                await asyncio.sleep(1)

                async def one(index: int) -> float:
                    account = emulator.account(accounts[index if parallel else 0].name)
                    market = f"SYN{index + 1:04d}USDT"
                    await asyncio.sleep(random.uniform(0, scan["orphan_interval_s"]))
                    account.set_position(market, "long", "3")
                    appeared = time.monotonic()
                    await telegram.wait_until(
                        lambda: any(market in m.text for m in telegram.messages(CHAT)),
                        timeout=scan["grace_s"] + 2 * scan["orphan_interval_s"] + 60,
                    )
                    message = next(m for m in telegram.messages(CHAT) if market in m.text)
                    return message.sent_at - appeared

                if parallel:
                    return list(await asyncio.gather(*(one(i) for i in range(samples))))
                return [await one(i) for i in range(samples)]
            finally:
                await service.stop(flush_timeout_s=2)
    finally:
        await telegram.stop()
        await emulator.stop()


def _summary(name: str, scan: dict[str, float], latencies: list[float]) -> dict[str, Any]:
    median_expected, worst_expected = expected_latency_s(scan)
    return {
        "intervals": name,
        "orphan_interval_s": scan["orphan_interval_s"],
        "grace_s": scan["grace_s"],
        "samples": len(latencies),
        "median_s": statistics.median(latencies) if latencies else None,
        "worst_s": max(latencies) if latencies else None,
        "expected_median_s": median_expected,
        "expected_worst_s": worst_expected,
    }


async def run(databases: Databases, samples: int = 7, default_samples: int = 0) -> list[dict[str, Any]]:
    rows = [_summary("short", SHORT, await _latencies(databases, SHORT, samples, parallel=False))]
    print(f"  time to phone, short intervals: median {rows[-1]['median_s']:.2f}s", flush=True)
    default = await _latencies(databases, DEFAULT, default_samples, parallel=True) if default_samples else []
    rows.append(_summary("default", DEFAULT, default))
    return rows
