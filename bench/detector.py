"""The detector alone: 10 000 DB rows against 10 000 exchange positions with 1 % drift."""

from __future__ import annotations

import gc
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.detector import DetectionRules, detect
from services.model import DbPosition, ExchangePosition, FindingKind, Side

SIZE = 10_000
DRIFT = 0.01
RUNS = 9


def books(size: int = SIZE, drift: float = DRIFT) -> tuple[list[DbPosition], list[ExchangePosition]]:
    """Equal books except every 1/drift-th key: a third of those orphans, a third ghosts, a third mismatches."""
    opened = datetime.now(UTC) - timedelta(hours=2)
    step = int(1 / drift)
    db, exchange = [], []
    for index in range(size):
        market = f"SYN{index:05d}USDT"
        side = Side.LONG if index % 2 else Side.SHORT
        account = f"acct-{index % 10}"
        odd = index % step == 0
        kind = (index // step) % 3
        if not (odd and kind == 0):
            db.append(
                DbPosition(
                    str(index),
                    account,
                    "bybit",
                    "bybit",
                    market,
                    market,
                    side,
                    Decimal("2.5") if odd and kind == 2 else Decimal("1.5"),
                    opened_at=opened,
                )
            )
        if not (odd and kind == 1):
            exchange.append(
                ExchangePosition(
                    account, "bybit", market, market, side, Decimal("1.5"), amount_step=Decimal("0.1"), opened_at=opened
                )
            )
    return db, exchange


def run() -> dict[str, Any]:
    db, exchange = books()
    rules = DetectionRules(timedelta(seconds=60), Decimal("0.001"))
    now = datetime.now(UTC)
    detect(db, exchange, rules, now)  # warm-up
    times = []
    for _ in range(RUNS):
        gc.collect()  # a collection of the previous run's garbage is not the detector's cost
        started = time.perf_counter()
        detection = detect(db, exchange, rules, now)
        times.append(time.perf_counter() - started)
    kinds = {kind.value: sum(f.kind is kind for f in detection.findings) for kind in FindingKind}
    return {
        "db_rows": len(db),
        "exchange_positions": len(exchange),
        "findings": kinds,
        "median_ms": statistics.median(times) * 1000,
        "worst_ms": max(times) * 1000,
    }
