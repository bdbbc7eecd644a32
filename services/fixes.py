"""Fixes: the detection path backwards, one way for every caller (a Confirm button, ``closeghost``,
``reconcile --fix``, auto-fix).

A fix carries a plan: the action and the exact values the operator was shown. Applying it re-reads both sides,
refuses if anything differs from the plan ("changed since you were asked"), then makes one guarded change and
its audit row in a single transaction, and closes the finding it fixed. Refusals are audited too; so is an
order whose answer was lost, as ``unknown`` until a re-read settles what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from services import audit
from services.database import DatabaseError, first_line
from services.detector import is_young
from services.findings import FindingsStore, StoredFinding
from services.kinds import unknown_symbol_text
from services.model import ExchangePosition, Finding, FindingKind, PositionKey, Side
from services.monitor import Monitor
from services.outbox import Destination
from services.plans import AdoptOrphan, CloseGhost, CloseOrphan, FixAction, FixPlan, RowSeen, SetDbQuantity
from services.positions import PositionRow, PositionsStore
from services.report import decimal_text
from services.snapshot import AccountSnapshot, assign_rows, market_of
from services.venues import AnswerLost, Gateway, VenueError

log = logging.getLogger(__name__)

GHOST_EXIT_REASON = "reconciliation: position not found on exchange"
SETTLE_READS = 3
SETTLE_PAUSE_S = 1.0


class FixStatus(StrEnum):
    DONE = "done"
    REFUSED = "refused"
    UNKNOWN = "unknown"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class FixOutcome:
    """What a fix did, or why it did nothing; ``message`` is one line fit to show a trader."""

    action: FixAction
    target: str
    status: FixStatus
    message: str
    position_ids: tuple[str, ...] = ()
    before: Any = None
    after: Any = None

    @property
    def done(self) -> bool:
        return self.status is FixStatus.DONE


class Refused(Exception):
    """Raised inside a fix to stop it with a reason; becomes an audited refusal."""

    def __init__(self, reason: str, before: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.before = before


def changed(what: str, now: Decimal | None, approved: Decimal | None, row_id: str | None = None) -> Refused:
    """The refusal when a side moved after the question was asked: what it is now, what was approved."""
    now_text = decimal_text(now) if now is not None else "none"
    head = f"position #{row_id} changed meanwhile" if row_id else "changed since you were asked"
    return Refused(f"{head}: {what} now {now_text}, you approved {decimal_text(approved)}; nothing changed — ask again")


def _position_dict(position: ExchangePosition) -> dict[str, Any]:
    return {
        "account": position.account,
        "market": position.market,
        "side": position.side.value,
        "quantity": decimal_text(position.quantity),
        "entry_price": decimal_text(position.entry_price),
        "hedged": position.hedged,
    }


# -- plans from what the operator saw ----------------------------------------------------------------------------


def plan_for_finding(finding: StoredFinding, action: FixAction) -> FixPlan | None:
    """The plan a button on this finding's alert stands for, with the values that alert showed."""
    d = finding.details
    base = {"account": finding.account, "market": finding.market, "side": finding.side}
    rows = tuple(
        RowSeen(id=str(r["id"]), symbol=str(r["symbol"]), quantity=Decimal(str(r["quantity"])))
        for r in d.get("db_rows") or []
    )
    exchange_quantity = Decimal(d["exchange_quantity"]) if d.get("exchange_quantity") is not None else None
    if action is FixAction.CLOSE_GHOST and finding.kind is FindingKind.GHOST and rows:
        return CloseGhost(**base, rows=rows)
    if finding.kind is FindingKind.ORPHAN and exchange_quantity is not None:
        if action is FixAction.ADOPT_ORPHAN:
            entry = Decimal(d["entry_price"]) if d.get("entry_price") else None
            return AdoptOrphan(**base, quantity=exchange_quantity, entry_price=entry)
        if action is FixAction.CLOSE_ORPHAN:
            return CloseOrphan(**base, quantity=exchange_quantity, hedged=bool(d.get("hedged")))
    if (
        action is FixAction.SET_DB_QUANTITY
        and finding.kind is FindingKind.QUANTITY_MISMATCH
        and len(rows) == 1
        and exchange_quantity is not None
    ):
        return SetDbQuantity(**base, row=rows[0], exchange_quantity=exchange_quantity)
    return None


