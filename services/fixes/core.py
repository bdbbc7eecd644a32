"""The one way every fix is applied (a Confirm button, ``closeghost``, ``reconcile --fix``, auto-fix): run the
plan to its end even if the caller goes away, audit every outcome, close the finding it fixed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services import audit
from services.confirmations import FixLease
from services.findings import FindingsStore
from services.fixes.outcomes import FixOutcome, FixStatus, Reason, Refused, Why, refuse
from services.model import ExchangePosition, PositionKey
from services.monitor import Monitor
from services.outbox import Destination
from services.plans import CloseGhost, FixPlan, SetDbQuantity
from services.positions import PositionRow, PositionsStore, ReadOnlyStore
from services.snapshot import AccountSnapshot, assign_rows
from services.venues import Gateway, VenueError

log = logging.getLogger(__name__)

# A change whose answer was lost is settled by re-reading: this many reads, 0, 1, 2… pauses apart.
SETTLE_READS = 3
SETTLE_PAUSE_S = 1.0


def target_of(plan: FixPlan) -> str:
    """How the audit trail names what a plan changes."""
    if isinstance(plan, CloseGhost):
        return ", ".join(f"position #{pid}" for pid in plan.position_ids)
    if isinstance(plan, SetDbQuantity):
        return f"position #{plan.row.id}"
    return plan.where


def ids_of(plan: FixPlan) -> tuple[str, ...]:
    if isinstance(plan, CloseGhost):
        return plan.position_ids
    if isinstance(plan, SetDbQuantity):
        return (plan.row.id,)
    return ()


@dataclass
class FixCore:
    monitor: Monitor
    repository: PositionsStore
    findings: FindingsStore
    destinations: Sequence[Destination] = ()
    _running: set[asyncio.Task[FixOutcome]] = field(default_factory=set)

    @property
    def gateways(self) -> Mapping[str, Gateway]:
        return self.monitor.gateways

    @property
    def audit_pool(self) -> asyncpg.Pool:
        return self.findings.pool

    # -- the one entry point -----------------------------------------------------------------------------------

    async def apply(
        self,
        plan: FixPlan,
        actor: str,
        *,
        finding_id: int | None = None,
        confirmation_id: int | None = None,
        shown_as: str | None = None,
        lease: FixLease | None = None,
    ) -> FixOutcome:
        """Apply a plan exactly as shown or not at all, then close the finding it fixed.

        The fix runs to its end even if the caller is cancelled (a handler during shutdown): ``drain`` waits for
        it, and a fix that must be abandoned is audited as interrupted, so no confirmation is ever consumed
        without an outcome in the audit log. ``shown_as`` is how the fixer appears on the edited alert (default:
        ``actor``, as in the audit trail). ``lease``: the confirmation's, held until the outcome is recorded and
        then given back with the confirmation marked settled; a fix that ends any other way leaves it unsettled,
        for a re-read to settle (``services.fixes.interrupted``)."""
        task = asyncio.create_task(
            self._apply(plan, actor, finding_id, confirmation_id, shown_as or actor, lease), name=f"fix {plan.action}"
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def drain(self, timeout_s: float) -> bool:
        """Wait for fixes under way (bounded); the ones still running are interrupted and audited so."""
        if not self._running:
            return True
        _done, late = await asyncio.wait(set(self._running), timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
        return not late

    async def _apply(
        self,
        plan: FixPlan,
        actor: str,
        finding_id: int | None,
        confirmation_id: int | None,
        shown_as: str,
        lease: FixLease | None,
    ) -> FixOutcome:
        target = target_of(plan)
        settled = False
        try:
            try:
                self.check_writes(plan)
                outcome = await self.dispatch(plan, actor, confirmation_id)
            except Refused as refusal:
                outcome = await self.refused(plan, actor, target, refusal.reason, refusal.before, confirmation_id)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._interrupted(plan, actor, target, confirmation_id))
                raise
            if outcome.done:
                await self._close_finding(plan, outcome, shown_as, finding_id)
            settled = True
            return outcome
        finally:
            if lease is not None:
                await asyncio.shield(lease.release(settled=settled))

    async def dispatch(self, plan: FixPlan, actor: str, confirmation_id: int | None) -> FixOutcome:
        raise NotImplementedError

    async def refused_early(self, plan: FixPlan, actor: str) -> FixOutcome | None:
        """The audited refusal of a plan the trading bot's table cannot take (read-only), before anything is read
        or anyone is asked to confirm it; None when it may be asked."""
        try:
            self.check_writes(plan)
        except Refused as refusal:
            return await self.refused(plan, actor, target_of(plan), refusal.reason, None, None)
        return None

    async def _close_finding(self, plan: FixPlan, outcome: FixOutcome, actor: str, finding_id: int | None) -> None:
        finding_id = await self.finding_of(plan, finding_id)
        if finding_id is not None:
            await self.findings.mark_fixed(finding_id, actor, outcome.message, self.destinations)

    async def finding_of(self, plan: FixPlan, finding_id: int | None) -> int | None:
        """The finding a fix fixes: the alert's, or for ``/closeghost`` the live ghost of its row."""
        if finding_id is None and isinstance(plan, CloseGhost):
            ghost = await self.findings.live_ghost_for_position(plan.rows[0].id)
            finding_id = ghost.id if ghost else None
        return finding_id

    # -- the audit trail ------------------------------------------------------------------------------------------

    async def refused(
        self, plan: FixPlan, actor: str, target: str, reason: Reason, before: Any, confirmation_id: int | None
    ) -> FixOutcome:
        await self._audit(plan, actor, target, FixStatus.REFUSED, reason, before, confirmation_id)
        log.info("%s %s refused for %s: %s", plan.action, target, actor, reason)
        return FixOutcome(plan.action, target, FixStatus.REFUSED, reason, ids_of(plan), before)

    async def _interrupted(self, plan: FixPlan, actor: str, target: str, confirmation_id: int | None) -> None:
        await self._audit(plan, actor, target, FixStatus.INTERRUPTED, Reason(Why.INTERRUPTED), None, confirmation_id)

    async def _audit(
        self,
        plan: FixPlan,
        actor: str,
        target: str,
        status: FixStatus,
        reason: Reason,
        before: Any,
        confirmation_id: int | None,
    ) -> None:
        """An outcome that changed nothing, in its own short transaction."""
        async with self.audit_pool.acquire() as conn:
            await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=target,
                outcome=str(status),
                reason=str(reason),
                before=before,
                confirmation_id=confirmation_id,
            )

    # -- reading both sides again ---------------------------------------------------------------------------------

    def gateway(self, account: str) -> Gateway:
        gateway = self.gateways.get(account)
        if gateway is None:
            raise refuse(Why.NOT_CONFIGURED, account=account)
        return gateway

    async def read(self, account: str) -> AccountSnapshot:
        self.gateway(account)
        snapshot = (await self.monitor.reader.read([account]))[account]
        if not snapshot.checked:
            raise refuse(Why.UNCHECKED, account=account, error=snapshot.error)
        return snapshot

    @staticmethod
    async def load_markets(gateway: Gateway | None) -> None:
        """Symbols resolve through the venue's market list, so it must be loaded before rows are judged."""
        if gateway is None:
            return
        try:
            await gateway.load_markets()
        except VenueError as exc:
            raise refuse(Why.UNCHECKED, account=gateway.name, error=exc.reason) from None

    @staticmethod
    def exchange_position(snapshot: AccountSnapshot, key: PositionKey) -> ExchangePosition | None:
        return next((p for p in snapshot.exchange_positions if p.key == key), None)

    def owner(self, row: PositionRow) -> Gateway | None:
        accounts = [g.account for g in self.gateways.values()]
        owners = [
            name for name, rows in assign_rows([row], accounts, self.repository.has_account_column).items() if rows
        ]
        return self.gateways[owners[0]] if owners else None

    def check_writes(self, plan: FixPlan) -> None:
        """A plan that writes the trading bot's table is refused at once when reconbot may not write it."""
        if plan.writes_db:
            ids = ids_of(plan)
            self.check_writable(ids[0] if ids else None)

    def check_writable(self, position_id: str | None) -> None:
        """A table whose bot keeps its own state in memory (freqtrade) is not written unless the user says so."""
        try:
            self.repository.require_writable()
        except ReadOnlyStore as refusal:
            raise refuse(Why.READ_ONLY, remedy=refusal.reason(position_id or "ID")) from None
