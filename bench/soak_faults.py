"""The soak's fault catalogue: what goes wrong around reconbot while positions change — the venues' REST answers
(timeouts, 5xx, 429, odd bodies), per-IP bans (Binance 418, Bybit 403), private streams (drops, resets,
stalls, expired keys, refused reconnects, hostile frames), the Bot API (429 with retry_after, 5xx, slow
gateway timeouts, the server gone), PostgreSQL (every replica session terminated, the database refusing
connections for a few seconds) and the replicas themselves (``kill -9``, started again a little later).

The catalogue is a list of :class:`FaultKind`; :func:`catalogue` builds it from what the exchange emulator says
it can inject (``GET /_emulator/capabilities``), so a fault the emulator learns later joins the soak without a
change here. Each injection arms its fault, holds it for a random while, and clears it in a ``finally`` (so a
soak that stops mid-fault leaves nothing armed), and records the window in which it kept reconbot from reading
an account: drift cannot be due while it is hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from bench.common import BenchAccount, Emulator
from bench.soak_replicas import Replicas
from bench.soak_truth import Ledger, Scope, Window
from emulator.telegram import BotApiEmulator

DRIVER_APPLICATION = "reconbot-soak"  # the soak's own sessions, which a PostgreSQL fault spares

# Stream faults that act on the connection; any other kind the emulator offers pushes a frame a client must
# survive (``malformed``: one frame cut off mid-JSON, and whatever hostile frames the emulator adds).
CONNECTION_STREAM_FAULTS = frozenset({"drop", "reset", "stall", "expire", "expire_silent"})
GATE_STREAM_FAULTS = ("refuse_auth", "refuse_listen_key", "unavailable")


class Category(StrEnum):
    REST = "rest"
    BAN = "ban"
    STREAM = "stream"
    HOSTILE_FRAME = "hostile frame"
    TELEGRAM = "telegram"
    POSTGRES = "postgres"
    REPLICA = "replica"


# Whom a fault of each category stands in the way of: one account, a venue's accounts, or every account (the
# Bot API, the database and the replicas are shared by all).
REACH = {
    Category.REST: Scope.ACCOUNT,
    Category.STREAM: Scope.ACCOUNT,
    Category.HOSTILE_FRAME: Scope.ACCOUNT,
    Category.BAN: Scope.VENUE,
    Category.TELEGRAM: Scope.ALL,
    Category.POSTGRES: Scope.ALL,
    Category.REPLICA: Scope.ALL,
}


@dataclass
class Injected:
    kind: str
    category: Category
    target: str
    start: float
    end: float | None = None

    def reach(self, until: float) -> Window:
        """The span and the accounts this fault stood in the way of (``until`` when it never ended)."""
        scope = REACH[self.category]
        return Window(scope, self.target if scope is not Scope.ALL else "", self.start, self.end or until, self.kind)


@dataclass
class FaultContext:
    """Everything a fault can reach, and what is faulted now (one fault per resource at a time)."""

    emulator: Emulator
    accounts: Sequence[BenchAccount]
    telegram: BotApiEmulator
    admin: asyncpg.Connection  # a session on another database of the server: ALTER DATABASE, terminate
    database: str
    replicas: Replicas
    ledger: Ledger
    capabilities: Mapping[str, Any]
    timeout_s: float  # reconbot's per-request timeout
    claim_interval_s: float
    busy: set[str] = field(default_factory=set)
    log: list[Injected] = field(default_factory=list)
    terminated_sessions: int = 0

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        assert self.emulator.http is not None
        async with self.emulator.http.request(method, f"{self.emulator.base}/_emulator/{path}", json=body) as response:
            answer = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{method} /_emulator/{path}: {answer}")
            return answer

    def free(self, resources: Sequence[str]) -> list[str]:
        return [r for r in resources if r not in self.busy]

    @contextlib.asynccontextmanager
    async def holding(self, resource: str, kind: str, category: Category, target: str):  # type: ignore[no-untyped-def]
        """Mark ``resource`` faulted while the block runs, and log the injection (its end when the block ends)."""
        self.busy.add(resource)
        injected = Injected(kind, category, target, time.time())
        self.log.append(injected)
        try:
            yield injected
        finally:
            injected.end = time.time()
            self.busy.discard(resource)

    def counts(self) -> dict[str, Any]:
        return {
            "by_category": dict(Counter(str(i.category) for i in self.log)),
            "by_kind": dict(Counter(i.kind for i in self.log)),
        }


Inject = Callable[[FaultContext, random.Random], Awaitable[bool]]


@dataclass(frozen=True)
class FaultKind:
    name: str
    category: Category
    weight: float
    inject: Inject  # False when nothing could be faulted now (its target is faulted already)


# -- the venues' REST answers ----------------------------------------------------------------------------------


def rest_fault(kind: str) -> Inject:
    """An account's answers fail this way, on one endpoint group or all, for 2–8 s."""

    async def inject(ctx: FaultContext, rng: random.Random) -> bool:
        free = ctx.free([f"rest:{a.name}" for a in ctx.accounts])
        if not free:
            return False
        account = rng.choice(free).split(":", 1)[1]
        endpoint = rng.choice(("positions", "positions", "open_orders", "any"))
        async with ctx.holding(f"rest:{account}", f"{kind} ({endpoint})", Category.REST, account) as injected:
            try:
                await ctx.control("POST", f"{account}/faults", {"kind": kind, "endpoint": endpoint, "times": None})
                await asyncio.sleep(rng.uniform(2, 8))
            finally:
                await ctx.control("DELETE", f"{account}/faults")
                ctx.ledger.hide(Window(Scope.ACCOUNT, account, injected.start, time.time() + ctx.timeout_s + 1, kind))
        return True

    return inject


