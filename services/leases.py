"""Roles that one replica holds at a time (alert delivery per channel, Telegram polling), fenced.

A role is held with a PostgreSQL session advisory lock on a connection of its own, so it ends with the process
or with that connection. A lock alone does not stop a holder that lost its session: its pool reconnects and
its Telegram polling needs no database, so it would go on acting while another replica takes the lock. Hence:

- each acquisition bumps the role's generation in ``reconbot.leases`` (the fencing token); a write the role
  makes (an outbox claim) is one statement guarded by it, so a stale holder's write changes nothing;
- the holder watches its lock connection (asyncpg's termination listener) and, where it acts outside the
  database, checks it every few seconds (``watch``): ``lost`` is set the moment the session is gone, and the
  role stops until it holds the lock again.

A holder cut off by the network loses its lock when the server's keepalives give up on its session
(``services.database.KEEPALIVES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]

WAIT_S = 60.0  # a standby's blocking wait for the lock is renewed this often (a dead socket cannot hang it)
RETRY_S = 5.0  # after the database refused a standby
SESSION_TIMEOUT_S = 10.0  # a statement on the lock's session not answered within this loses the role

_BUMP = """INSERT INTO reconbot.leases (role, holder, generation) VALUES ($1, $2, 1)
           ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, generation = reconbot.leases.generation + 1,
               acquired_at = now()
           RETURNING generation"""


class LeaseLost(Exception):
    """The role's lock is no longer this process's: its session ended, or another holder took the role."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What a fenced write names: the role, and the generation its writer acquired."""

    role: str
    generation: int


class Lease:
    """One role: ``acquire`` waits until this process holds it, ``lost`` tells the moment it no longer does."""

    def __init__(self, connect: Connect, role: str, key: int):
        self.connect = connect
        self.role = role
        self.key = key
        self.generation: int | None = None
        self.lost = asyncio.Event()
        self._conn: Any = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held and not self.lost.is_set() and self._conn is not None and not self._conn.is_closed()

    @property
    def fence(self) -> Fence:
        if not self.held or self.generation is None:
            raise LeaseLost(self.role)
        return Fence(self.role, self.generation)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncpg.Connection]:
        """The session that holds the lock, for statements that must fail once the lock is gone (give them
        ``timeout=SESSION_TIMEOUT_S``). A broken or silent session, or a refused fence, loses the role: the
        caller gets LeaseLost."""
        if not self.held:
            raise LeaseLost(self.role)
        try:
            yield self._conn
        except LeaseLost:
            log.warning("%s: another process took the role; stopping", self.role)
            self.lose()
            raise
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
            log.warning("%s: the lock's session did not answer (%s); stopping", self.role, type(exc).__name__)
            self.lose()
            raise LeaseLost(self.role) from exc

    async def acquire(self, stopping: asyncio.Event, on_standby: Callable[[], None] | None = None) -> bool:
        """Wait until this process holds the role (True), or until ``stopping`` is set (False).

        A standby blocks in ``pg_advisory_lock`` rather than polling, so it takes over the moment the holder's
        session ends; ``on_standby`` is called once when another process holds the role."""
        told = False
        while not stopping.is_set():
            try:
                conn = await self._connection()
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key) or await self._wait(conn, stopping):
                    await self._take(conn)
                    return True
                if not told and not stopping.is_set() and on_standby is not None:
                    on_standby()
                told = True
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("%s: the database did not answer (%s); trying again", self.role, type(exc).__name__)
                await self._drop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), RETRY_S)
        return False

    async def _wait(self, conn: Any, stopping: asyncio.Event) -> bool:
        """Block on the lock for up to WAIT_S; False when the time ran out or we are stopping.

        A wait cut short may have raced the grant; the session then holds the lock already, and the next
        ``pg_try_advisory_lock`` on it says so (session locks are re-entrant)."""
        waiting = asyncio.ensure_future(conn.fetchval("SELECT pg_advisory_lock($1)", self.key, timeout=WAIT_S))
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not waiting.done():
                waiting.cancel()  # asyncpg cancels the statement on the server
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiting
        if waiting.cancelled() or isinstance(waiting.exception(), TimeoutError):
            return False
        waiting.result()
        return True

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.connect()
        return self._conn

    async def _take(self, conn: Any) -> None:
        self.generation = int(await conn.fetchval(_BUMP, self.role, _holder(conn)))
        self.lost = asyncio.Event()
        self._held = True
        conn.add_termination_listener(self._on_terminated)
        log.info("%s: this process holds the role now (generation %d)", self.role, self.generation)

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn and self._held:
            log.warning("%s: the lock's database session ended; stopping until the lock is held again", self.role)
            self.lose()

    def lose(self) -> None:
        """The role is no longer ours (a refused fenced write, a failed check): stop acting on it."""
        self.lost.set()

    async def verify(self) -> bool:
        """Whether the lock's session still answers and the role's generation is still ours."""
        try:
            async with self.session() as conn:
                current = await conn.fetchval(
                    "SELECT generation FROM reconbot.leases WHERE role = $1", self.role, timeout=SESSION_TIMEOUT_S
                )
                if current != self.generation:
                    raise LeaseLost(self.role)
        except LeaseLost:
            return False
        return self.held

    async def watch(self, every_s: float) -> None:
        """Check the lock every ``every_s`` (for a role that acts outside the database); returns once lost."""
        while self.held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), every_s)
            if not await self.verify():
                return

    async def release(self) -> None:
        """Give the role back (close the lock's session: the lock goes with it)."""
        self._held = False
        self.lost.set()
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)


def _holder(conn: Any) -> str:
    """Who holds a role, for an operator reading reconbot.leases: the session's application_name and pid."""
    settings = conn.get_settings()
    return f"{getattr(settings, 'application_name', '') or 'reconbot'} (backend {conn.get_server_pid()})"
