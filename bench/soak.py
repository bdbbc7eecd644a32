"""Soak: `python main.py run` replicas sharing one database, left running for minutes against the exchange
emulator (in a process of its own) and the loopback Bot API while positions change at random on both venues
and faults hit everything around them — then judged on what reached the chat and what they changed.

1. The accounts (half Binance USDⓈ-M, half Bybit, one of each in hedge mode) start with matched books.
2. For ``duration_s`` the driver (:mod:`bench.soak_driver`) makes drift and the trading bot's own changes, and
   the injector (:mod:`bench.soak_faults`) injects REST, ban, stream, hostile-frame, Telegram, PostgreSQL and
   replica faults; everything done is written to the ledger (:mod:`bench.soak_truth`).
3. Every fault is cleared, every replica runs, nothing changes: the soak settles until every drift still open
   has been due for a full round and the outbox is empty.
4. The verdict (:mod:`bench.soak_verdict`) reads the chat's transcript and reconbot's database: lost,
   duplicate and false alerts and wrong fixes — all four must be 0 — and the time to phone from each drift to
   its first message, under the soak's short intervals (seconds, not the defaults' minutes).

Seeded (``seed``: the accounts' books, the driver's and the injector's choices; the interleaving with the
replicas is the machine's), bounded (``duration_s``; a watchdog stops a soak whose request weight runs away),
loopback only. Each replica's output is kept in ``log_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import yaml

from bench.common import (
    OPENED_MS,
    ROOT,
    UNLIMITED_BUDGET,
    Databases,
    Emulator,
    account_entries,
    accounts_for,
    emulator_process,
    prepare,
)
from bench.soak_driver import SIZES, Driver, SoakAccount, TradingBot, Venue
from bench.soak_faults import DRIVER_APPLICATION, FaultContext, Injector, catalogue, clear_all
from bench.soak_replicas import Replicas
from bench.soak_truth import Drift, Ledger, Timing, drifts
from bench.soak_verdict import Filed, Transcript, judge, phone_figures, read_filed, read_transcript
from emulator.telegram import ApiCall, BotApiEmulator
from services.model import PositionKey, Side

TOKEN = "123456:SOAK"
CHAT = 5151  # a private chat: one message a second


class SoakStorm(RuntimeError):
    """The venues saw more request weight than the soak allows: a retry storm, stopped rather than let run."""


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float = 600.0  # of changes and faults; the settle comes on top
    replicas: int = 2
    accounts: int = 8
    seed: int = 21
    markets: int = 12  # per venue
    grace_s: float = 3.0
    verify_delay_s: float = 1.5
    # the schedule is the backstop (the streams trigger the checks that matter); a check of a Binance account
    # holding positions costs 85 weight and ccxt lets one client spend 1,200 a minute, so the checks a minute
    # (scheduled, triggered, confirming) must stay under 14 or reads queue behind the limiter; both jobs fall due
    # together and share their read
    orphan_interval_s: float = 12.0
    reconcile_interval_s: float = 12.0
    jitter_s: float = 1.0
    db_poll_s: float = 1.0
    claim_interval_s: float = 2.0
    shards: int = 8
    timeout_s: float = 3.0  # reconbot's per-request timeout; the emulator holds a "timeout" answer longer
    timeout_delay_s: float = 5.0
    remind_after_s: float = 180.0  # the default hour, scaled as the 300 s scan is to 15 s
    event_every_s: float = 3.0  # over all 8 accounts: 1.3 changes a minute per Binance account, 4 per Bybit one
    fault_every_s: float = 4.0
    lag_max_s: float = 0.5  # the trading bot records its own change at most this late (under verify_delay_s)
    drain_timeout_s: float = 90.0
    max_weight_per_min: int = 300_000
    log_dir: Path | None = None

    @property
    def timing(self) -> Timing:
        return Timing(
            self.grace_s, self.verify_delay_s, self.orphan_interval_s, self.reconcile_interval_s, self.jitter_s
        )


def soak_accounts(config: SoakConfig) -> list[SoakAccount]:
    markets = tuple(f"SYN{i + 1:04d}USDT" for i in range(config.markets))
    return [
        SoakAccount(a, hedge=index in (2, 3), markets=markets) for index, a in enumerate(accounts_for(config.accounts))
    ]


def baseline(accounts: Sequence[SoakAccount], rng: random.Random) -> dict[PositionKey, Decimal]:
    """Matched books to start from: longs and shorts, a hedged pair on the hedge-mode accounts."""
    held: dict[PositionKey, Decimal] = {}
    for account in accounts:
        m = account.markets
        legs = [(m[0], "long"), (m[0], "short"), (m[1], "long"), (m[2], "short")] if account.hedge else [
            (m[0], "long"), (m[1], "long"), (m[2], "short"), (m[3], "short")
        ]  # fmt: skip
        for market, side in legs:
            held[PositionKey(account.name, market, Side(side))] = rng.choice(SIZES)
    return held


def scenario(config: SoakConfig, accounts: Sequence[SoakAccount], held: dict[PositionKey, Decimal]) -> dict[str, Any]:
    return {
        "synthetic_markets": {"binance": config.markets, "bybit": config.markets},
        "timeout_delay_s": config.timeout_delay_s,
        "accounts": [
            {
                "name": a.name,
                "venue": a.bench.venue,
                "api_key": a.bench.api_key,
                "secret": a.bench.secret,
                "hedge_mode": a.hedge,
                "positions": [
                    {"symbol": k.market, "side": k.side, "size": str(size), "opened_ms": OPENED_MS}
                    for k, size in held.items()
                    if k.account == a.name
                ],
            }
            for a in accounts
        ],
    }


def db_rows(accounts: Sequence[SoakAccount], held: dict[PositionKey, Decimal]) -> list[tuple[Any, ...]]:
    exchange = {a.name: a.db_exchange for a in accounts}
    return [(exchange[k.account], k.account, k.market, k.side, size, Decimal(10), "active") for k, size in held.items()]


def replica_config(config: SoakConfig, database_url: str, accounts: Sequence[SoakAccount], urls: dict[str, str],
                   telegram: BotApiEmulator) -> dict[str, Any]:  # fmt: skip
    return {
        "database": {"url": database_url, "pool_size": 5},
        "accounts": account_entries([a.bench for a in accounts], urls, streams=True, timeout_s=config.timeout_s),
        "scan": {
            "grace_s": config.grace_s,
            "verify_delay_s": config.verify_delay_s,
            "orphan_interval_s": config.orphan_interval_s,
            "reconcile_interval_s": config.reconcile_interval_s,
            "jitter_s": config.jitter_s,
            "db_poll_s": config.db_poll_s,
            "stream_grace_s": 10,
            "auto_fix_ghosts": True,
            "require_stop_loss": False,  # the soak's positions carry no stops: unprotected is not its subject
        },
        "telegram": {"api_base_url": telegram.base_url, "alert_chat_ids": [CHAT], "operators": [CHAT]},
        "alerts": {"console": False, "remind_after_s": config.remind_after_s},
        "ops": {"listen": None},
        "scale": {"shards": config.shards, "claim_interval_s": config.claim_interval_s},
        # every account shares the emulator's one IP: the bans come from the emulator, not from the budget
        "venues": {"binanceusdm": UNLIMITED_BUDGET, "bybit": UNLIMITED_BUDGET},
    }


def admin_url(database_url: str) -> str:
    """The same server's ``postgres`` database: a database cannot refuse connections from a session inside it."""
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


