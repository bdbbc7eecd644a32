"""The soak's scenario driver: random changes of positions on random accounts of both venues, some of them drift
and some the trading bot's own business, each written into the ledger as it happens.

Drift — reconbot must tell the chat once it has lasted long enough:

- *orphan*: a position opens on the exchange with no row (or the bot closes its row and the position stays);
- *ghost*: the position vanishes (liquidated, auto-deleveraged, closed by hand) and the row stays (or the bot
  writes a row for a position that never opened);
- *mismatch*: part of the position is liquidated or closed, it grows, or the bot resizes its row alone.

Each drift ends after a random life — the bot adopts the orphan or the position is closed, the bot closes the
ghost's row, one side is brought to the other's size — or lasts to the end. Some lives are shorter than
reconbot's minimum (the grace window, or the confirming read): those are not drift, and must not alert.

Not drift — the trading bot opening, closing and resizing its own positions, recording each on the other side a
moment later (at most ``lag_max_s``, in either order), as a bot that waits for its fill does.

The driver is the only writer of the exchange side (reconbot may not place orders here) and one of two writers
of the DB side (reconbot's auto-fix is the other), so it reads the trading bot's rows before it chooses, and
writes them with guarded statements whose effect it records.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from bench.common import BenchAccount, Emulator
from bench.soak_truth import ZERO, Change, Ledger, Timing, drift_kind
from services.model import FindingKind, PositionKey, Side

SIZES = tuple(Decimal(s) for s in ("0.5", "1", "1.5", "2", "3", "5"))
GHOST_CAUSES = ("liquidation", "adl", "manual")
SIDES = tuple(Side)


@dataclass(frozen=True)
class SoakAccount:
    bench: BenchAccount
    hedge: bool
    markets: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.bench.name

    @property
    def db_exchange(self) -> str:
        return "binance" if self.bench.venue == "binance" else "bybit"

    @property
    def activity(self) -> float:
        """How often the driver picks this account, relatively: a Binance check costs 85 weight of a client's
        1,200 a minute, a Bybit one six requests of 3,000."""
        return 1.0 if self.bench.venue == "binance" else 3.0

    def all_keys(self) -> list[PositionKey]:
        return [PositionKey(self.name, market, side) for market in self.markets for side in SIDES]


class Venue:
    """The exchange side, through the emulator's control API."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def _post(self, path: str, body: dict[str, object]) -> None:
        assert self.emulator.http is not None
        async with self.emulator.http.post(f"{self.emulator.base}/_emulator/{path}", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"POST /_emulator/{path}: {await response.text()}")

    async def set(self, key: PositionKey, size: Decimal) -> None:
        """A position opened, or resized as a new one (its venue time is now: young)."""
        await self._post(f"{key.account}/positions", {"symbol": key.market, "side": key.side, "size": str(size)})

    async def close(self, key: PositionKey, cause: str, qty: Decimal | None = None) -> None:
        body: dict[str, object] = {"symbol": key.market, "side": key.side, "cause": cause}
        if qty is not None:
            body["qty"] = str(qty)
        await self._post(f"{key.account}/close", body)


class TradingBot:
    """The trading bot's positions table, written as the bot would (one row per position, guarded)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def sizes(self, account: str) -> dict[PositionKey, Decimal]:
        rows = await self.pool.fetch(
            "SELECT symbol, side, sum(quantity) AS size FROM positions WHERE account = $1 AND status = 'active' "
            "GROUP BY symbol, side",
            account,
        )
        return {PositionKey(account, r["symbol"], Side(r["side"])): r["size"] for r in rows}

    async def insert(self, account: SoakAccount, key: PositionKey, size: Decimal) -> Decimal:
        await self.pool.execute(
            "INSERT INTO positions (exchange, account, symbol, side, quantity, entry_price, status, opened_at, "
            "updated_at) VALUES ($1, $2, $3, $4, $5, 10, 'active', now(), now())",
            account.db_exchange,
            key.account,
            key.market,
            key.side,
            size,
        )
        return size

    async def close(self, key: PositionKey) -> Decimal:
        """Close the key's active rows; returns what that took off the DB side (nothing when reconbot's auto-fix
        closed them first)."""
        closed = await self.pool.fetch(
            "UPDATE positions SET status = 'closed', closed_at = now(), updated_at = now(), "
            "exit_reason = 'closed by the trading bot' "
            "WHERE account = $1 AND symbol = $2 AND side = $3 AND status = 'active' RETURNING quantity",
            key.account,
            key.market,
            key.side,
        )
        return -sum((r["quantity"] for r in closed), ZERO)

    async def resize(self, key: PositionKey, size: Decimal) -> Decimal:
        """Set the key's size to ``size`` on its newest row; returns the change (nothing without a row)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, quantity FROM positions WHERE account = $1 AND symbol = $2 AND side = $3 "
                "AND status = 'active' ORDER BY id FOR UPDATE",
                key.account,
                key.market,
                key.side,
            )
            if not rows:
                return ZERO
            total = sum((r["quantity"] for r in rows), ZERO)
            newest = rows[-1]
            target = newest["quantity"] + size - total
            if target < 0:
                return ZERO
            await conn.execute(
                "UPDATE positions SET quantity = $2, updated_at = now() WHERE id = $1", newest["id"], target
            )
            return size - total


