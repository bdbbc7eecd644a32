"""Replicas that share the accounts through the database they already share: every account belongs to one of
``scale.shards`` shards (by a stable hash of its name), and each ``run`` process checks the accounts of the shards
it holds. A shard is held with a PostgreSQL session advisory lock on one connection the process keeps, so the
lock dies with the process (or its connection): the others take its shards over at their next claim round. The
replica watches that connection: the moment its session ends it holds nothing (and checks nothing) and claims
again at once, with a new session.

Each round a replica counts the live replicas (each holds one replica lock besides its shards), aims at its fair
share — ceil(shards / replicas) — gives back shards above it and takes free ones below it. Findings, the outbox
and the audit log stay in the one database, filed under a lock, so nothing is announced twice or lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.database import replica_name

log = logging.getLogger(__name__)

SHARD_LOCKS = 0x72656301  # advisory lock namespaces (classid): "rec" + 1 for shards, + 2 for replicas
REPLICA_LOCKS = 0x72656302
MAX_REPLICAS = 1024

OnChange = Callable[[set[str], set[str]], Awaitable[None] | None]  # (accounts gained, accounts lost)


def shard_of(account: str, shards: int) -> int:
    """A stable shard for an account name: the same in every process and every release."""
    return zlib.crc32(account.encode()) % shards


@dataclass(frozen=True, slots=True)
class Holder:
    replica: str  # application_name of the holding connection: reconbot host:pid
    shards: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ShardStatus:
    held: tuple[int, ...]
    shards: int
    replicas: int
    holders: tuple[Holder, ...] = ()


class ShardClaims:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        pool: asyncpg.Pool | None,
        accounts: Sequence[str],
        shards: int,
        claim_interval_s: float,
        on_change: OnChange | None = None,
    ):
        self.connect = connect
        self.pool = pool
        self.accounts = list(accounts)
        self.shards = shards
        self.claim_interval_s = claim_interval_s
        self.on_change = on_change
        self.name = replica_name()
        self.held: set[int] = set()
        self.replicas = 1
        self.slot: int | None = None
        self.rounds = 0
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._session_lost = asyncio.Event()
        self._told: set[str] = set()  # the accounts on_change was last told this replica checks
        self._reports: set[asyncio.Task[tuple[set[str], set[str]]]] = set()

    # -- what this replica checks -----------------------------------------------------------------------------

    def owned(self) -> list[str]:
        """The accounts of the shards held now, in configured order."""
        return [name for name in self.accounts if shard_of(name, self.shards) in self.held]

    def owns(self, account: str) -> bool:
        return shard_of(account, self.shards) in self.held

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Claim a first share before the first check, then keep claiming every ``claim_interval_s``."""
        await self.claim()
        self._task = asyncio.create_task(self._run(), name="shard claims")

    async def stop(self) -> None:
        """Give every shard back at once (the others need not wait for the lock to die)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_connection(unlock=True)
        self.held = set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._session_lost.wait(), self.claim_interval_s)
            self._session_lost.clear()
            await self.claim()

    # -- a claim round ----------------------------------------------------------------------------------------

    async def claim(self) -> tuple[set[str], set[str]]:
        """One round: returns the accounts gained and lost."""
        self.rounds += 1
        try:
            await self._claim()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("shard claim failed (%s); holding nothing until the database answers", type(exc).__name__)
            await self._drop_connection(unlock=False)
            self.held = set()
        if self._conn is None:  # the session ended during the round: what it took went with it
            self.held = set()
        return await self._report()

    async def _report(self) -> tuple[set[str], set[str]]:
        """Tell on_change which accounts were gained and lost since it was last told; returns them."""
        now = set(self.owned())
        gained, lost = now - self._told, self._told - now
        self._told = now
        if not (gained or lost):
            return gained, lost
        if self.on_change is not None:
            outcome = self.on_change(gained, lost)
            if asyncio.iscoroutine(outcome):
                await outcome
        log.info("shards: holding %d of %d (%d replica(s))", len(self.held), self.shards, self.replicas)
        return gained, lost

    def _on_terminated(self, conn: Any) -> None:
        """The claim session ended (terminated, or its socket broke): its locks are gone, so hold nothing and
        check nothing from now on, and claim again at once."""
        if conn is not self._conn:
            return  # a connection this replica closed itself
        self._conn, self.slot = None, None
        self.held = set()
        log.warning("shards: the claim session ended; holding nothing until the locks are claimed again")
        report = asyncio.get_running_loop().create_task(self._report())
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)
        self._session_lost.set()

    async def _claim(self) -> None:
        conn = await self._connection()
        if self.slot is None:
            for slot in range(MAX_REPLICAS):
                if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", REPLICA_LOCKS, slot):
                    self.slot = slot
                    break
        self.replicas = max(1, await self._count(conn, REPLICA_LOCKS))
        target = math.ceil(self.shards / self.replicas)
        for shard in sorted(self.held, reverse=True)[: max(0, len(self.held) - target)]:
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", SHARD_LOCKS, shard)
            self.held.discard(shard)
        if len(self.held) >= target:
            return
        taken = await self._taken(conn)
        start = (self.slot or 0) * target  # replicas start at different shards, so they rarely race
        for offset in range(self.shards):
            shard = (start + offset) % self.shards
            if shard in self.held or shard in taken:
                continue
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", SHARD_LOCKS, shard):
                self.held.add(shard)
                if len(self.held) >= target:
                    return

    async def _connection(self) -> Any:
        if self._conn is None:
            self._conn = await self.connect()
            self._conn.add_termination_listener(self._on_terminated)
            await self._conn.execute("SELECT set_config('application_name', $1, false)", self.name)
        return self._conn

    async def _drop_connection(self, *, unlock: bool) -> None:
        conn, self._conn, self.slot = self._conn, None, None
        if conn is None:
            return
        if unlock:
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(Exception):
            await conn.close(timeout=5)

    @staticmethod
    async def _count(conn: Any, namespace: int) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::oid "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                namespace,
            )
        )

    @staticmethod
    async def _taken(conn: Any) -> set[int]:
        rows = await conn.fetch(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::oid "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            SHARD_LOCKS,
        )
        return {int(row["objid"]) for row in rows}

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[Any]:
        """A connection for a status read: from the pool when there is one (not the claim connection, which a
        claim round may be using)."""
        if self.pool is not None:
            async with self.pool.acquire() as conn:
                yield conn
            return
        conn = await self.connect()
        try:
            yield conn
        finally:
            await conn.close()

    async def status(self) -> ShardStatus:
        """Which shards this replica holds, and every replica's (for /healthz, /metrics and /status)."""
        holders: tuple[Holder, ...] = ()
        with contextlib.suppress(Exception):
            async with self._reader() as conn:
                rows = await conn.fetch(
                    "SELECT a.application_name AS replica, l.objid AS shard FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid = $1::oid AND l.database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1, 2",
                    SHARD_LOCKS,
                )
            by_replica: dict[str, list[int]] = {}
            for row in rows:
                by_replica.setdefault(row["replica"] or "?", []).append(int(row["shard"]))
            holders = tuple(Holder(name, tuple(shards)) for name, shards in by_replica.items())
        return ShardStatus(tuple(sorted(self.held)), self.shards, self.replicas, holders)
