"""Fixes: the detection path backwards. Re-read both sides, refuse if the finding no longer holds, then make
one guarded change and its audit row in a single transaction. Refusals are audited too."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from services import audit
from services.confirmations import ADOPT_ORPHAN, CLOSE_GHOST, CLOSE_ORPHAN, SET_DB_QUANTITY
from services.detector import detect, is_young
from services.exchange import ExchangeGateway, ExchangeUnavailable
from services.findings import StoredFinding
from services.model import ExchangePosition, Finding, FindingKind
from services.monitor import Monitor
from services.positions import PositionRow, PositionsRepository
from services.report import decimal_text
from services.snapshot import assign_rows

log = logging.getLogger(__name__)

GHOST_EXIT_REASON = "reconciliation: position not found on exchange"


@dataclass(frozen=True, slots=True)
class FixOutcome:
    """What a fix did, or why it did nothing; ``message`` is fit to show a trader as is."""

    target: str
    done: bool
    message: str
    before: PositionRow | None = None
    after: PositionRow | None = None


def _position_dict(position: ExchangePosition) -> dict[str, Any]:
    return {
        "account": position.account,
        "market": position.market,
        "side": position.side.value,
        "quantity": decimal_text(position.quantity),
        "entry_price": decimal_text(position.entry_price),
        "hedged": position.hedged,
    }


def sizes_seen(finding: StoredFinding) -> dict[str, Decimal]:
    """The size of each DB row as the finding's alert showed it."""
    return {str(r["id"]): Decimal(str(r["quantity"])) for r in finding.details.get("db_rows") or []}


def sizes_target(sizes: Mapping[str, Decimal]) -> str:
    """A set-size confirmation's target: each row with the size the operator is shown, ``17=1.5,18=2``."""
    return ",".join(f"{pid}={decimal_text(size)}" for pid, size in sizes.items())


def parse_sizes(target: str) -> dict[str, Decimal] | None:
    """The rows and sizes of a ``sizes_target``; None when the target names no sizes."""
    sizes: dict[str, Decimal] = {}
    for part in target.split(","):
        pid, sep, size = part.partition("=")
        if not sep:
            return None
        try:
            sizes[pid.strip()] = Decimal(size.strip())
        except InvalidOperation:
            return None
    return sizes