async def ip_ban(ctx: FaultContext, rng: random.Random) -> bool:
    """The venue's per-IP limit drops to nothing: Binance answers 429 then bans with 418, Bybit bans with 403 at
    once; lifted after 4–12 s (the ban lasts as long)."""
    free = ctx.free([f"ban:{venue}" for venue in sorted({a.venue for a in ctx.accounts})])
    if not free:
        return False
    venue = rng.choice(free).split(":", 1)[1]
    duration = rng.uniform(4, 12)
    async with ctx.holding(f"ban:{venue}", f"{venue} IP ban", Category.BAN, venue) as injected:
        try:
            spec = {"limit": 1, "window_s": 60, "ban_after": 1, "ban_s": duration}
            await ctx.control("PUT", "limits", {venue: spec})
            await asyncio.sleep(duration)
        finally:
            await ctx.control("PUT", "limits", {venue: None})
            ctx.ledger.hide(Window(Scope.VENUE, venue, injected.start, time.time() + 2, "ip ban"))
    return True


# -- private streams ---------------------------------------------------------------------------------------------


def _stream_target(ctx: FaultContext, rng: random.Random, kind: str | None = None) -> BenchAccount | None:
    offered = ctx.capabilities.get("stream_faults", {})
    candidates = [
        a
        for a in ctx.accounts
        if f"stream:{a.name}" not in ctx.busy and (kind is None or kind in offered.get(a.venue, ()))
    ]
    return rng.choice(candidates) if candidates else None


def stream_fault(kind: str, hold: tuple[float, float] = (0.0, 0.0)) -> Inject:
    """One use of a live stream fault on one account's streams (``stall`` held for a while, then resumed)."""

    async def inject(ctx: FaultContext, rng: random.Random) -> bool:
        account = _stream_target(ctx, rng, kind)
        if account is None:
            return False
        async with ctx.holding(f"stream:{account.name}", kind, Category.STREAM, account.name):
            try:
                await ctx.control("POST", f"{account.name}/stream-faults", {"kind": kind, "times": 1})
                await asyncio.sleep(max(1.0, rng.uniform(*hold)))
            finally:
                await ctx.control("DELETE", f"{account.name}/stream-faults")
        return True

    return inject


async def stream_drop(ctx: FaultContext, rng: random.Random) -> bool:
    """Every stream of one account closed with 1001 (the venue going away); the next watch redials."""
    account = _stream_target(ctx, rng)
    if account is None:
        return False
    async with ctx.holding(f"stream:{account.name}", "drop", Category.STREAM, account.name):
        await ctx.control("DELETE", f"{account.name}/streams", {"code": 1001})
    return True


async def refused_reconnect(ctx: FaultContext, rng: random.Random) -> bool:
    """The streams dropped, and the next 1–3 reconnects refused (auth refused, listenKey refused, HTTP 404)."""
    account = _stream_target(ctx, rng)
    if account is None:
        return False
    offered = ctx.capabilities.get("stream_faults", {}).get(account.venue, ())
    gates = [k for k in GATE_STREAM_FAULTS if k in offered]
    if not gates:
        return False
    gate = rng.choice(gates)
    async with ctx.holding(f"stream:{account.name}", f"{gate} on reconnect", Category.STREAM, account.name):
        try:
            await ctx.control("POST", f"{account.name}/stream-faults", {"kind": gate, "times": rng.randint(1, 3)})
            await ctx.control("DELETE", f"{account.name}/streams", {"code": 1001})
            await asyncio.sleep(rng.uniform(3, 8))
        finally:
            await ctx.control("DELETE", f"{account.name}/stream-faults")
    return True


