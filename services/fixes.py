"""Fixes: the detection path backwards. Re-read both sides, refuse if the finding no longer holds, then make
one guarded change and its audit row in a single transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from services import audit
from services.detector import is_young
from services.exchange import ExchangeGateway, ExchangeUnavailable
from services.model import ExchangePosition
from services.monitor import Clock, utc_now
from services.positions import PositionRow, PositionsRepository
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


class FixService:
    def __init__(
        self,
        gateways: Mapping[str, ExchangeGateway],
        repository: PositionsRepository,
        *,
        grace: timedelta,
        clock: Clock = utc_now,
    ):
        self.gateways = gateways
        self.repository = repository
        self.grace = grace
        self._clock = clock

    async def _refuse(self, actor: str, target: str, reason: str, before: PositionRow | None) -> FixOutcome:
        async with self.repository.pool.acquire() as conn:
            await audit.record(
                conn,
                actor=actor,
                action="close_ghost",
                target=target,
                outcome="refused",
                reason=reason,
                before=before.as_dict() if before else None,
            )
        log.info("close_ghost %s refused for %s: %s", target, actor, reason)
        return FixOutcome(target, False, reason, before)

    def _owner(self, row: PositionRow) -> ExchangeGateway | None:
        accounts = [g.account for g in self.gateways.values()]
        by_account_column = self.repository.settings.columns.account is not None
        owners = [name for name, rows in assign_rows([row], accounts, by_account_column).items() if rows]
        return self.gateways[owners[0]] if owners else None

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
        outcomes = []
        for pid in position_ids:
            outcomes.append(await self._close_one(pid, rows[pid], owners.get(pid), reads, actor))
        return outcomes

    async def _close_one(
        self,
        pid: str,
        row: PositionRow | None,
        gateway: ExchangeGateway | None,
        reads: Mapping[str, list[ExchangePosition] | str],
        actor: str,
    ) -> FixOutcome:
        target = f"position #{pid}"
        if row is None:
            return await self._refuse(actor, target, f"{target} does not exist", None)
        if row.status != self.repository.settings.values.active:
            return await self._refuse(actor, target, f"{target} is not active (status {row.status})", row)
        if gateway is None:
            return await self._refuse(
                actor, target, f"{target} is on {row.exchange}, which no configured account watches", row
            )
        if row.side is None:
            return await self._refuse(actor, target, f"{target} has an unknown side value", row)
        if is_young(row.opened_at, self._clock(), self.grace):
            wait = f"{target} was opened less than {self.grace.total_seconds():g}s ago; wait for it to fill"
            return await self._refuse(actor, target, wait, row)
        read = reads[gateway.name]
        if isinstance(read, str):
            return await self._refuse(actor, target, f"cannot check {gateway.name}: {read}", row)
        market, _listed = gateway.resolve_market(row.symbol)
        for position in read:
            if position.market == market and position.side is row.side:
                return await self._refuse(
                    actor,
                    target,
                    f"{target} is open on {gateway.name}: {position.market} {position.side.upper()} "
                    f"{position.quantity}",
                    row,
                )
        async with self.repository.pool.acquire() as conn, conn.transaction():
            after = await self.repository.close_if_active(conn, pid, GHOST_EXIT_REASON)
            if after is not None:
                await audit.record(
                    conn,
                    actor=actor,
                    action="close_ghost",
                    target=target,
                    outcome="done",
                    reason=GHOST_EXIT_REASON,
                    before=row.as_dict(),
                    after=after.as_dict(),
                )
        if after is None:
            return await self._refuse(actor, target, f"{target} was closed meanwhile; nothing changed", row)
        log.info("close_ghost %s done by %s", target, actor)
        return FixOutcome(
            target, True, f"{target} {row.symbol} {row.side.upper()} {row.quantity} marked closed", row, after
        )