async def _control(emulator: Emulator, path: str) -> Any:
    assert emulator.http is not None
    async with emulator.http.get(f"{emulator.base}/_emulator/{path}") as response:
        return await response.json()


async def _requests(emulator: Emulator, accounts: Sequence[SoakAccount], log_dir: Path) -> int:
    """How many requests the venues saw; each account's are kept in ``requests.jsonl`` for a reader of the logs."""
    total = 0
    with (log_dir / "requests.jsonl").open("w", encoding="utf-8") as out:
        for account in accounts:
            log = await _control(emulator, f"{account.name}/requests")
            total += log["count"]
            for request in log["requests"]:
                out.write(json.dumps({"account": account.name, **request}) + "\n")
    return total


async def _until(condition: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"soak: {what} after {timeout_s:g}s")
        await asyncio.sleep(0.5)


async def _watchdog(emulator: Emulator, limit: int) -> None:
    while True:
        await asyncio.sleep(5)
        limits = await _control(emulator, "limits")
        for venue, state in limits.items():
            if state["used"] > limit:
                raise SoakStorm(f"{venue}: {state['used']} request weight in a minute (the soak allows {limit})")


@dataclass
class _Run:
    """One soak's moving parts, for the steps between start and verdict."""

    config: SoakConfig
    accounts: list[SoakAccount]
    ledger: Ledger
    telegram: BotApiEmulator
    emulator: Emulator
    pool: asyncpg.Pool
    replicas: Replicas
    say: Callable[[str], None]

    async def checked_every_account(self) -> bool:
        count = await self.pool.fetchval("SELECT count(*) FROM reconbot.account_checks WHERE ok")
        return int(count) >= len(self.accounts)

    async def settle(self, drive_end: float) -> None:
        """Nothing changes and nothing fails until every drift still open has been due for a round (past the
        last fault's window), and the outbox is empty (or ``drain_timeout_s`` passed: what is left is lost)."""
        hidden_until = max([w.end for w in self.ledger.windows] + [drive_end])
        settled = hidden_until + self.config.grace_s + self.config.timing.due_s + 2
        await asyncio.sleep(max(0.0, settled - time.time()))
        with contextlib.suppress(TimeoutError):
            await _until(self.drained, self.config.drain_timeout_s, "the outbox did not drain")

    async def drained(self) -> bool:
        return not await self.pool.fetchval(
            "SELECT count(*) FROM reconbot.outbox WHERE sent_at IS NULL AND dead_at IS NULL AND channel = 'telegram'"
        )

    async def drive(self, ctx: FaultContext, injector: Injector, driver: Driver) -> str | None:
        """Changes and faults for ``duration_s``; returns why it stopped early, if it did."""
        config = self.config
        others = [
            asyncio.create_task(injector.run()),
            asyncio.create_task(_watchdog(self.emulator, config.max_weight_per_min)),
            asyncio.create_task(self._report_progress(ctx, driver)),
        ]
        tasks = [driver.start(config.event_every_s), *others]
        stopped = None
        try:
            done, _ = await asyncio.wait(tasks, timeout=config.duration_s, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    stopped = f"{type(task.exception()).__name__}: {task.exception()}"
        finally:
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await driver.stop()
            await injector.stop()
            await clear_all(ctx)
        return stopped

    async def _report_progress(self, ctx: FaultContext, driver: Driver) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(60)
            self.say(
                f"  soak: {time.monotonic() - started:.0f}s, {sum(driver.events.values())} changes, "
                f"{len(ctx.log)} faults, {len(self.telegram.messages(CHAT))} messages in the chat"
            )


@dataclass
class Finished:
    """What a soak leaves to judge."""

    accounts: list[SoakAccount]
    ledger: Ledger
    filed: Filed
    transcript: Transcript
    began: float
    origin: float  # every replica runs and has checked every account: changes and faults begin
    drive_end: float
    end: float  # settled: the verdict's horizon
    stopped_at: float  # the replicas have stopped
    stopped: str | None
    ctx: FaultContext
    injector: Injector
    driver: Driver
    replicas: Replicas
    refusals: dict[str, dict[str, int]]
    requests: int
    calls: list[ApiCall]
    log_dir: Path


async def run_soak(config: SoakConfig, database_url: str, say: Callable[[str], None] = print) -> dict[str, Any]:
    """One soak against the (empty) database at ``database_url``; returns its figures and verdict."""
    began = time.time()
    accounts = soak_accounts(config)
    held = baseline(accounts, random.Random(config.seed))
    ledger = Ledger(config.timing)
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="reconbot-soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    telegram = BotApiEmulator(token=TOKEN)
    await telegram.start()
    try:
        async with emulator_process(scenario(config, accounts, held)) as emulator:
            await prepare(database_url, db_rows(accounts, held))
            capabilities = await _control(emulator, "capabilities")
            configs = []
            for slot in range(config.replicas):
                path = log_dir / f"replica-{slot}.yaml"
                path.write_text(yaml.safe_dump(replica_config(config, database_url, accounts, emulator.urls, telegram)))
                configs.append(path)
            replicas = Replicas(configs, [log_dir / f"replica-{slot}.log" for slot in range(config.replicas)], TOKEN)
            database = urlsplit(database_url).path.lstrip("/")
            admin = await asyncpg.connect(admin_url(database_url))
            pool = await asyncpg.create_pool(
                database_url, min_size=2, max_size=3, server_settings={"application_name": DRIVER_APPLICATION}
            )
            sampler = asyncio.create_task(replicas.sample())
            run = _Run(config, accounts, ledger, telegram, emulator, pool, replicas, say)
            try:
                await replicas.start()
                await _until(run.checked_every_account, 120, "not every account was checked")
                origin = time.time()
                for key, size in held.items():
                    ledger.baseline(key, size, origin)
                wall_offset = time.time() - time.monotonic()
                ctx = FaultContext(
                    emulator, [a.bench for a in accounts], telegram, admin, database, replicas, ledger, capabilities,
                    config.timeout_s, config.claim_interval_s,
                )  # fmt: skip
                kinds = catalogue(capabilities, config.replicas)
                injector = Injector(ctx, kinds, random.Random(config.seed + 1), config.fault_every_s)
                driver = Driver(accounts, Venue(emulator), TradingBot(pool), ledger, random.Random(config.seed + 2),
                                config.timing, config.lag_max_s)  # fmt: skip
                say(f"  soak: {config.duration_s:g}s of changes and faults, {config.replicas} replicas, "
                    f"{len(accounts)} accounts, seed {config.seed}; logs in {log_dir}")  # fmt: skip
                stopped = await run.drive(ctx, injector, driver)
                drive_end = time.time()
                await run.settle(drive_end)
                end = time.time()
                await replicas.stop()
                stopped_at = time.time()
                async with pool.acquire() as conn:
                    filed = await read_filed(conn)
            finally:
                sampler.cancel()
                await replicas.stop()
                await pool.close()
                with contextlib.suppress(asyncpg.PostgresError):
                    await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
                await admin.close()
            refusals = await _control(emulator, "refusals")
            requests = await _requests(emulator, accounts, log_dir)
        transcript = read_transcript(telegram.messages(CHAT), wall_offset)
        calls = list(telegram.calls)
    finally:
        await telegram.stop()
    finished = Finished(
        accounts, ledger, filed, transcript, began, origin, drive_end, end, stopped_at, stopped, ctx, injector,
        driver, replicas, refusals, requests, calls, log_dir,
    )  # fmt: skip
    return figures(config, finished)


def write_record(p: Finished, found: Sequence[Drift]) -> None:
    """What happened, for a reader of the logs: the changes, the faults and their windows, the drifts
    (``record.txt``), and the chat (``chat.txt``), each line stamped with seconds since the start."""
    events = [
        (c.at, f"change {c.key}: {c.what} (exchange {c.exchange}, db {c.db_delta:+}, by {c.by})")
        for c in p.ledger.changes + p.filed.changes()
    ]
    events += [(i.start, f"fault {i.category}: {i.kind} on {i.target}") for i in p.ctx.log]
    events += [
        (w.start, f"hidden {w.scope} {w.target} until +{w.end - p.origin:.2f} ({w.fault})") for w in p.ledger.windows
    ]
    events += [(d.start, f"drift {d.describe(p.origin)} real={d.real}") for d in found]

    def stamped(rows: Sequence[tuple[float, str]]) -> str:
        return "".join(f"+{at - p.origin:8.2f} {text}\n" for at, text in sorted(rows, key=lambda row: row[0]))

    origin = f"# +0 = {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(p.origin))}.{int(p.origin % 1 * 1000):03d} UTC\n"
    (p.log_dir / "record.txt").write_text(origin + stamped(events), encoding="utf-8")
    (p.log_dir / "chat.txt").write_text(stamped(p.transcript.texts), encoding="utf-8")


def figures(config: SoakConfig, p: Finished) -> dict[str, Any]:
    """The verdict and the figures of a finished soak, JSON-ready."""
    changes = p.ledger.changes + p.filed.changes()
    found = drifts(changes, p.end, config.timing)
    venues = {a.name: a.bench.venue for a in p.accounts}
    faulted = [injected.reach(p.end) for injected in p.ctx.log]
    verdict = judge(
        found, changes, p.ledger.windows, venues, p.filed, p.transcript, config.timing, p.origin, p.end,
        slack_s=config.timeout_s + 5, faulted=faulted,
    )  # fmt: skip
    write_record(p, found)
    every = [latency for values in verdict.phone_s.values() for latency in values]
    settings = asdict(config)
    settings["log_dir"] = str(p.log_dir)
    return {
        "config": settings,
        "stopped_early": p.stopped,
        "startup_s": p.origin - p.began,
        "drive_s": p.drive_end - p.origin,
        "settle_s": p.end - p.drive_end,
        "stop_s": p.stopped_at - p.end,
        "counts": verdict.counts(),
        "examples": verdict.examples(),
        "phone": {
            "all": phone_figures(every),
            "no fault in its way": phone_figures(verdict.phone_clear_s),
            **{k: phone_figures(v) for k, v in sorted(verdict.phone_s.items())},
        },
        "due_after_min_life_s": config.timing.due_s,
        "memory": p.replicas.memory(),
        "replica_start_failures": [f"replica {r.slot} {f}" for r in p.replicas.all for f in r.failures],
        "faults": {
            **p.ctx.counts(),
            "errors": p.injector.errors[:10],
            "binance_418": p.refusals["binance"]["banned"],
            "binance_429": p.refusals["binance"]["limited"],
            "bybit_403": p.refusals["bybit"]["banned"],
            "telegram_faulted_calls": sum(c.fault is not None for c in p.calls),
            "telegram_dropped_calls": sum(c.note.startswith("connection reset") for c in p.calls),
            "pg_sessions_terminated": p.ctx.terminated_sessions,
            "replica_kills": sum(r.kills for r in p.replicas.all),
        },
        "changes": dict(p.driver.events),
        "changes_skipped": p.driver.skipped,
        "driver_errors": p.driver.errors[:10],
        "drifts": dict(verdict.drifts),
        "stale_findings": verdict.stale[:10],
        "stale_count": len(verdict.stale),
        "messages": dict(p.transcript.messages),
        "findings": len(p.filed.findings),
        "audit": dict(p.filed.outcomes),
        "undelivered": p.filed.undelivered,
        "requests": p.requests,
    }


async def run(databases: Databases, *, duration_s: float, replicas: int, seed: int) -> dict[str, Any]:
    """``python -m bench --only soak``: one soak on a fresh database of the benchmarks' server."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    config = SoakConfig(duration_s=duration_s, replicas=replicas, seed=seed, log_dir=ROOT / "var" / f"soak-{stamp}")
    async with databases.fresh() as url:
        return await run_soak(config, url, say=lambda line: print(line, flush=True))


def verdict_lines(s: dict[str, Any]) -> list[str]:
    """The soak as text: the four counts (each must read 0) with examples, time to phone, memory, faults."""
    c, phone, f = s["counts"], s["phone"], s["faults"]
    lines = [
        f"\n10. Soak: {s['config']['replicas']} `run` replicas, {s['config']['accounts']} accounts, "
        f"{s['drive_s']:.0f} s of changes and faults + {s['settle_s']:.0f} s settle (seed {s['config']['seed']}; "
        f"start-up {s['startup_s']:.0f} s, stop {s['stop_s']:.0f} s)"
        + (f" — STOPPED EARLY: {s['stopped_early']}" if s["stopped_early"] else ""),
        f"  lost {c['lost']} · duplicate {c['duplicate']} · false {c['false']} · wrong fixes {c['wrong_fix']}"
        + ("  (all must be 0)" if any(c.values()) else "  (all 0)"),
    ]
    for name, examples in s["examples"].items():
        lines += [f"    {name}: {example}" for example in examples]
    d = s["drifts"]
    lines.append(
        f"  {sum(s['changes'].values())} changes ({', '.join(f'{k} {v}' for k, v in sorted(s['changes'].items()))}); "
        f"{d.get('drifts', 0)} drifts, {d.get('real', 0)} real, {d.get('due', 0)} due"
    )
    scan = s["config"]
    lines.append(
        f"  time to phone (drift → Bot API; grace {scan['grace_s']:g} s, confirming read {scan['verify_delay_s']:g} s, "
        f"scans every {scan['orphan_interval_s']:g}/{scan['reconcile_interval_s']:g} s — not the defaults):"
    )
    for kind, figures in phone.items():
        if figures["samples"]:
            lines.append(
                f"    {kind:<18} {figures['samples']:>4} samples: median {figures['median_s']:.2f} s, "
                f"p95 {figures['p95_s']:.2f} s, max {figures['max_s']:.2f} s"
            )
    lines.append(
        "  memory: "
        + "; ".join(
            f"replica {m['slot']} peak {m['peak_rss_mib']:.0f} MiB (first {m['first_rss_mib']:.0f}, last "
            f"{m['last_rss_mib']:.0f}; {m['starts']} starts)"
            for m in s["memory"]
        )
    )
    lines.append(
        "  faults: "
        + ", ".join(f"{k} {v}" for k, v in sorted(f["by_category"].items()))
        + f"; seen: Binance 429 ×{f['binance_429']}, 418 ×{f['binance_418']}, Bybit 403 ×{f['bybit_403']}, "
        f"Bot API errors ×{f['telegram_faulted_calls']}, resets ×{f['telegram_dropped_calls']}, PostgreSQL sessions "
        f"terminated ×{f['pg_sessions_terminated']}, kill -9 ×{f['replica_kills']}"
    )
    lines.append(
        f"  chat: {', '.join(f'{k} {v}' for k, v in sorted(s['messages'].items()))}; findings {s['findings']}; "
        f"audit {', '.join(f'{k} {v}' for k, v in sorted(s['audit'].items())) or 'none'}; undelivered "
        f"{s['undelivered']}; {s['requests']} venue requests"
    )
    if s["stale_count"]:
        stale = ", ".join(s["stale_findings"])
        lines.append(f"  live at the end with no such drift left: {s['stale_count']} ({stale})")
    if s["replica_start_failures"]:
        lines.append(f"  replicas that did not start: {s['replica_start_failures']}")
    if f["errors"] or s["driver_errors"]:
        lines.append(f"  soak errors: {f['errors'] + s['driver_errors']}")
    return lines
