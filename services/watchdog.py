"""A watchdog over the checks themselves: the scheduler, a stream or a command can all fail to run a check without
anything raising (a job that hangs, a scheduler that stopped), and then nobody watches the accounts while every
channel stays quiet. So each replica looks, apart from the scheduler, at when each account it holds was last
checked (``account_checks``, written by every check, failed ones too, on any replica) and raises one loud notice
when some have gone ``scan.stall_after_s`` without a check, and a quiet one when they are checked again.

An account just taken over from another replica counts from the moment it was taken, so a take-over is not a
stall; an account given away is forgotten (the replica holding it now watches it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

import asyncpg

from services.notices import Notice, NoticeKind

log = logging.getLogger(__name__)

Notify = Callable[[Notice], Awaitable[None]]
LastChecks = Callable[[], Awaitable[Mapping[str, asyncpg.Record]]]


def _rounded(seconds: float) -> float:
    """Whole seconds, or whole minutes from two minutes on, so a notice reads "3 s" or "12 min"."""
    return float(round(seconds / 60) * 60) if seconds >= 120 else float(round(seconds))


class CheckWatchdog:
    def __init__(
        self,
        last_checks: LastChecks,
        owned: Callable[[], Sequence[str]],
        notify: Notify,
        *,
        interval_s: float,
        stall_after_s: float,
        replica: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.last_checks = last_checks
        self.owned = owned
        self.notify = notify
        self.interval_s = interval_s
        self.stall_after_s = stall_after_s
        self.replica = replica  # this replica's name for the notices, when several share the accounts
        self.clock = clock
        self.stalled: set[str] = set()
        self._held_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def period_s(self) -> float:
        return min(30.0, max(0.25, self.stall_after_s / 4))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="check watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.inspect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("check watchdog could not read the last checks (%s); looking again", type(exc).__name__)

    def _quiet_for(self, held: Sequence[str], checks: Mapping[str, asyncpg.Record]) -> dict[str, float]:
        """Seconds since each held account was last checked, or since it was taken, whichever is shorter."""
        now, wall = self.clock(), datetime.now(UTC)
        quiet = {}
        for name in held:
            since_held = now - self._held_since.setdefault(name, now)
            check = checks.get(name)
            since_check = (wall - check["checked_at"]).total_seconds() if check is not None else since_held
            quiet[name] = min(since_held, since_check)
        return quiet

    async def inspect(self) -> None:
        """One look: a notice for accounts that just stalled, one for stalled accounts checked again."""
        held = list(self.owned())
        for name in set(self._held_since) - set(held):
            del self._held_since[name]
            if name in self.stalled:
                self.stalled.discard(name)
                log.info("%s went to another replica while its checks were stalled here", name)
        quiet = self._quiet_for(held, await self.last_checks())
        stalled = [name for name in held if quiet[name] > self.stall_after_s and name not in self.stalled]
        resumed = [name for name in held if name in self.stalled and quiet[name] <= self.stall_after_s]
        if stalled:
            self.stalled.update(stalled)
            longest = max(quiet[name] for name in stalled)
            log.error("no check on %s for %.0fs (stall_after_s %.0f)", ", ".join(stalled), longest, self.stall_after_s)
            await self.notify(
                Notice(
                    NoticeKind.STALLED,
                    accounts=tuple(stalled),
                    interval_s=self.interval_s,
                    quiet_s=_rounded(longest),
                    replica=self.replica(),
                )
            )
        if resumed:
            self.stalled.difference_update(resumed)
            log.info("checks resumed on %s", ", ".join(resumed))
            await self.notify(Notice(NoticeKind.RESUMED, accounts=tuple(resumed), replica=self.replica()))