def hostile_frame_faults(capabilities: Mapping[str, Any], venue: str) -> tuple[str, ...]:
    """The stream faults of ``venue`` that push a frame the client must survive rather than act on the
    connection: every kind the emulator offers but the connection and gate faults (``malformed`` today; the
    emulator's hostile frames — "pa":"1e400", array frames, size 1e400, data:[null] — when it offers them)."""
    offered = capabilities.get("stream_faults", {}).get(venue, ())
    return tuple(k for k in offered if k not in CONNECTION_STREAM_FAULTS and k not in GATE_STREAM_FAULTS)


async def hostile_frame(ctx: FaultContext, rng: random.Random) -> bool:
    account = _stream_target(ctx, rng)
    if account is None:
        return False
    kinds = hostile_frame_faults(ctx.capabilities, account.venue)
    if not kinds:
        return False
    kind = rng.choice(kinds)
    async with ctx.holding(f"stream:{account.name}", kind, Category.HOSTILE_FRAME, account.name):
        try:
            await ctx.control("POST", f"{account.name}/stream-faults", {"kind": kind, "times": 1})
            await asyncio.sleep(rng.uniform(2, 5))
        finally:
            await ctx.control("DELETE", f"{account.name}/stream-faults")
    return True


# -- the Bot API -------------------------------------------------------------------------------------------------


def telegram_fault(status: int, *, delay: tuple[float, float] = (0.0, 0.0)) -> Inject:
    """The next 1–3 sends (or every call but getUpdates) answered with ``status``: 429 with a retry_after of
    1–4 s, a 5xx, or a 504 after a wait (a gateway timing out)."""

    async def inject(ctx: FaultContext, rng: random.Random) -> bool:
        if "telegram" in ctx.busy:
            return False
        method = rng.choice(("sendMessage", None))
        name = f"{status} on {method or 'every call'}"
        async with ctx.holding("telegram", name, Category.TELEGRAM, "bot api"):
            try:
                ctx.telegram.fail(
                    method,
                    status,
                    times=rng.randint(1, 3),
                    retry_after=rng.randint(1, 4) if status == 429 else None,
                    delay=rng.uniform(*delay),
                )
                await asyncio.sleep(8)
            finally:
                ctx.telegram.clear_faults()
        return True

    return inject


async def telegram_down(ctx: FaultContext, rng: random.Random) -> bool:
    """Every call's connection reset for 2–5 s (getUpdates too)."""
    if "telegram" in ctx.busy:
        return False
    async with ctx.holding("telegram", "connection reset", Category.TELEGRAM, "bot api"):
        try:
            ctx.telegram.down = True
            await asyncio.sleep(rng.uniform(2, 5))
        finally:
            ctx.telegram.down = False
    return True


# -- PostgreSQL and the replicas ----------------------------------------------------------------------------------


async def _terminate(ctx: FaultContext) -> int:
    terminated = await ctx.admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM $2",
        ctx.database,
        DRIVER_APPLICATION,
    )
    ctx.terminated_sessions += int(terminated or 0)
    return int(terminated or 0)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def pg_terminate(ctx: FaultContext, rng: random.Random) -> bool:
    """Every session of every replica terminated at once (pools, shard claims, delivery locks)."""
    if "postgres" in ctx.busy:
        return False
    async with ctx.holding("postgres", "sessions terminated", Category.POSTGRES, ctx.database) as injected:
        await _terminate(ctx)
        ctx.ledger.hide(Window(Scope.ALL, "", injected.start, time.time() + ctx.claim_interval_s + 2, "pg"))
    return True


async def pg_outage(ctx: FaultContext, rng: random.Random) -> bool:
    """The database refuses connections for 3–8 s and every replica session is terminated."""
    if "postgres" in ctx.busy:
        return False
    async with ctx.holding("postgres", "outage", Category.POSTGRES, ctx.database) as injected:
        try:
            await ctx.admin.execute(f"ALTER DATABASE {_quoted(ctx.database)} ALLOW_CONNECTIONS false")
            await _terminate(ctx)
            await asyncio.sleep(rng.uniform(3, 8))
        finally:
            await ctx.admin.execute(f"ALTER DATABASE {_quoted(ctx.database)} ALLOW_CONNECTIONS true")
            end = time.time() + ctx.claim_interval_s + 2  # the shard claims come back at the next round
            ctx.ledger.hide(Window(Scope.ALL, "", injected.start, end, "pg outage"))
    return True


async def replica_kill(ctx: FaultContext, rng: random.Random) -> bool:
    """``kill -9`` of one replica, started again 2–6 s later. Its accounts are unwatched until another replica
    claims them (the next claim round), and again while shards move back to it once it runs; with no other
    replica, until it runs again."""
    running = ctx.replicas.running()
    if not running or "replica" in ctx.busy:
        return False
    replica = rng.choice(running)
    alone = len(running) == 1
    handover = ctx.claim_interval_s + 2
    async with ctx.holding("replica", f"kill -9 replica {replica.slot}", Category.REPLICA, str(replica.slot)) as done:
        ready = time.time()
        try:
            replica.kill()
            await replica.wait()
            if not alone:
                ctx.ledger.hide(Window(Scope.ALL, "", done.start, time.time() + handover, "replica killed"))
            await asyncio.sleep(rng.uniform(2, 6))
        finally:
            with contextlib.suppress(RuntimeError, TimeoutError):
                ready = await replica.restart()
            ready = max(ready, time.time())
            start = done.start if alone else ready
            ctx.ledger.hide(Window(Scope.ALL, "", start, ready + handover, "replica restarted"))
    return True


