"""Live private streams on and off, side by side, under the default intervals (orphan scan every 300 s,
reconciliation every 600 s, grace 60 s, confirming read 2 s later, jitter 3 s):

a. time to phone — from the emulator's position change (made through its control API) to the loopback Bot API
   receiving the alert, through the real `run` pipeline (`start_service`: streams, triggered checks,
   confirmation, findings, outbox, aiogram), for a vanished position (ghost: liquidated), a partly closed one
   (quantity mismatch: half of it liquidated) and a new orphan, each alone on its account, and the ghost and
   the partial close as bursts (every account of the burst changed at the same moment, as a market move does).
   With streams on every figure is measured, one account per sample; with streams off the alert waits for the
   schedule (minutes per sample), so those figures are the schedule's, as in bench/time_to_phone.py, not
   measured;
b. exchange REST requests per hour of idle accounts whose books match, streams up vs polling only, counted by
   the emulator; the schedule is compressed identically in both modes and the count extrapolated back;
c. resident memory and CPU of an idle `python main.py run` with 10 streaming vs 10 polling accounts.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from app.service import Service, start_service
from bench import footprint
from bench.common import (
    OPENED_MS,
    Databases,
    Emulator,
    account_entries,
    accounts_for,
    db_rows,
    emulator_process,
    scenario,
    settings_for,
    with_streams,
)
from bench.time_to_phone import DEFAULT, expected_latency_s
from emulator.telegram import BotApiEmulator
from services.settings import ScanSettings, Settings
from services.streams import StreamState
from services.triggers import GRACE_MARGIN_S
from services.venues.binance import BinanceUsdm

TOKEN = "123456:STREAMS"
CHAT = 4343
POSITIONS = 10  # every account holds these, matching the DB, besides the sample's own market
SAMPLE_MARKET = 101  # sample i changes SYN{101 + i}USDT: one market per sample, so its alert is unmistakable
SAMPLE_SIZE = "3"
CASES = ("ghost", "partial", "orphan", "ghost burst", "partial burst")  # in the order of their accounts
ALERT = {
    "ghost": "GHOST",
    "partial": "QUANTITY MISMATCH",
    "orphan": "ORPHAN",
    "ghost burst": "GHOST",
    "partial burst": "QUANTITY MISMATCH",
}
SPACING_S = 3.0  # between two samples: longer than one confirmed check (2 s confirming read + reads + history)
STREAM_SETTLE_S = ScanSettings().stream_settle_s  # an event waits this long for a burst to settle
LISTEN_KEY = "/fapi/v1/listenKey"
SCALE = 40  # part b: the default intervals ÷ 40 (orphan 7.5 s, reconciliation 15 s) in both modes
WINDOW_S = 30.0  # ... for 30 s of wall time = 20 minutes of the default schedule


def _market(index: int) -> str:
    return f"SYN{SAMPLE_MARKET + index:04d}USDT"


async def _until(condition: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {within_s:g}s")
        await asyncio.sleep(0.05)


async def _settled(service: Service, streaming: bool, within_s: float = 90) -> None:
    """Start-up checks done, every stream up (when on) and its connect check run, nothing under way."""
    names = list(service.runtime.gateways)
    if streaming:
        assert service.streams is not None
        streams = service.streams.streams
        await _until(
            lambda: all(s.state is StreamState.UP for s in streams.values()) and len(streams) == len(names),
            within_s,
            f"streams up: {sum(s.state is StreamState.UP for s in streams.values())} of {len(names)}",
        )
    assert service.checks is not None
    checks = service.checks
    await _until(lambda: service.scheduler.runs >= 2, within_s, "start-up checks not run")
    await _until(lambda: all(checks.due_in(n) is None for n in names), within_s, "connect checks still due")
    await service.scheduler.wait_running(within_s)
    await service.reconciler.wait_idle(within_s)


# -- a. time to phone --------------------------------------------------------------------------------------------


async def _close(emulator: Emulator, account: str, market: str, qty: str | None = None) -> float:
    """Liquidate the sample position (all of it, or ``qty``); returns the moment just before the change."""
    assert emulator.http is not None
    body = {"symbol": market, "side": "long", "cause": "liquidation", **({"qty": qty} if qty else {})}
    changed = time.monotonic()
    async with emulator.http.post(f"{emulator.base}/_emulator/{account}/close", json=body) as response:
        response.raise_for_status()
    return changed


async def _open(emulator: Emulator, account: str, market: str) -> float:
    """A new position on the exchange through the control API's positions resource (the book is replaced
    with itself plus the new one; the held positions keep their times); returns the moment before the change."""
    assert emulator.http is not None
    url = f"{emulator.base}/_emulator/{account}/positions"
    async with emulator.http.get(url) as response:
        held = [{k: v for k, v in p.items() if k != "updated_ms"} for p in await response.json()]
    changed = time.monotonic()
    body = [*held, {"symbol": market, "side": "long", "size": SAMPLE_SIZE}]
    async with emulator.http.put(url, json=body) as response:
        response.raise_for_status()
    return changed


def _phone_plan(per_venue: int) -> list[tuple[float, str, int]]:
    """(seconds from the first change, case, sample index). The isolated samples are SPACING_S apart, and so
    are the checks that alert them (the ghosts' at once, the partial closes' and orphans' a grace window
    later): the reconciler runs one check at a time, its confirming read included, and the chat takes one
    message a second, so samples closer together would time each other's queue. The bursts change every one
    of their accounts at the same moment, as a market move does: the ghost burst while nothing else alerts,
    just after an isolated orphan's first (short) check; the partial burst just after the last isolated change,
    so that its first checks run before, and its grace re-checks after, the isolated ones (n ≤ 10 keeps the
    grace re-checks clear of the isolated first checks)."""
    n = 2 * per_venue  # accounts alternate Binance, Bybit
    plan = [(SPACING_S * i, "ghost", i) for i in range(n)]
    start = SPACING_S * n
    for i in range(n):
        plan.append((start + 2 * SPACING_S * i, "partial", n + i))
        plan.append((start + 2 * SPACING_S * i + SPACING_S, "orphan", 2 * n + i))
    plan += [(start + SPACING_S / 2, "ghost burst", 3 * n + i) for i in range(n)]
    last = start + 2 * SPACING_S * (n - 1) + SPACING_S
    plan += [(last + SPACING_S / 2, "partial burst", 4 * n + i) for i in range(n)]
    return plan


async def time_to_phone(databases: Databases, per_venue: int = 5) -> dict[str, Any]:
    """Streams on, measured: one account per sample, n accounts per case in the order of CASES (n = 2 ×
    per_venue, half of them Binance)."""
    samples = 2 * per_venue
    accounts = accounts_for(len(CASES) * samples)
    data = scenario(accounts, POSITIONS)
    data["synthetic_markets"] = {"binance": SAMPLE_MARKET + len(accounts), "bybit": SAMPLE_MARKET + len(accounts)}
    rows = db_rows(accounts, POSITIONS)
    for index, (account, entry) in enumerate(zip(accounts, data["accounts"], strict=True)):
        entry["protective_orders"] = []  # no stray-order alerts once a ghost's stop is left behind
        if CASES[index // samples] != "orphan":  # a tracked position to liquidate
            entry["positions"].append(
                {"symbol": _market(index), "side": "long", "size": SAMPLE_SIZE, "opened_ms": OPENED_MS}
            )
            exchange = "binance" if account.venue == "binance" else "bybit"
            price = Decimal(10) + Decimal(SAMPLE_MARKET + index) / 100
            rows.append((exchange, account.name, _market(index), "long", Decimal(SAMPLE_SIZE), price, "active"))
    telegram = BotApiEmulator(token=TOKEN)
    await telegram.start()
    try:
        async with emulator_process(data) as emulator, databases.fresh(rows) as url:
            settings = Settings(
                database={"url": url},
                accounts=account_entries(accounts, emulator.urls, streams=True, timeout_s=10),
                scan={**DEFAULT, "require_stop_loss": False},
                telegram={
                    "token": TOKEN,
                    "api_base_url": telegram.base_url,
                    "alert_chat_ids": [CHAT],
                    "operators": [CHAT],
                },
                alerts={"console": False},
                ops={"listen": None},
            )
            started = time.monotonic()
            service = await start_service(settings, say=lambda _: None)
            try:
                await _settled(service, streaming=True)
                settle_s = time.monotonic() - started
                assert service.streams is not None and service.checks is not None
                scheduled_before, triggered_before = service.scheduler.runs, service.checks.runs
                first = time.monotonic() + 0.5

                async def one(offset: float, case: str, index: int) -> dict[str, Any]:
                    account, market = accounts[index].name, _market(index)
                    await asyncio.sleep(max(0.0, first + offset - time.monotonic()))
                    if case == "orphan":
                        changed = await _open(emulator, account, market)
                    else:
                        changed = await _close(emulator, account, market, "1.5" if case.startswith("partial") else None)
                    sample = {"case": case, "venue": accounts[index].venue, "latency_s": None, "as_expected": None}
                    try:
                        await telegram.wait_until(
                            lambda: any(market in m.text for m in telegram.messages(CHAT)),
                            timeout=DEFAULT["grace_s"] + 60,
                        )
                    except TimeoutError:
                        return sample  # no alert: counted as missing
                    message = next(m for m in telegram.messages(CHAT) if market in m.text)
                    sample["latency_s"] = message.sent_at - changed
                    sample["as_expected"] = ALERT[case] in message.text.upper()
                    return sample

                measured = await asyncio.gather(*(one(*step) for step in _phone_plan(per_venue)))
                streams = service.streams.streams.values()
                health = {
                    "settle_s": settle_s,
                    "streams_up": sum(s.state is StreamState.UP for s in streams),
                    "streams": len(streams),
                    "reconnects": sum(max(0, s.connects - 1) for s in streams),
                    "scheduled_checks_meanwhile": service.scheduler.runs - scheduled_before,
                    "triggered_checks": service.checks.runs - triggered_before,
                    "alerts_of_another_kind": sum(m["as_expected"] is False for m in measured),
                }
            finally:
                await service.stop(flush_timeout_s=2)
    finally:
        await telegram.stop()
    return {"samples": list(measured), "health": health}


def _design_floor_s(case: str) -> float:
    """With streams, one account alone (plus the REST reads): the event settles (stream_settle_s) and the check
    it triggers reads the account; the stream's announcement counts as the first sighting, so a ghost is
    confirmed by that one read. A partial close or an orphan is young for grace_s after the venue's change:
    the account is re-checked GRACE_MARGIN_S after the window ends, and that check, triggered by no event,
    confirms with a second read verify_delay_s later."""
    if case.startswith("ghost"):
        return STREAM_SETTLE_S
    return STREAM_SETTLE_S + DEFAULT["grace_s"] + GRACE_MARGIN_S + DEFAULT["verify_delay_s"]


def _schedule(case: str) -> tuple[float, float]:
    """Polling only: a ghost and a quantity mismatch wait for the reconciliation, an orphan for the orphan scan;
    the partial close and the orphan must first be older than the grace window. One check reads every account
    at once, so a burst waits as long as one ghost."""
    interval = DEFAULT["orphan_interval_s" if case == "orphan" else "reconcile_interval_s"]
    grace = 0 if case.startswith("ghost") else DEFAULT["grace_s"]
    return expected_latency_s({**DEFAULT, "orphan_interval_s": interval, "grace_s": grace})


def phone_rows(measured: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in CASES:
        for venue in ("binance", "bybit"):
            taken = [s for s in measured["samples"] if s["case"] == case and s["venue"] == venue]
            latencies = [s["latency_s"] for s in taken if s["latency_s"] is not None]
            median = statistics.median(latencies) if latencies else None
            rows.append(
                {
                    "case": case,
                    "venue": venue,
                    "streams": "on",
                    "figures": "measured",
                    "samples": len(latencies),
                    "missing": len(taken) - len(latencies),
                    "median_s": median,
                    "worst_s": max(latencies) if latencies else None,
                    "design_s": _design_floor_s(case),
                    "target": f"p50 ≤ {DEFAULT['grace_s'] + 5:g}" if case == "orphan" else None,
                    "met": ("yes" if median is not None and median <= DEFAULT["grace_s"] + 5 else "NO")
                    if case == "orphan"
                    else None,
                    "latencies_s": sorted(round(latency, 3) for latency in latencies),
                }
            )
        median, worst = _schedule(case)
        rows.append(
            {
                "case": case,
                "venue": "both",
                "streams": "off",
                "figures": "schedule",
                "samples": 0,
                "missing": None,
                "median_s": median,
                "worst_s": worst,
                "design_s": None,
                "target": None,
                "met": None,
            }
        )
    return rows


# -- b. REST requests per hour -------------------------------------------------------------------------------


async def _requests_of(emulator: Emulator, names: list[str]) -> list[dict[str, Any]]:
    return [r for batch in await asyncio.gather(*(emulator.requests(n) for n in names)) for r in batch]


async def requests_per_hour(
    databases: Databases, accounts: int = 10, positions: int = 10, scale: int = SCALE, window_s: float = WINDOW_S
) -> list[dict[str, Any]]:
    """The same idle accounts polled only, then streaming. The default intervals are divided by ``scale`` in
    both modes (jitter 0) and a ``window_s`` window is counted, starting halfway between two orphan scans:
    it holds exactly window_s × scale seconds of the default schedule, extrapolated to an hour. What the
    streams cost on a wall clock (listenKey keep-alives, reconnects) is not compressed: the window shows none,
    the keep-alives are added from the code's period, and a start's (or reconnect's) cost is measured apart."""
    bench_accounts = accounts_for(accounts)
    names = [a.name for a in bench_accounts]
    binance = sum(a.venue == "binance" for a in bench_accounts)
    scan = {
        **DEFAULT,
        "orphan_interval_s": DEFAULT["orphan_interval_s"] / scale,
        "reconcile_interval_s": DEFAULT["reconcile_interval_s"] / scale,
        "jitter_s": 0,
    }
    rows = []
    async with emulator_process(scenario(bench_accounts, positions)) as emulator:
        for mode in ("off", "on"):
            async with databases.fresh(db_rows(bench_accounts, positions)) as url:
                settings = with_streams(settings_for(bench_accounts, emulator.urls, url, **scan, streams=mode == "on"))
                for name in names:
                    await emulator.clear_requests(name)
                service = await start_service(settings, say=lambda _: None)
                try:
                    await _settled(service, streaming=mode == "on")
                    startup = await _requests_of(emulator, names)
                    assert service.checks is not None
                    next_scan = service.scheduler.next_runs()["orphan scan"]
                    assert next_scan is not None
                    wait = next_scan.timestamp() - time.time() + scan["orphan_interval_s"] / 2
                    await asyncio.sleep(max(0.0, wait))
                    for name in names:
                        await emulator.clear_requests(name)
                    scheduled, triggered = service.scheduler.runs, service.checks.runs
                    await asyncio.sleep(window_s)
                    window = await _requests_of(emulator, names)
                    scheduled, triggered = service.scheduler.runs - scheduled, service.checks.runs - triggered
                    streams_up = (
                        sum(s.state is StreamState.UP for s in service.streams.streams.values())
                        if service.streams
                        else 0
                    )
                finally:
                    await service.stop(flush_timeout_s=2)
            covered_s = window_s * scale
            polling = len(window) * 3600 / covered_s
            upkeep = binance * 3600 / BinanceUsdm.listen_key_keepalive_s if mode == "on" else 0.0
            rows.append(
                {
                    "mode": "streams up" if mode == "on" else "polling only",
                    "accounts": accounts,
                    "positions_per_account": positions,
                    "streams_up": streams_up,
                    "scale": scale,
                    "window_s": window_s,
                    "schedule_covered_s": covered_s,
                    "scheduled_checks": scheduled,
                    "triggered_checks": triggered,
                    "window_requests": len(window),
                    "window_listen_key_requests": sum(r["path"] == LISTEN_KEY for r in window),
                    "polling_requests_per_hour": polling,
                    "keepalive_requests_per_hour": upkeep,
                    "requests_per_hour": polling + upkeep,
                    "startup_requests": len(startup),
                    "startup_listen_key_requests": sum(r["path"] == LISTEN_KEY for r in startup),
                    "startup_requests_by_path": dict(Counter(f"{r['method']} {r['path']}" for r in startup)),
                    "window_requests_by_path": dict(Counter(f"{r['method']} {r['path']}" for r in window)),
                }
            )
    off, on = rows
    on["per_connect_requests"] = (on["startup_requests"] - off["startup_requests"]) / accounts
    off["per_connect_requests"] = None
    return rows


# -- c. idle footprint ---------------------------------------------------------------------------------------


async def idle_footprint(databases: Databases, accounts: int = 10, sample_s: int = 60) -> list[dict[str, Any]]:
    rows = []
    for streaming in (False, True):
        measured = await footprint.idle_run(databases, accounts, sample_s, streams=streaming)
        rows.append({"mode": "streams up" if streaming else "polling only", "sample_s": sample_s, **measured})
    return rows


async def run(databases: Databases, quick: bool = False) -> dict[str, Any]:
    measured = await time_to_phone(databases, per_venue=3 if quick else 5)
    phone = phone_rows(measured)
    orphans = [r for r in phone if r["case"] == "orphan" and r["streams"] == "on"]
    shown = ", ".join("-" if r["median_s"] is None else f"{r['median_s']:.1f}s" for r in orphans)
    print(f"  streams, time to phone: orphan medians {shown}", flush=True)
    requests = await requests_per_hour(databases)
    print(
        "  streams, requests per hour: " + ", ".join(f"{r['mode']} {r['requests_per_hour']:.0f}" for r in requests),
        flush=True,
    )
    idle = await idle_footprint(databases, sample_s=30 if quick else 45)
    return {"phone": phone, "phone_health": measured["health"], "requests": requests, "footprint": idle}