Step = Callable[[SoakAccount, PositionKey], Awaitable[None]]


class Driver:
    """Random events at exponential gaps (mean ``every_s``); each event on one random account."""

    def __init__(
        self,
        accounts: Sequence[SoakAccount],
        venue: Venue,
        bot: TradingBot,
        ledger: Ledger,
        rng: random.Random,
        timing: Timing,
        lag_max_s: float,
    ) -> None:
        self.accounts, self.venue, self.bot, self.ledger, self.rng = list(accounts), venue, bot, ledger, rng
        self.timing, self.lag_max_s = timing, lag_max_s
        self.cooldown_s = timing.grace_s + timing.verify_delay_s + 2  # a key rests between two unrelated events
        self.events: Counter[str] = Counter()
        self.skipped = 0  # events whose account had no key to make them on (everything busy or resting)
        self.errors: list[str] = []
        self.stepping: set[PositionKey] = set()  # an event's first writes under way
        # writes planned for later (the bot's second write, a drift's end), per key
        self.pending: Counter[PositionKey] = Counter()
        self.last_change: dict[PositionKey, float] = {}
        self.heals: set[asyncio.Task[None]] = set()  # a drift's end: given up at the end while not yet due
        self.halves: set[asyncio.Task[None]] = set()  # the bot's second writes: always made
        self._waiting: set[asyncio.Task[None]] = set()  # heals still waiting for their moment
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        # (name, weight, needs a free key, handler): free keys hold nothing on either side, matched ones the
        # same size on both
        self.catalogue: list[tuple[str, float, bool, Step]] = [
            ("orphan", 3, True, self.orphan),
            ("phantom row", 1, True, self.phantom_row),
            ("bot opens", 3, True, self.bot_opens),
            ("orphan: row closed", 1, False, self.row_closed),
            ("ghost", 3, False, self.ghost),
            ("partial close", 2, False, self.partial_close),
            ("size up", 1, False, self.size_up),
            ("row resized", 1, False, self.row_resized),
            ("bot closes", 3, False, self.bot_closes),
            ("bot resizes", 2, False, self.bot_resizes),
        ]

    # -- choosing ----------------------------------------------------------------------------------------------

    def _idle(self, key: PositionKey, now: float) -> bool:
        busy = key in self.stepping or self.pending[key] > 0
        return not busy and now - self.last_change.get(key, -1e9) >= self.cooldown_s

    def _candidates(self, account: SoakAccount, db: dict[PositionKey, Decimal], free: bool) -> list[PositionKey]:
        now = time.time()
        held = {k for k in account.all_keys() if self.ledger.exchange(k) > 0 or db.get(k, ZERO) > 0}
        if not free:
            return [
                k for k in account.all_keys() if self._idle(k, now) and db.get(k, ZERO) == self.ledger.exchange(k) > 0
            ]

        def clear(key: PositionKey) -> bool:
            # one-way mode holds one side per market: the other side must be empty (and quiet) too
            twins = [key] if account.hedge else [PositionKey(key.account, key.market, s) for s in SIDES]
            return all(t not in held and self._idle(t, now) for t in twins)

        return [k for k in account.all_keys() if clear(k)]

    async def step(self) -> None:
        name, _, free, handler = self.rng.choices(self.catalogue, weights=[c[1] for c in self.catalogue])[0]
        account = self.rng.choices(self.accounts, weights=[a.activity for a in self.accounts])[0]
        candidates = self._candidates(account, await self.bot.sizes(account.name), free)
        if not candidates:
            self.skipped += 1
            return
        key = self.rng.choice(candidates)
        self.stepping.add(key)
        try:
            await handler(account, key)
            self.events[name] += 1
        finally:
            self.stepping.discard(key)

    def start(self, every_s: float) -> asyncio.Task[None]:
        """Make events until :meth:`stop`; the task ends only by stopping (or by failing)."""
        self._runner = asyncio.create_task(self._run(every_s))
        return self._runner

    async def _run(self, every_s: float) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.rng.expovariate(1 / every_s))
                break
            try:
                await self.step()
            except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        """No new events; an event under way and the bot's second writes finish (a write is never cut between
        the venue and the ledger); drift whose end is not yet due lasts to the end."""
        self._stopping.set()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        for task in list(self._waiting):
            task.cancel()
        await asyncio.gather(*self.halves, *self.heals, return_exceptions=True)

    # -- writing both sides, into the ledger -------------------------------------------------------------------

    async def _set(self, key: PositionKey, size: Decimal, what: str, planned: float | None = None) -> None:
        await self.venue.set(key, size)
        self._note(key, exchange=size, young=True, what=what, planned=planned)

    async def _close(
        self, key: PositionKey, cause: str, what: str, qty: Decimal | None = None, planned: float | None = None
    ) -> None:
        await self.venue.close(key, cause, qty)
        left = ZERO if qty is None else self.ledger.exchange(key) - qty
        self._note(key, exchange=left, young=qty is not None, what=what, planned=planned)

    async def _insert(
        self, account: SoakAccount, key: PositionKey, size: Decimal, what: str, planned: float | None = None
    ) -> None:
        delta = await self.bot.insert(account, key, size)
        self._note(key, db_delta=delta, young=True, what=what, planned=planned)

    async def _close_rows(self, key: PositionKey, what: str, planned: float | None = None) -> None:
        delta = await self.bot.close(key)
        if delta:
            self._note(key, db_delta=delta, young=False, what=what, planned=planned)

    async def _resize_rows(self, key: PositionKey, size: Decimal, what: str, planned: float | None = None) -> None:
        delta = await self.bot.resize(key, size)
        if delta:
            self._note(key, db_delta=delta, young=True, what=what, planned=planned)

    def _note(
        self, key: PositionKey, *, exchange: Decimal | None = None, db_delta: Decimal = ZERO, young: bool, what: str,
        planned: float | None,
    ) -> None:  # fmt: skip
        at = time.time()
        self.ledger.record(at, key, exchange=exchange, db_delta=db_delta, young=young, what=what, planned_s=planned)
        self.last_change[key] = at

    def _later(
        self,
        pool: set[asyncio.Task[None]],
        key: PositionKey,
        delay: float,
        work: Callable[[], Awaitable[None]],
        plan: Change | None = None,
    ) -> None:
        """``work`` after ``delay``; a heal may be given up while it waits (see :meth:`stop`), never once begun —
        and then the change that planned it plans nothing any more (its drift lasts)."""

        async def run() -> None:
            try:
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    if plan is not None:
                        self.ledger.abandon(plan)
                    raise
                self._waiting.discard(task)
                await work()
            except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self.pending[key] -= 1

        self.pending[key] += 1
        task = asyncio.create_task(run())
        pool.add(task)
        if pool is self.heals:
            self._waiting.add(task)
        task.add_done_callback(pool.discard)
        task.add_done_callback(self._waiting.discard)

    # -- drift, with a planned life ----------------------------------------------------------------------------

    def _life(self, young: bool) -> float | None:
        """How long a drift lasts: shorter than reconbot's minimum (not drift), a little longer, a lot longer, or
        to the end of the soak (None)."""
        least, due = self.timing.min_life(young), self.timing.due_s
        roll = self.rng.random()
        if roll < 0.15:
            return self.rng.uniform(0.2, 0.7 * least)
        if roll < 0.45:
            return self.rng.uniform(least + 0.5, least + due)
        if roll < 0.8:
            return self.rng.uniform(least + due + 2, least + 3 * due)
        return None

    def _ends(self, account: SoakAccount, key: PositionKey, life: float | None) -> None:
        plan = self.ledger.last(key)
        if life is not None and plan is not None and plan.planned_s == life:  # the drift was made
            self._later(self.heals, key, life, lambda: self.heal(account, key), plan)

    async def heal(self, account: SoakAccount, key: PositionKey) -> None:
        """End the key's drift the way the world would; nothing if it ended already (reconbot fixed a ghost)."""
        exchange = self.ledger.exchange(key)
        db = (await self.bot.sizes(account.name)).get(key, ZERO)
        kind = drift_kind(exchange, db)
        if kind is FindingKind.ORPHAN:
            if self.rng.random() < 0.5:
                await self._insert(account, key, exchange, "the bot adopts the orphan")
            else:
                await self._close(key, "manual", "the orphan is closed by hand")
        elif kind is FindingKind.GHOST:
            await self._close_rows(key, "the bot closes the ghost's row")
        elif kind is FindingKind.QUANTITY_MISMATCH:
            if self.rng.random() < 0.5:
                await self._resize_rows(key, exchange, "the bot sets its row to the exchange size")
            elif exchange > db:
                await self._close(key, "manual", "the position is cut to the DB size", qty=exchange - db)
            else:
                await self._set(key, db, "the position is brought up to the DB size")

    async def orphan(self, account: SoakAccount, key: PositionKey) -> None:
        life = self._life(young=True)
        await self._set(key, self.rng.choice(SIZES), "a position opens with no row", life)
        self._ends(account, key, life)

    async def phantom_row(self, account: SoakAccount, key: PositionKey) -> None:
        life = self._life(young=True)
        await self._insert(account, key, self.rng.choice(SIZES), "the bot writes a row for no position", life)
        self._ends(account, key, life)

    async def row_closed(self, account: SoakAccount, key: PositionKey) -> None:
        life = self._life(young=False)
        await self._close_rows(key, "the bot closes its row, the position stays", life)
        self._ends(account, key, life)

    async def ghost(self, account: SoakAccount, key: PositionKey) -> None:
        life = self._life(young=False)
        cause = self.rng.choice(GHOST_CAUSES)
        await self._close(key, cause, f"the position vanishes ({cause})", planned=life)
        self._ends(account, key, life)

    async def partial_close(self, account: SoakAccount, key: PositionKey) -> None:
        size = self.ledger.exchange(key)
        qty = max(Decimal("0.1"), (size * Decimal(str(self.rng.uniform(0.2, 0.8)))).quantize(Decimal("0.1")))
        if qty >= size:
            return
        life = self._life(young=True)
        cause = self.rng.choice(("liquidation", "manual"))
        await self._close(key, cause, f"part of the position closes ({cause})", qty=qty, planned=life)
        self._ends(account, key, life)

    async def size_up(self, account: SoakAccount, key: PositionKey) -> None:
        life = self._life(young=True)
        bigger = self.ledger.exchange(key) + self.rng.choice(SIZES)
        await self._set(key, bigger, "the position grows by hand", life)
        self._ends(account, key, life)

    async def row_resized(self, account: SoakAccount, key: PositionKey) -> None:
        size = self.ledger.exchange(key)
        life = self._life(young=True)
        await self._resize_rows(key, self.rng.choice([s for s in SIZES if s != size]), "the bot resizes its row", life)
        self._ends(account, key, life)

    # -- the trading bot's own changes: both sides, the second a moment later ------------------------------------

    def _lag(self) -> float:
        return self.rng.uniform(0.05, self.lag_max_s)

    async def bot_opens(self, account: SoakAccount, key: PositionKey) -> None:
        size, lag = self.rng.choice(SIZES), self._lag()
        if self.rng.random() < 0.5:
            await self._set(key, size, "the bot's entry fills", lag)
            self._later(self.halves, key, lag, lambda: self._insert(account, key, size, "the bot records its entry"))
        else:
            await self._insert(account, key, size, "the bot records its entry before the fill", lag)
            self._later(self.halves, key, lag, lambda: self._set(key, size, "the bot's entry fills"))

    async def bot_closes(self, account: SoakAccount, key: PositionKey) -> None:
        lag = self._lag()
        if self.rng.random() < 0.5:
            await self._close(key, "manual", "the bot closes its position", planned=lag)
            self._later(self.halves, key, lag, lambda: self._close_rows(key, "the bot records its close"))
        else:
            await self._close_rows(key, "the bot records its close before the order", lag)
            self._later(self.halves, key, lag, lambda: self._close(key, "manual", "the bot closes its position"))

    async def bot_resizes(self, account: SoakAccount, key: PositionKey) -> None:
        size, lag = self.ledger.exchange(key), self._lag()
        target = self.rng.choice([s for s in SIZES if s != size])

        async def exchange_side() -> None:
            if target < size:
                await self._close(key, "manual", "the bot reduces its position", qty=size - target, planned=lag)
            else:
                await self._set(key, target, "the bot adds to its position", lag)

        if self.rng.random() < 0.5:
            await exchange_side()
            self._later(self.halves, key, lag, lambda: self._resize_rows(key, target, "the bot records the new size"))
        else:
            await self._resize_rows(key, target, "the bot records the new size before the order", lag)
            self._later(self.halves, key, lag, exchange_side)
