"""Checks of one account on demand, between the scheduled full checks: after a stream event (once a burst has
settled), after a stream (re)connects, when the trading bot changed the account's rows, and when a position that
was still inside the grace window leaves it. Requests for one account coalesce into the earliest one due; the
check itself is the reconciler's, so it is confirmed, filed and alerted like any other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.model import ALL_KINDS, Sighting
from services.positions import PositionsStore
from services.reconciler import Reconciler
from services.settings import AccountSettings
from services.snapshot import assign_rows

log = logging.getLogger(__name__)

GRACE_MARGIN_S = 0.25  # a booked re-check runs just after the window ends, never just before


@dataclass
class _Due:
    at: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    sightings: set[Sighting] = field(default_factory=set)


class AccountChecks:
    """One waiting or running check per account; ``request`` brings it forward, never back."""

    def __init__(
        self,
        reconciler: Reconciler,
        grace_s: Callable[[str], float],
        owns: Callable[[str], bool] = lambda _account: True,
    ):
        self.reconciler = reconciler
        self.grace_s = grace_s
        self.owns = owns  # another replica checks the accounts this one does not hold
        self.runs = 0
        self._due: dict[str, _Due] = {}
        self._stopping = False

    def request(self, account: str, delay_s: float = 0.0, sightings: Iterable[Sighting] = ()) -> None:
        """A check of ``account`` within ``delay_s``; ``sightings`` are what a stream announced there, carried
        into that check."""
        if self._stopping or not self.owns(account):
            return
        loop = asyncio.get_running_loop()
        due = self._due.setdefault(account, _Due())
        due.sightings.update(sightings)
        at = loop.time() + max(0.0, delay_s)
        if due.at is None or at < due.at:
            due.at = at
            due.wake.set()
        if due.task is None or due.task.done():
            due.task = asyncio.create_task(self._serve(account, due), name=f"checks {account}")

    def due_in(self, account: str) -> float | None:
        due = self._due.get(account)
        if due is None or due.at is None:
            return None
        return max(0.0, due.at - asyncio.get_running_loop().time())

    async def _serve(self, account: str, due: _Due) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if due.at is None:
                due.wake.clear()
                await due.wake.wait()
                continue
            wait = due.at - loop.time()
            if wait > 0:
                due.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await due.wake.wait()
                continue
            due.at = None
            sightings, due.sightings = frozenset(due.sightings), set()
            if self.owns(account):
                await self._check(account, sightings)

    async def _check(self, account: str, sightings: frozenset[Sighting] = frozenset()) -> None:
        self.runs += 1
        try:
            filed = await self.reconciler.check(ALL_KINDS, [account], sightings)
        except Exception:
            log.exception("%s: triggered check failed; the scheduled checks go on", account)
            return
        pending = [key for key in filed.result.pending if key.account == account]
        if pending:
            # this read saw them: the re-check when the window ends is the second sighting that confirms them
            # (a young ghost's too, since this read found no position there)
            gone = set(filed.result.pending_gone)
            seen = {Sighting(key.account, key.market, key.side, gone=key in gone, read=True) for key in pending}
            self.request(account, self.grace_s(account) + GRACE_MARGIN_S, seen)

    async def stop(self) -> None:
        """Take no new requests; a check already running finishes (the reconciler's lock is waited for by
        the service's stop)."""
        self._stopping = True
        tasks = [d.task for d in self._due.values() if d.task is not None]
        for due in self._due.values():
            due.wake.set()
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class DbPoller:
    """Re-reads the DB side every ``interval_s`` (no exchange request) and asks for a check of every account
    whose active rows changed: a row the trading bot closed or resized is seen in seconds, not at the next
    reconciliation."""

    def __init__(
        self,
        repository: PositionsStore,
        accounts: Sequence[AccountSettings],
        checks: AccountChecks,
        interval_s: float,
    ):
        self.repository = repository
        self.accounts = list(accounts)
        self.checks = checks
        self.interval_s = interval_s
        self.polls = 0
        self._seen: dict[str, frozenset[tuple[object, ...]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="db poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.poll()

    async def poll(self) -> list[str]:
        """One read; returns the accounts whose rows changed since the last one (none on the first)."""
        self.polls += 1
        try:
            rows = await self.repository.active(sorted({a.db_exchange or "" for a in self.accounts}))
        except Exception as exc:
            if not self._failing:
                log.warning("DB poll failed (%s); the scheduled checks go on", type(exc).__name__)
            self._failing = True
            return []
        self._failing = False
        assigned = assign_rows(rows, self.accounts, self.repository.has_account_column)
        now = {
            name: frozenset((r.id, r.symbol, r.side, r.quantity, r.status, r.updated_at) for r in account_rows)
            for name, account_rows in assigned.items()
        }
        before, self._seen = self._seen, now
        if before is None:
            return []
        changed = [name for name in now if now[name] != before.get(name)]
        for name in changed:
            self.checks.request(name)
        return changed
