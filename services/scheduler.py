"""Scheduled checks with APScheduler: orphans every ``scan.orphan_interval_s``, reconciliation every
``scan.reconcile_interval_s``, both at start-up; and housekeeping beside them (settling interrupted fixes).

A job never overlaps itself (``max_instances=1``), missed runs are coalesced, and a job that raises is
logged with its traceback and simply runs again next time. When both jobs fall due together, the first
waits briefly for the second so one snapshot serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from services.model import RECONCILIATION, SCAN_KINDS, FindingKind
from services.reconciler import Reconciler
from services.settings import ScanSettings

log = logging.getLogger(__name__)

JOBS = {"orphan scan": SCAN_KINDS, "reconciliation": RECONCILIATION}


class CheckScheduler:
    def __init__(self, reconciler: Reconciler, scan: ScanSettings, owned: Callable[[], Sequence[str]] | None = None):
        self.reconciler = reconciler
        self.scan = scan
        self.owned = owned  # the accounts this replica holds; None: every account
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.runs = 0
        self.failures = 0
        self._running: set[asyncio.Task[None]] = set()
        self._chores: dict[str, tuple[float, Callable[[], Awaitable[object]]]] = {}

    def every(self, name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` every ``interval_s`` once started, first one interval after start (start-up did it)."""
        self._chores[name] = (interval_s, job)

    def _interval(self, name: str) -> float:
        return self.scan.orphan_interval_s if name == "orphan scan" else self.scan.reconcile_interval_s

    def start(self) -> None:
        now = datetime.now(UTC)
        for name, kinds in JOBS.items():
            self._add(name, self._interval(name), self._run, [name, kinds], now, self.scan.jitter_s)
        for name, (interval, job) in self._chores.items():
            self._add(name, interval, self._chore, [name, job], now + timedelta(seconds=interval))
        self.scheduler.start()

    def _add(
        self,
        name: str,
        interval: float,
        func: Callable[..., Awaitable[None]],
        args: list[object],
        first: datetime,
        jitter: float = 0.0,
    ) -> None:
        """One job that never overlaps itself, with missed runs coalesced."""
        self.scheduler.add_job(
            func,
            IntervalTrigger(seconds=interval, jitter=jitter or None, timezone=UTC),
            args=args,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval / 2)),
            next_run_time=first,
        )

    @staticmethod
    async def _chore(name: str, job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        except Exception:
            log.exception("%s failed; it runs again at its next interval", name)

    def _partner_due_in(self, name: str) -> float | None:
        """Seconds until the other job runs, if that is soon enough to share this job's snapshot."""
        window = self.scan.jitter_s + 1.0
        now = datetime.now(UTC)
        for job in self.scheduler.get_jobs():
            if job.id != name and job.next_run_time is not None:
                wait = (job.next_run_time - now).total_seconds()
                if wait <= window:
                    return max(0.0, wait) + 0.2
        return None

    async def _run(self, name: str, kinds: frozenset[FindingKind]) -> None:
        """The job: APScheduler cancels running jobs when it shuts down, so the check runs in a task of its own
        and is only shielded from that, to finish (and be waited for) during a graceful stop."""
        task = asyncio.create_task(self._check(name, kinds), name=f"scheduled {name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def _check(self, name: str, kinds: frozenset[FindingKind]) -> None:
        accounts = None if self.owned is None else list(self.owned())
        if accounts == []:
            log.debug("scheduled %s: this replica holds no accounts now", name)
            return
        self.runs += 1
        try:
            await self.reconciler.scheduled_check(kinds, self._partner_due_in(name) or 0.0, accounts)
        except Exception:
            self.failures += 1
            log.exception("scheduled %s failed; it runs again in %ss", name, self._interval(name))

    async def wait_running(self, timeout_s: float) -> bool:
        """Wait for scheduled checks already under way; True when none is left."""
        if self._running:
            _done, pending = await asyncio.wait(set(self._running), timeout=timeout_s)
            return not pending
        return True

    def next_runs(self) -> dict[str, datetime | None]:
        if not self.scheduler.running:
            return {}
        return {job.name: job.next_run_time for job in self.scheduler.get_jobs() if job.id in JOBS}

    def shutdown(self) -> None:
        """Take no new work; a check already running is left to finish."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