class FixService:
    def __init__(self, monitor: Monitor, repository: PositionsRepository):
        self.monitor = monitor
        self.repository = repository

    @property
    def gateways(self) -> Mapping[str, ExchangeGateway]:
        return self.monitor.gateways

    async def _refuse(
        self, actor: str, action: str, target: str, reason: str, before: dict[str, Any] | None = None
    ) -> FixOutcome:
        async with self.repository.pool.acquire() as conn:
            await audit.record(
                conn, actor=actor, action=action, target=target, outcome="refused", reason=reason, before=before
            )
        log.info("%s %s refused for %s: %s", action, target, actor, reason)
        return FixOutcome(target, False, reason)

    def _owner(self, row: PositionRow) -> ExchangeGateway | None:
        accounts = [g.account for g in self.gateways.values()]
        by_account_column = self.repository.settings.columns.account is not None
        owners = [name for name, rows in assign_rows([row], accounts, by_account_column).items() if rows]
        return self.gateways[owners[0]] if owners else None

    # -- ghosts -------------------------------------------------------------------------------------------

    async def close_ghost(self, position_id: str, actor: str) -> FixOutcome:
        return (await self.close_ghosts([position_id], actor))[0]

    async def close_ghosts(self, position_ids: Sequence[str], actor: str) -> list[FixOutcome]:
        """Mark ghosts closed, each only if it is still active and still absent from its exchange.

        Each account involved is re-read once for the whole batch.
        """
        rows: dict[str, PositionRow | None] = {pid: await self.repository.get(pid) for pid in position_ids}
        owners = {pid: self._owner(row) for pid, row in rows.items() if row is not None}
        reads: dict[str, list[ExchangePosition] | str] = {}
        for gateway in {g.name: g for g in owners.values() if g is not None}.values():
            try:
                reads[gateway.name] = await gateway.positions()
            except ExchangeUnavailable as exc:
                reads[gateway.name] = exc.reason
        return [await self._close_one(pid, rows[pid], owners.get(pid), reads, actor) for pid in position_ids]

    async def _close_one(
        self,
        pid: str,
        row: PositionRow | None,
        gateway: ExchangeGateway | None,
        reads: Mapping[str, list[ExchangePosition] | str],
        actor: str,
    ) -> FixOutcome:
        target = f"position #{pid}"
        before = row.as_dict() if row else None

        async def refuse(reason: str) -> FixOutcome:
            return await self._refuse(actor, CLOSE_GHOST, target, reason, before)

        if row is None:
            return await refuse(f"{target} does not exist")
        if row.status != self.repository.settings.values.active:
            return await refuse(f"{target} is not active (status {row.status})")
        if gateway is None:
            return await refuse(f"{target} is on {row.exchange}, which no configured account watches")
        if row.side is None:
            return await refuse(f"{target} has an unknown side value")
        grace = self.monitor.rules.grace
        if is_young(row.opened_at, self.monitor.now(), grace):
            return await refuse(f"{target} was opened less than {grace.total_seconds():g}s ago; wait for it to fill")
        read = reads[gateway.name]
        if isinstance(read, str):
            return await refuse(f"cannot check {gateway.name}: {read}")
        market, _listed = gateway.resolve_market(row.symbol)
        for position in read:
            if position.market == market and position.side is row.side:
                return await refuse(
                    f"{target} is open on {gateway.name}: {position.market} {position.side.upper()} "
                    f"{decimal_text(position.quantity)}"
                )
        async with self.repository.pool.acquire() as conn, conn.transaction():
            after = await self.repository.close_if_active(conn, pid, GHOST_EXIT_REASON)
            if after is not None:
                await audit.record(
                    conn,
                    actor=actor,
                    action=CLOSE_GHOST,
                    target=target,
                    outcome="done",
                    reason=GHOST_EXIT_REASON,
                    before=before,
                    after=after.as_dict(),
                )
        if after is None:
            return await refuse(f"{target} was closed meanwhile; nothing changed")
        log.info("close_ghost %s done by %s", target, actor)
        message = f"{target} {row.symbol} {row.side.upper()} {decimal_text(row.quantity)} marked closed"
        return FixOutcome(target, True, message, row, after)

    # -- findings -----------------------------------------------------------------------------------------

    async def recheck(self, finding: StoredFinding) -> tuple[Finding | None, str | None]:
        """Read the finding's account again; the finding as it stands now, or why it no longer holds."""
        snapshot = (await self.monitor.reader.read([finding.account]))[finding.account]
        if not snapshot.checked:
            return None, f"cannot check {finding.account}: {snapshot.error}"
        detection = detect(
            snapshot.db_positions,
            snapshot.exchange_positions,
            self.monitor.rules,
            self.monitor.now(),
            frozenset({finding.kind}),
        )
        for current in detection.findings:
            if current.fingerprint == finding.fingerprint:
                return current, None
        where = f"{finding.market} {finding.side.upper()} on {finding.account}"
        if finding.key in detection.pending:
            return None, f"{where} changed moments ago; look again in a minute"
        return None, f"the {finding.kind.value.replace('_', ' ')} on {where} no longer holds; nothing to fix"

    async def adopt_orphan(self, finding: StoredFinding, actor: str) -> FixOutcome:
        """Insert an active DB row for an orphan, with the exchange's size and entry price."""
        target = f"{finding.market} {finding.side.upper()} on {finding.account}"
        current, why_not = await self.recheck(finding)
        if current is None or current.exchange_position is None:
            return await self._refuse(actor, ADOPT_ORPHAN, target, why_not or "not an orphan")
        position = current.exchange_position
        account = self.gateways[finding.account].account
        try:
            async with self.repository.pool.acquire() as conn, conn.transaction():
                row = await self.repository.insert_if_untracked(
                    conn,
                    exchange=account.db_exchange or "",
                    account=account.db_account,
                    symbol=position.market,
                    side=position.side,
                    quantity=position.quantity,
                    entry_price=position.entry_price,
                )
                if row is not None:
                    await audit.record(
                        conn,
                        actor=actor,
                        action=ADOPT_ORPHAN,
                        target=f"position #{row.id}",
                        outcome="done",
                        reason=f"adopted {target}",
                        before=_position_dict(position),
                        after=row.as_dict(),
                    )
        except asyncpg.PostgresError as exc:
            return await self._refuse(
                actor, ADOPT_ORPHAN, target, f"the positions table refused the row: {exc.__class__.__name__}: {exc}"
            )
        if row is None:
            return await self._refuse(actor, ADOPT_ORPHAN, target, f"{target} is already tracked in the DB")
        size = decimal_text(position.quantity)
        return FixOutcome(f"position #{row.id}", True, f"{target} {size} adopted as position #{row.id}", None, row)

    async def close_orphan(self, finding: StoredFinding, actor: str) -> FixOutcome:
        """Close an orphan on the exchange with a reduce-only market order, if the account allows orders."""
        target = f"{finding.market} {finding.side.upper()} on {finding.account}"
        gateway = self.gateways.get(finding.account)
        if gateway is None:
            return await self._refuse(actor, CLOSE_ORPHAN, target, f"{finding.account} is not configured")
        if not gateway.account.allow_exchange_orders:
            return await self._refuse(
                actor, CLOSE_ORPHAN, target, f"{finding.account} does not allow exchange orders (allow_exchange_orders)"
            )
        current, why_not = await self.recheck(finding)
        if current is None or current.exchange_position is None:
            return await self._refuse(actor, CLOSE_ORPHAN, target, why_not or "not an orphan")
        position = current.exchange_position
        try:
            order = await gateway.close_position(position)
        except ExchangeUnavailable as exc:
            return await self._refuse(
                actor, CLOSE_ORPHAN, target, f"the order was not accepted: {exc.reason}", _position_dict(position)
            )
        order_id = str(order.get("id") or "?")
        size = decimal_text(position.quantity)
        async with self.repository.pool.acquire() as conn:
            await audit.record(
                conn,
                actor=actor,
                action=CLOSE_ORPHAN,
                target=target,
                outcome="done",
                reason=f"reduce-only market order {order_id}",
                before=_position_dict(position),
                after={"order_id": order_id, "status": order.get("status"), "filled": order.get("filled")},
            )
        return FixOutcome(target, True, f"{target} {size} closed on the exchange (order {order_id})")

    async def set_db_quantity(
        self, finding: StoredFinding, actor: str, seen: Mapping[str, Decimal] | None = None
    ) -> FixOutcome:
        """Set the DB row's size to the exchange's, guarded by the size the operator saw: ``seen`` maps row
        ids to the sizes the confirmation named (default: the sizes the alert showed). If the trading bot
        changed the row since, nothing changes and the refusal says so."""
        target = f"{finding.market} {finding.side.upper()} on {finding.account}"
        if seen is None:
            seen = sizes_seen(finding)
        current, why_not = await self.recheck(finding)
        if current is None or current.exchange_position is None or not current.db_positions:
            return await self._refuse(actor, SET_DB_QUANTITY, target, why_not or "not a size mismatch")
        if len(current.db_positions) != 1:
            ids = ", ".join(f"#{p.id}" for p in current.db_positions)
            return await self._refuse(
                actor,
                SET_DB_QUANTITY,
                target,
                f"{len(current.db_positions)} rows ({ids}) track this position; fix their sizes by hand",
            )
        db_row = current.db_positions[0]
        new_size = current.exchange_position.quantity
        expected = seen.get(db_row.id)
        if expected is None:
            return await self._refuse(
                actor,
                SET_DB_QUANTITY,
                f"position #{db_row.id}",
                f"position #{db_row.id} now tracks {target}, not the row you confirmed; nothing changed",
            )
        if expected != db_row.quantity:
            return await self._refuse(
                actor,
                SET_DB_QUANTITY,
                f"position #{db_row.id}",
                f"position #{db_row.id} changed meanwhile: its size is {decimal_text(db_row.quantity)}, not the "
                f"{decimal_text(expected)} you confirmed; nothing changed",
            )
        async with self.repository.pool.acquire() as conn, conn.transaction():
            before = await self.repository.get(db_row.id, conn)
            after = await self.repository.set_quantity_if(conn, db_row.id, expected, new_size)
            if after is not None:
                await audit.record(
                    conn,
                    actor=actor,
                    action=SET_DB_QUANTITY,
                    target=f"position #{db_row.id}",
                    outcome="done",
                    reason=f"size set to the exchange's {decimal_text(new_size)}",
                    before=before.as_dict() if before else None,
                    after=after.as_dict(),
                )
        if after is None:
            return await self._refuse(
                actor,
                SET_DB_QUANTITY,
                f"position #{db_row.id}",
                f"position #{db_row.id} changed meanwhile; nothing changed",
            )
        message = (
            f"position #{db_row.id} {finding.market} {finding.side.upper()} size "
            f"{decimal_text(db_row.quantity)} → {decimal_text(new_size)}"
        )
        return FixOutcome(f"position #{db_row.id}", True, message, before, after)

    async def apply(self, action: str, target: str, finding: StoredFinding | None, actor: str) -> FixOutcome:
        """Run a confirmed fix by its action name."""
        if action == CLOSE_GHOST:
            return await self.close_ghost(target, actor)
        if finding is None:
            return await self._refuse(actor, action, target, "the finding this button belongs to is unknown")
        if action == ADOPT_ORPHAN and finding.kind is FindingKind.ORPHAN:
            return await self.adopt_orphan(finding, actor)
        if action == CLOSE_ORPHAN and finding.kind is FindingKind.ORPHAN:
            return await self.close_orphan(finding, actor)
        if action == SET_DB_QUANTITY and finding.kind is FindingKind.QUANTITY_MISMATCH:
            return await self.set_db_quantity(finding, actor, parse_sizes(target))
        return await self._refuse(actor, action, target, f"{action} does not apply to a {finding.kind.value}")
