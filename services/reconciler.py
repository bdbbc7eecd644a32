"""From a check to alerts: run the monitor, file the result as findings, apply the safe auto-fix, queue what
must be said, and tell the listeners (console, an embedding program's callback, the deliverers)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from services import outbox
from services.findings import AlertPolicy, FiledCheck, StoredFinding
from services.fixes import plan_for_finding
from services.model import ALL_KINDS, FindingKind, FindingState, Sighting
from services.notices import Notice, NoticeKind
from services.outbox import Destination, OutboxKind
from services.plans import FixAction
from services.runtime import Runtime

log = logging.getLogger(__name__)

Listener = Callable[[FiledCheck], Awaitable[None] | None]
AUTO_FIX_ACTOR = "reconbot (auto-fix)"


@dataclass(frozen=True)
class AutoFix:
    """Mark confirmed ghosts closed without asking, at most ``max_per_run`` at a time."""

    enabled: bool = False
    max_per_run: int = 3


@dataclass
class _Batch:
    kinds: set[FindingKind]
    accounts: set[str] | None = None  # None: every account
    done: asyncio.Future[FiledCheck] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def covers(self, kinds: frozenset[FindingKind], accounts: Collection[str] | None) -> bool:
        if not kinds <= self.kinds:
            return False
        return self.accounts is None or (accounts is not None and set(accounts) <= self.accounts)

    def join(self, kinds: frozenset[FindingKind], accounts: Collection[str] | None) -> None:
        self.kinds |= kinds
        self.accounts = None if accounts is None or self.accounts is None else self.accounts | set(accounts)


def _kept(finding: StoredFinding) -> bool:
    growth = finding.details.growth
    return growth is not None and growth.before.state is FindingState.ACKNOWLEDGED


class Reconciler:
    def __init__(
        self,
        runtime: Runtime,
        destinations: Sequence[Destination],
        listeners: Sequence[Listener] = (),
        *,
        policy: AlertPolicy | None = None,
        auto_fix: AutoFix | None = None,
    ):
        self.runtime = runtime
        self.destinations = list(destinations)
        self.listeners = list(listeners)
        self.policy = policy or AlertPolicy.from_settings(runtime.settings.alerts)
        self.auto_fix = auto_fix or AutoFix()
        self.wakeups: list[Callable[[], None]] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: _Batch | None = None
        self._next: _Batch | None = None
        self.last: FiledCheck | None = None

    def wake(self) -> None:
        """Tell every deliverer that the outbox has new rows."""
        for wakeup in self.wakeups:
            wakeup()

    async def check(
        self,
        kinds: frozenset[FindingKind] = ALL_KINDS,
        accounts: Sequence[str] | None = None,
        sightings: Collection[Sighting] = (),
    ) -> FiledCheck:
        """One confirmed check, filed. Checks of one account never overlap within one process, and requests for
        every account coalesce: one that a running check covers shares its result, the others share the next
        check. So a burst of /scan commands costs the venues one read, not one each. ``sightings`` (what a stream
        announced on these accounts) count as the first of the two reads that confirm a finding."""
        if accounts is not None:
            async with self._holding(accounts):
                return await self._check_now(kinds, accounts, sightings)
        return await self._coalesced(kinds, 0.0)

    async def scheduled_check(
        self, kinds: frozenset[FindingKind], window_s: float = 0.0, accounts: Collection[str] | None = None
    ) -> FiledCheck:
        """Like ``check``, but the next check waits ``window_s`` for others to join: when the orphan scan and
        the reconciliation fall due together, the exchanges are read once for both. ``accounts``: the ones this
        replica holds (None: every account)."""
        return await self._coalesced(kinds, window_s, accounts)

    async def _coalesced(
        self, kinds: frozenset[FindingKind], window_s: float, accounts: Collection[str] | None = None
    ) -> FiledCheck:
        running = self._running
        if running is not None and running.covers(kinds, accounts):
            return await asyncio.shield(running.done)
        if self._next is not None:
            self._next.join(kinds, accounts)
            return await asyncio.shield(self._next.done)
        batch = self._next = _Batch(set(kinds), None if accounts is None else set(accounts))
        try:
            await asyncio.sleep(window_s)  # even 0 yields once, so a job due at the same moment can join
            async with self._holding(None):
                self._next = None
                self._running = batch
                names = None if batch.accounts is None else [n for n in self.runtime.gateways if n in batch.accounts]
                filed = await self._check_now(frozenset(batch.kinds), names)
        except BaseException as exc:
            if self._next is batch:
                self._next = None
            if not batch.done.done():
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved here so an unawaited batch does not warn
            raise
        finally:
            if self._running is batch:
                self._running = None
        batch.done.set_result(filed)
        return filed

    async def _check_now(
        self, kinds: frozenset[FindingKind], accounts: Sequence[str] | None, sightings: Collection[Sighting] = ()
    ) -> FiledCheck:
        filed = await self._file(kinds, accounts, sightings)
        if filed.missed:
            filed = filed.then(await self._confirm_ends(filed, kinds))
        if self.auto_fix.enabled and FindingKind.GHOST in kinds:
            filed = await self._auto_fix(filed)
        self.last = filed
        self.wake()
        for listener in self.listeners:
            try:
                outcome = listener(filed)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("a check listener failed")
        return filed

    async def _file(
        self, kinds: frozenset[FindingKind], accounts: Sequence[str] | None, sightings: Collection[Sighting]
    ) -> FiledCheck:
        known = await self.runtime.findings.live_fingerprints()
        result = await self.runtime.monitor.check(kinds, accounts, known, sightings)
        return await self.runtime.findings.file(result, self.destinations, self.policy)

    async def _confirm_ends(self, filed: FiledCheck, kinds: frozenset[FindingKind]) -> FiledCheck:
        """The read that confirms drift ended, as the monitor's second read confirms drift that began: the
        accounts where this check no longer saw a live finding are read again ``verify_delay_s`` later and filed,
        which resolves what that read does not see either and keeps what it sees. Within the check (its accounts
        are held), so its caller — a trader's /scan included — hears the outcome, not a doubt."""
        missed = {f.account for f in filed.missed}
        self.wake()  # what the first read found new goes out now, not after the wait
        await asyncio.sleep(self.runtime.monitor.scan.verify_delay_s)
        return await self._file(kinds, [name for name in self.runtime.gateways if name in missed], ())

    @contextlib.asynccontextmanager
    async def _holding(self, accounts: Sequence[str] | None) -> AsyncIterator[None]:
        """Checks of the same account never overlap; checks of different accounts (stream-triggered ones on
        two accounts) run side by side. Locks are taken in one order, so two checks never wait on each other."""
        names = sorted(set(self.runtime.gateways if accounts is None else accounts))
        async with contextlib.AsyncExitStack() as stack:
            for name in names:
                await stack.enter_async_context(self._locks.setdefault(name, asyncio.Lock()))
            yield

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait for a running check to finish (bounded); True when none is running any more."""
        try:
            async with asyncio.timeout(timeout_s), self._holding(None):
                return True
        except TimeoutError:
            return False

    async def _auto_fix(self, filed: FiledCheck) -> FiledCheck:
        """Close confirmed ghosts nobody chose to keep. Never on an unchecked account (they yield no findings);
        more ghosts at once than the limit looks systemic, so then nothing is fixed and a human is asked. A kept
        (acknowledged) ghost that grew is open again so that it rings, not so that it is fixed behind the back of
        whoever kept it. A ghost this check no longer saw is left to the read that confirms its end."""
        unseen = {f.id for f in filed.missed}
        ghosts = [
            f
            for f in filed.live
            if f.kind is FindingKind.GHOST and f.state is FindingState.OPEN and not _kept(f) and f.id not in unseen
        ]
        if not ghosts:
            return filed
        if len(ghosts) > self.auto_fix.max_per_run:
            notice = Notice(NoticeKind.AUTO_FIX_LIMIT, count=len(ghosts), limit=self.auto_fix.max_per_run)
            await self.notify(notice)
            return replace(filed, notices=(*filed.notices, notice))
        fixed: list[StoredFinding] = []
        for ghost in ghosts:
            plan = plan_for_finding(ghost, FixAction.CLOSE_GHOST)
            if plan is None:
                continue
            outcome = await self.runtime.fixes.apply(plan, AUTO_FIX_ACTOR, finding_id=ghost.id)
            if outcome.done:
                closed = await self.runtime.findings.get(ghost.id)
                if closed is not None:
                    fixed.append(closed)
            else:
                log.info("auto-fix left finding #%s open: %s", ghost.id, outcome.message)
        fixed_ids = {f.id for f in fixed}
        return replace(
            filed,
            live=tuple(f for f in filed.live if f.id not in fixed_ids),
            resolved=(*filed.resolved, *fixed),
        )

    async def notify(self, notice: Notice) -> None:
        """Queue a notice for every channel."""
        async with self.runtime.database.pool.acquire() as conn:
            await outbox.enqueue_many(conn, self.destinations, OutboxKind.NOTICE, body=notice.to_body())
        self.wake()