def catalogue(capabilities: Mapping[str, Any], replicas: int) -> list[FaultKind]:
    """The default catalogue, as far as this emulator offers each fault; weights are relative frequencies."""
    rest = [("timeout", 3), ("http_500", 3), ("rate_limit", 3), ("garbage_json", 1), ("empty_body", 1)]
    kinds = [
        FaultKind(f"rest {name}", Category.REST, weight, rest_fault(name))
        for name, weight in rest
        if name in capabilities.get("faults", ())
    ]
    offered = {k for venue in capabilities.get("stream_faults", {}).values() for k in venue}
    kinds += [FaultKind("ip ban", Category.BAN, 1.5, ip_ban), FaultKind("stream drop", Category.STREAM, 2, stream_drop)]
    for name, weight, hold in (("reset", 1, (0, 0)), ("stall", 2, (3, 10)), ("expire", 1, (0, 0))):
        if name in offered:
            kinds.append(FaultKind(f"stream {name}", Category.STREAM, weight, stream_fault(name, hold)))
    if offered & set(GATE_STREAM_FAULTS):
        kinds.append(FaultKind("stream refused reconnect", Category.STREAM, 1, refused_reconnect))
    if any(hostile_frame_faults(capabilities, venue) for venue in capabilities.get("venues", ())):
        kinds.append(FaultKind("hostile frame", Category.HOSTILE_FRAME, 3, hostile_frame))
    kinds += [
        FaultKind("telegram 429", Category.TELEGRAM, 2, telegram_fault(429)),
        FaultKind("telegram 5xx", Category.TELEGRAM, 1, telegram_fault(502)),
        FaultKind("telegram 500", Category.TELEGRAM, 1, telegram_fault(500)),
        FaultKind("telegram slow 504", Category.TELEGRAM, 1, telegram_fault(504, delay=(2, 6))),
        FaultKind("telegram down", Category.TELEGRAM, 1, telegram_down),
        # the faults that blind every account come rarer: a drift must be seen in the clear to be due
        FaultKind("pg terminate", Category.POSTGRES, 1, pg_terminate),
        FaultKind("pg outage", Category.POSTGRES, 0.5, pg_outage),
    ]
    if replicas:
        kinds.append(FaultKind("replica kill", Category.REPLICA, 0.75, replica_kill))
    return kinds


async def clear_all(ctx: FaultContext) -> None:
    """Nothing armed anywhere: the end of a soak settles with every fault cleared and every replica running."""
    for account in ctx.accounts:
        await ctx.control("DELETE", f"{account.name}/faults")
        await ctx.control("DELETE", f"{account.name}/stream-faults")
    await ctx.control("PUT", "limits", {venue: None for venue in ctx.capabilities.get("venues", ())})
    ctx.telegram.clear_faults()
    ctx.telegram.down = False
    await ctx.admin.execute(f"ALTER DATABASE {_quoted(ctx.database)} ALLOW_CONNECTIONS true")
    for replica in ctx.replicas.all:
        await replica.ensure_running()


class Injector:
    """Injects faults at random moments (exponential gaps of mean ``every_s``): first one of each category in a
    seeded order, so even a short soak meets them all, then by weight."""

    def __init__(self, ctx: FaultContext, kinds: Sequence[FaultKind], rng: random.Random, every_s: float) -> None:
        self.ctx, self.kinds, self.rng, self.every_s = ctx, list(kinds), rng, every_s
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[str] = []  # an injection that failed (the emulator refused it, say): the soak reports it

    def _pick(self, first: list[Category]) -> FaultKind:
        if first:
            category = first.pop(0)
            return self.rng.choice([k for k in self.kinds if k.category is category])
        return self.rng.choices(self.kinds, weights=[k.weight for k in self.kinds])[0]

    async def run(self) -> None:
        first = sorted({k.category for k in self.kinds}, key=str)
        self.rng.shuffle(first)
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / self.every_s))
            kind = self._pick(first)
            task = asyncio.create_task(self._inject(kind), name=kind.name)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _inject(self, kind: FaultKind) -> None:
        try:
            await kind.inject(self.ctx, self.rng)
        except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
            self.errors.append(f"{kind.name}: {type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        """Cancel what is under way; each injection clears what it armed."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