def ghost_plan(finding: Finding) -> CloseGhost:
    """Close the rows of a ghost found by a check, at the sizes that check read."""
    rows = tuple(RowSeen(id=p.id, symbol=p.symbol, quantity=p.quantity) for p in finding.db_positions)
    return CloseGhost(account=finding.key.account, market=finding.key.market, side=finding.key.side, rows=rows)


# -- the service ----------------------------------------------------------------------------------------------------


@dataclass
class FixService:
    monitor: Monitor
    repository: PositionsStore
    findings: FindingsStore
    destinations: Sequence[Destination] = ()
    _running: set[asyncio.Task[FixOutcome]] = field(default_factory=set)

    @property
    def gateways(self) -> Mapping[str, Gateway]:
        return self.monitor.gateways

    # -- the one entry point -----------------------------------------------------------------------------------

    async def apply(
        self,
        plan: FixPlan,
        actor: str,
        *,
        finding_id: int | None = None,
        confirmation_id: int | None = None,
        shown_as: str | None = None,
    ) -> FixOutcome:
        """Apply a plan exactly as shown or not at all, then close the finding it fixed.

        The fix runs to its end even if the caller is cancelled (a handler during shutdown): ``drain`` waits for
        it, and a fix that must be abandoned is audited as interrupted, so no confirmation is ever consumed
        without an outcome in the audit log. ``shown_as`` is how the fixer appears on the edited alert (default:
        ``actor``, as in the audit trail)."""
        task = asyncio.create_task(
            self._apply(plan, actor, finding_id, confirmation_id, shown_as or actor), name=f"fix {plan.action}"
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
        self, plan: FixPlan, actor: str, finding_id: int | None, confirmation_id: int | None, shown_as: str
    ) -> FixOutcome:
        target = _target(plan)
        try:
            outcome = await self._dispatch(plan, actor, confirmation_id)
        except Refused as refusal:
            outcome = await self._refuse(plan, actor, target, refusal.reason, refusal.before, confirmation_id)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._interrupted(plan, actor, target, confirmation_id))
            raise
        if outcome.done:
            await self._close_finding(plan, outcome, shown_as, finding_id)
        return outcome

    async def _dispatch(self, plan: FixPlan, actor: str, confirmation_id: int | None) -> FixOutcome:
        if isinstance(plan, CloseGhost):
            return await self._close_ghost(plan, actor, confirmation_id)
        if isinstance(plan, AdoptOrphan):
            return await self._adopt(plan, actor, confirmation_id)
        if isinstance(plan, CloseOrphan):
            return await self._close_orphan(plan, actor, confirmation_id)
        return await self._set_quantity(plan, actor, confirmation_id)

    async def _close_finding(self, plan: FixPlan, outcome: FixOutcome, actor: str, finding_id: int | None) -> None:
        if finding_id is None and isinstance(plan, CloseGhost):
            ghost = await self.findings.live_ghost_for_position(plan.rows[0].id)
            finding_id = ghost.id if ghost else None
        if finding_id is not None:
            await self.findings.mark_fixed(finding_id, actor, outcome.message, self.destinations)

    # -- audit helpers ------------------------------------------------------------------------------------------

    @property
    def audit_pool(self) -> asyncpg.Pool:
        return self.findings.pool

    async def _refuse(
        self, plan: FixPlan, actor: str, target: str, reason: str, before: Any, confirmation_id: int | None
    ) -> FixOutcome:
        async with self.audit_pool.acquire() as conn:
            await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=target,
                outcome="refused",
                reason=reason,
                before=before,
                confirmation_id=confirmation_id,
            )
        log.info("%s %s refused for %s: %s", plan.action, target, actor, reason)
        return FixOutcome(plan.action, target, FixStatus.REFUSED, reason, _ids(plan), before)

    async def _interrupted(self, plan: FixPlan, actor: str, target: str, confirmation_id: int | None) -> None:
        async with self.audit_pool.acquire() as conn:
            await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=target,
                outcome="interrupted",
                reason="reconbot stopped before this fix finished; check the position before asking again",
                confirmation_id=confirmation_id,
            )

    # -- reading both sides again ---------------------------------------------------------------------------------

    def _gateway(self, account: str) -> Gateway:
        gateway = self.gateways.get(account)
        if gateway is None:
            raise Refused(f"{account} is not a configured account")
        return gateway

    async def _read(self, account: str) -> AccountSnapshot:
        self._gateway(account)
        snapshot = (await self.monitor.reader.read([account]))[account]
        if not snapshot.checked:
            raise Refused(f"cannot check {account}: {snapshot.error}")
        return snapshot

    @staticmethod
    async def _markets(gateway: Gateway | None) -> None:
        """Symbols resolve through the venue's market list, so it must be loaded before rows are judged."""
        if gateway is None:
            return
        try:
            await gateway.load_markets()
        except VenueError as exc:
            raise Refused(f"cannot check {gateway.name}: {exc.reason}") from None

    @staticmethod
    def _exchange_position(snapshot: AccountSnapshot, key: PositionKey) -> ExchangePosition | None:
        return next((p for p in snapshot.exchange_positions if p.key == key), None)

    def owner(self, row: PositionRow) -> Gateway | None:
        accounts = [g.account for g in self.gateways.values()]
        by_account_column = self.repository.has_account_column
        owners = [name for name, rows in assign_rows([row], accounts, by_account_column).items() if rows]
        return self.gateways[owners[0]] if owners else None

    # -- ghosts -----------------------------------------------------------------------------------------------

    async def plan_close_ghost(self, position_id: str, actor: str) -> CloseGhost | FixOutcome:
        """The plan ``closeghost ID`` asks about, after re-reading the row and its exchange; or the audited
        refusal, so a position that is open is refused before anyone is asked to confirm."""
        row = await self.repository.get(position_id)
        if row is None:
            return FixOutcome(
                FixAction.CLOSE_GHOST,
                f"position #{position_id}",
                FixStatus.REFUSED,
                f"position #{position_id} does not exist",
            )
        gateway = self.owner(row)
        try:
            await self._markets(gateway)
            self._check_row(row, gateway, None)
            assert gateway is not None and row.side is not None and row.quantity is not None and row.symbol
            market, _ = market_of(gateway, self.repository, row.symbol)
            snapshot = await self._read(gateway.name)
            self._check_absent(snapshot, PositionKey(gateway.name, market, row.side), f"position #{row.id}")
        except Refused as refusal:
            plan_stub = CloseGhost(
                account=gateway.name if gateway else "?",
                market=row.symbol or "?",
                side=row.side or Side.LONG,
                rows=(RowSeen(id=row.id, symbol=row.symbol or "?", quantity=row.quantity or Decimal(0)),),
            )
            return await self._refuse(
                plan_stub, actor, f"position #{row.id}", refusal.reason, refusal.before or row.as_dict(), None
            )
        seen = RowSeen(id=row.id, symbol=row.symbol, quantity=row.quantity)
        return CloseGhost(account=gateway.name, market=market, side=row.side, rows=(seen,))

    def _check_row(self, row: PositionRow | None, gateway: Gateway | None, seen: RowSeen | None) -> None:
        pid = seen.id if seen else (row.id if row else "?")
        target = f"position #{pid}"
        if row is None:
            raise Refused(f"{target} does not exist")
        before = row.as_dict()
        if not self.repository.is_active(row):
            raise Refused(f"{target} is not active (status {row.status})", before)
        if gateway is None:
            raise Refused(f"{target} is on {row.exchange}, which no configured account watches", before)
        if row.problem or row.side is None or row.quantity is None or not row.symbol:
            raise Refused(f"{target} cannot be read: {row.problem}", before)
        _market, listed = market_of(gateway, self.repository, row.symbol)
        if not listed:
            raise Refused(unknown_symbol_text([row.id], row.symbol, gateway.exchange_id), before)
        if seen is not None and row.quantity != seen.quantity:
            raise changed("DB size", row.quantity, seen.quantity, row.id)
        grace = self.monitor.rules.grace
        if is_young(row.opened_at, self.monitor.now(), grace):
            raise Refused(f"{target} was opened less than {grace.total_seconds():g}s ago; wait for it to fill", before)

    def _check_absent(self, snapshot: AccountSnapshot, key: PositionKey, target: str) -> None:
        position = self._exchange_position(snapshot, key)
        if position is not None:
            raise Refused(
                f"{target} is open on {key.account}: {position.market} {position.side.upper()} "
                f"{decimal_text(position.quantity)}"
            )

    async def _close_ghost(self, plan: CloseGhost, actor: str, confirmation_id: int | None) -> FixOutcome:
        gateway = self._gateway(plan.account)
        await self._markets(gateway)
        rows = {seen.id: await self.repository.get(seen.id) for seen in plan.rows}
        for seen in plan.rows:
            row = rows[seen.id]
            self._check_row(row, self.owner(row) if row else None, seen)
            assert row is not None and row.symbol is not None
            if market_of(gateway, self.repository, row.symbol)[0] != plan.market or row.side is not plan.side:
                raise Refused(f"position #{row.id} no longer tracks {plan.where}", row.as_dict())
        snapshot = await self._read(plan.account)
        self._check_absent(snapshot, PositionKey(plan.account, plan.market, plan.side), _target(plan))
        self._check_writable(plan.rows[0].id)
        afters: list[PositionRow] = []
        async with self.repository.change(self.audit_pool) as change:
            for seen in plan.rows:
                before = rows[seen.id]
                assert before is not None
                after = await self.repository.close_if_active(change, seen.id, GHOST_EXIT_REASON, expected=before)
                if after is None:
                    raise await self._changed_meanwhile(seen.id, before)
                afters.append(after)
                await audit.record(
                    change.audit,
                    actor=actor,
                    action=plan.action,
                    target=f"position #{seen.id}",
                    outcome="done",
                    reason=GHOST_EXIT_REASON,
                    before=before.as_dict(),
                    after=after.as_dict(),
                    confirmation_id=confirmation_id,
                )
        listing = ", ".join(f"#{seen.id}" for seen in plan.rows)
        noun = "position" if len(plan.rows) == 1 else "positions"
        message = f"{noun} {listing} {plan.market} {plan.side.upper()} {decimal_text(plan.quantity)} marked closed"
        log.info("close_ghost %s done by %s", listing, actor)
        return FixOutcome(plan.action, _target(plan), FixStatus.DONE, message, plan.position_ids, after=afters)

    def _check_writable(self, position_id: str | None) -> None:
        """A table whose bot keeps its own state in memory (freqtrade) is not written unless the user says so."""
        if not self.repository.writable:
            raise Refused(self.repository.settings.read_only_reason(position_id or "ID"))

    async def _changed_meanwhile(self, position_id: str, before: PositionRow) -> Refused:
        """Why a guarded write found nothing to change: the trading bot closed or resized the row first."""
        now = await self.repository.get(position_id)
        if now is None or not self.repository.is_active(now):
            return Refused(f"position #{position_id} was closed meanwhile; nothing changed", before.as_dict())
        return Refused(
            f"position #{position_id} changed meanwhile (size now {decimal_text(now.quantity)}); nothing changed",
            before.as_dict(),
        )

    # -- orphans ------------------------------------------------------------------------------------------------

    async def _current_orphan(self, plan: AdoptOrphan | CloseOrphan) -> ExchangePosition:
        snapshot = await self._read(plan.account)
        key = PositionKey(plan.account, plan.market, plan.side)
        position = self._exchange_position(snapshot, key)
        if position is None or any(row.key == key for row in snapshot.db_positions):
            raise Refused(f"the orphan on {plan.where} no longer holds; nothing to fix")
        if position.quantity != plan.quantity:
            raise changed("exchange", position.quantity, plan.quantity)
        return position

    async def _adopt(self, plan: AdoptOrphan, actor: str, confirmation_id: int | None) -> FixOutcome:
        position = await self._current_orphan(plan)
        account = self._gateway(plan.account).account
        self._check_writable(None)
        try:
            async with self.repository.change(self.audit_pool) as change:
                row = await self.repository.insert_if_untracked(
                    change,
                    exchange=account.db_exchange or "",
                    account=account.db_account,
                    symbol=position.market,
                    side=position.side,
                    quantity=plan.quantity,
                    entry_price=position.entry_price,
                )
                if row is not None:
                    await audit.record(
                        change.audit,
                        actor=actor,
                        action=plan.action,
                        target=f"position #{row.id}",
                        outcome="done",
                        reason=f"adopted {plan.where}",
                        before=_position_dict(position),
                        after=row.as_dict(),
                        confirmation_id=confirmation_id,
                    )
        except (asyncpg.PostgresError, DatabaseError) as exc:
            raise Refused(f"the positions table refused the row: {type(exc).__name__}: {first_line(exc)}") from None
        if row is None:
            raise Refused(f"{plan.where} is already tracked in the DB")
        message = f"{plan.where} {decimal_text(plan.quantity)} adopted as position #{row.id}"
        return FixOutcome(plan.action, f"position #{row.id}", FixStatus.DONE, message, (row.id,), after=row)

    async def _close_orphan(self, plan: CloseOrphan, actor: str, confirmation_id: int | None) -> FixOutcome:
        gateway = self._gateway(plan.account)
        if not gateway.account.allow_exchange_orders:
            raise Refused(f"{plan.account} does not allow exchange orders (allow_exchange_orders)")
        position = await self._current_orphan(plan)
        client_order_id = f"reconbot-{uuid.uuid4().hex[:20]}"
        before = {**_position_dict(position), "client_order_id": client_order_id}
        try:
            ack = await gateway.close_position(position, client_order_id)
        except AnswerLost as lost:
            return await self._settle_lost_order(plan, actor, confirmation_id, before, lost.reason)
        except VenueError as exc:
            raise Refused(f"the order was not accepted: {exc.reason}", before) from None
        async with self.audit_pool.acquire() as conn:
            await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=_target(plan),
                outcome="done",
                reason=f"reduce-only market order {ack.order_id}",
                before=before,
                after={"order_id": ack.order_id, "status": ack.status, "filled": decimal_text(ack.filled)},
                confirmation_id=confirmation_id,
            )
        message = f"{plan.where} {decimal_text(plan.quantity)} closed on the exchange (order {ack.order_id})"
        return FixOutcome(plan.action, _target(plan), FixStatus.DONE, message)

    async def _settle_lost_order(
        self, plan: CloseOrphan, actor: str, confirmation_id: int | None, before: dict[str, Any], why: str
    ) -> FixOutcome:
        """The order's answer never came: audit ``unknown`` at once, then re-read the position to learn what
        happened, and record that."""
        target = _target(plan)
        async with self.audit_pool.acquire() as conn:
            entry = await audit.record(
                conn,
                actor=actor,
                action=plan.action,
                target=target,
                outcome="unknown",
                reason=f"{why}; re-reading the position to find out whether the order executed",
                before=before,
                confirmation_id=confirmation_id,
            )
        key = PositionKey(plan.account, plan.market, plan.side)
        for attempt in range(SETTLE_READS):
            await asyncio.sleep(SETTLE_PAUSE_S * attempt)
            snapshot = (await self.monitor.reader.read([plan.account]))[plan.account]
            if not snapshot.checked:
                continue
            position = self._exchange_position(snapshot, key)
            remaining = position.quantity if position else Decimal(0)
            if remaining < plan.quantity:
                reason = f"{why}; the re-read shows {plan.where} " + (
                    "closed" if position is None else f"reduced to {decimal_text(remaining)}"
                )
                await audit.settle(self.audit_pool, entry, "done", reason)
                return FixOutcome(plan.action, target, FixStatus.DONE, f"{target} closed on the exchange ({reason})")
            if attempt == SETTLE_READS - 1:
                reason = f"{why}; the re-read shows {plan.where} still open at {decimal_text(remaining)}: not executed"
                await audit.settle(self.audit_pool, entry, "refused", reason)
                return FixOutcome(plan.action, target, FixStatus.REFUSED, reason)
        reason = f"{why}; {plan.account} could not be re-read, so whether the order executed is unknown: check it"
        return FixOutcome(plan.action, target, FixStatus.UNKNOWN, reason)

    # -- sizes ----------------------------------------------------------------------------------------------------

    async def _set_quantity(self, plan: SetDbQuantity, actor: str, confirmation_id: int | None) -> FixOutcome:
        snapshot = await self._read(plan.account)
        key = PositionKey(plan.account, plan.market, plan.side)
        position = self._exchange_position(snapshot, key)
        rows = [row for row in snapshot.db_positions if row.key == key]
        target = f"position #{plan.row.id}"
        if position is None:
            raise Refused(f"the quantity mismatch on {plan.where} no longer holds; nothing to fix")
        if position.quantity != plan.exchange_quantity:
            raise changed("exchange", position.quantity, plan.exchange_quantity)
        if len(rows) != 1:
            ids = ", ".join(f"#{r.id}" for r in rows)
            raise Refused(f"{len(rows)} rows ({ids or 'none'}) track this position; fix their sizes by hand")
        if rows[0].id != plan.row.id:
            raise Refused(f"{target} no longer tracks {plan.where}; nothing changed")
        if rows[0].quantity != plan.row.quantity:
            raise changed("DB size", rows[0].quantity, plan.row.quantity, plan.row.id)
        self._check_writable(plan.row.id)
        before = await self.repository.get(plan.row.id)
        if before is None or before.quantity != plan.row.quantity:
            raise Refused(f"{target} changed meanwhile; nothing changed", before.as_dict() if before else None)
        async with self.repository.change(self.audit_pool) as change:
            after = await self.repository.set_quantity_if(change, before, plan.exchange_quantity)
            if after is None:
                raise Refused(f"{target} changed meanwhile; nothing changed", before.as_dict())
            await audit.record(
                change.audit,
                actor=actor,
                action=plan.action,
                target=target,
                outcome="done",
                reason=f"size set to the exchange's {decimal_text(plan.exchange_quantity)}",
                before=before.as_dict(),
                after=after.as_dict(),
                confirmation_id=confirmation_id,
            )
        message = (
            f"{target} {plan.market} {plan.side.upper()} size "
            f"{decimal_text(plan.row.quantity)} → {decimal_text(plan.exchange_quantity)}"
        )
        return FixOutcome(plan.action, target, FixStatus.DONE, message, (plan.row.id,), before, after)


def _target(plan: FixPlan) -> str:
    if isinstance(plan, CloseGhost):
        return ", ".join(f"position #{pid}" for pid in plan.position_ids)
    if isinstance(plan, SetDbQuantity):
        return f"position #{plan.row.id}"
    return plan.where


def _ids(plan: FixPlan) -> tuple[str, ...]:
    if isinstance(plan, CloseGhost):
        return plan.position_ids
    if isinstance(plan, SetDbQuantity):
        return (plan.row.id,)
    return ()


__all__ = [
    "GHOST_EXIT_REASON",
    "FixOutcome",
    "FixService",
    "FixStatus",
    "ghost_plan",
    "plan_for_finding",
]
