"""The two classes a trading bot embeds, with the interface of the system reconbot implements, so a bot that
used them keeps its glue:

    monitor = OrphanedPositionMonitor(repository=repository, exchange_managers=exchange_managers,
                                      position_manager=position_manager, alert_callback=on_alert)
    await monitor.start()                   # scans every 5 minutes in the background
    orphans = await monitor.manual_scan()   # {exchange name: [orphan dict, ...]}

``repository`` and ``exchange_managers`` may be the bot's own objects (see ``sources``). Both classes run the same
confirmed check as the CLI and the bot. ``alert_callback(alert_type, exchange, symbol, details)`` may be a plain
function or a coroutine function; it is called once per new finding, not again while the same drift persists.
Like the seed, ``PositionReconciliation`` marks a confirmed ghost closed through the repository it was given
(at most ``auto_fix_max_per_run`` at once, each once); a size mismatch is only reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services import audit
from services.causes import CloseCause, exit_reason
from services.embedding.dicts import finding_dict
from services.embedding.sources import BotRepository, by_account, gateways_for
from services.model import RECONCILIATION, CheckResult, Finding, FindingKind
from services.monitor import Monitor
from services.positions import PositionsStore, PostgresPositions, ReadOnlyStore
from services.settings import ScanSettings

GHOST_EXIT_REASON = exit_reason(None)  # the seed's words, for a ghost whose cause is unknown
AUTO_FIX_ACTOR = "reconbot (embedded auto-fix)"

log = logging.getLogger(__name__)

AlertCallback = Callable[[str, str, str, dict[str, Any]], Awaitable[None] | None]

ALERT_ORPHAN = "orphaned_position"
ALERT_MISMATCH = "reconciliation_mismatch"


class _PeriodicCheck:
    """A background loop around one kind of check, with the seed's start/stop lifecycle."""

    alert_type: str
    kinds: frozenset[FindingKind]
    default_interval_s: float

    def __init__(
        self,
        repository: Any,
        exchange_managers: Mapping[str, Any],
        position_manager: Any = None,
        alert_callback: AlertCallback | None = None,
        *,
        scan: ScanSettings | None = None,
        interval_s: float | None = None,
    ):
        self.repository = repository
        self.exchange_managers = exchange_managers
        self.position_manager = position_manager  # kept for the seed's signature; reconbot changes no positions here
        self.alert_callback = alert_callback
        self.interval_s = interval_s if interval_s is not None else self.default_interval_s
        self.scan = scan or ScanSettings()
        self.store: PositionsStore = repository if isinstance(repository, PositionsStore) else BotRepository(repository)
        given = gateways_for(exchange_managers)
        self.gateways = by_account(given)
        self._given_name = {gateway.name: key for key, gateway in given.items()}  # results use the bot's names
        self.monitor = Monitor(self.scan, self.gateways, self.store)
        self._task: asyncio.Task[None] | None = None
        self._alerted: dict[str, int] = {}  # fingerprint told -> checks in a row that no longer saw it
        self.last_result: CheckResult | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Begin checking every ``interval_s`` seconds, the first check at once, in the background; idempotent."""
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name=type(self).__name__)

    def stop(self) -> asyncio.Future[None]:
        """Stop checking. Works as the seed's plain ``stop()`` and as ``await stop()`` (which waits for the end)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return asyncio.ensure_future(_finished(task))

    async def _loop(self) -> None:
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: check failed; trying again in %ss", type(self).__name__, self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def _run_once(self) -> dict[str, list[dict[str, Any]]]:
        result = await self.monitor.check(self.kinds)
        self.last_result = result
        detected_at = result.finished_at or datetime.now(UTC)
        # An account that could not be read is left out, never reported as an empty list.
        grouped: dict[str, list[dict[str, Any]]] = {
            self._given_name[a.account]: [] for a in result.accounts if a.checked
        }
        current: set[str] = set()
        new: list[Finding] = []
        for finding in result.findings:
            name = self._given_name[finding.key.account]
            details = finding_dict(finding, detected_at) | {"exchange": name}
            grouped[name].append(details)
            current.add(finding.fingerprint)
            if finding.fingerprint not in self._alerted:
                new.append(finding)
                await self._alert(name, finding.key.market, details)
        self._forget_ended(current, {a.account for a in result.accounts if a.checked})
        await self._after(result, new)
        return grouped

    def _forget_ended(self, seen: set[str], checked: set[str]) -> None:
        """A drift is forgotten (and told again if it comes back) only after two checks of its account in a row
        no longer saw it: one answer that left a position out is not the end of a drift."""
        for fingerprint in [fp for fp in self._alerted if fp not in seen and fp.split("|", 1)[0] in checked]:
            self._alerted[fingerprint] += 1
            if self._alerted[fingerprint] >= 2:
                del self._alerted[fingerprint]
        self._alerted.update(dict.fromkeys(seen, 0))

    async def _after(self, result: CheckResult, new: list[Finding]) -> None:
        """What a kind of check does with what it found, beyond telling."""

    async def _alert(self, account: str, symbol: str, details: dict[str, Any]) -> None:
        if self.alert_callback is None:
            return
        try:
            outcome = self.alert_callback(self.alert_type, account, symbol, details)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("alert callback failed for %s %s", account, symbol)


async def _finished(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class OrphanedPositionMonitor(_PeriodicCheck):
    """Finds positions open on an exchange that the DB does not track."""

    alert_type = ALERT_ORPHAN
    kinds = frozenset({FindingKind.ORPHAN})  # the seed's detector reports orphans only
    default_interval_s = 300.0

    async def manual_scan(self) -> dict[str, list[dict[str, Any]]]:
        """Scan now; ``{exchange name: [orphan dict]}``. Unchecked accounts are absent: see ``last_result``."""
        return await self._run_once()


class PositionReconciliation(_PeriodicCheck):
    """Finds DB positions the exchange no longer has, and sizes that disagree; closes confirmed ghosts."""

    alert_type = ALERT_MISMATCH
    kinds = RECONCILIATION
    default_interval_s = 600.0

    def __init__(self, *args: Any, auto_fix: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.auto_fix = auto_fix
        self._closed: set[str] = set()
        self.refused: dict[str, str] = {}  # position id → why auto-fix left it open (a read-only store)

    async def manual_reconcile(self) -> dict[str, list[dict[str, Any]]]:
        """Reconcile now; ``{exchange name: [dict]}`` with ``type`` ``missing_on_exchange``,
        ``quantity_mismatch`` or ``unknown_symbol``; unchecked accounts absent."""
        return await self._run_once()

    async def _after(self, result: CheckResult, new: list[Finding]) -> None:
        """Close confirmed ghosts through the repository it was given, each once; more at once than the auto-fix
        limit looks systemic (a wrong mapping, a partial answer), so then none is closed. A store reconbot may not
        write refuses, and the refusal is said once per row."""
        if not self.auto_fix:
            return
        rows = [
            (row, finding.cause)
            for finding in result.of_kind(FindingKind.GHOST)
            for row in finding.db_positions
            if row.id not in self._closed and row.id not in self.refused and not row.id.startswith("?")
        ]
        if not rows:
            return
        if len(rows) > self.scan.auto_fix_max_per_run:
            log.warning("%d ghosts confirmed at once, more than the auto-fix limit; none closed", len(rows))
            return
        for row, cause in rows:
            reason = exit_reason(cause.kind if cause else None)
            try:
                await self._close(row.id, reason, cause, result.finished_at or datetime.now(UTC))
            except ReadOnlyStore as refusal:
                await self._refuse(row.id, refusal.reason(row.id))
                continue
            except Exception:
                log.exception("could not mark ghost position #%s closed", row.id)
                continue
            self._closed.add(row.id)
            log.info("marked ghost position #%s closed (%s)", row.id, reason)

    def _audit_pool(self) -> asyncpg.Pool | None:
        return self.store.pool if isinstance(self.store, PostgresPositions) else None

    async def _close(self, row_id: str, reason: str, cause: CloseCause | None, found_at: datetime) -> None:
        """Write the real close where the venue told it (when, at what price, the PnL), else when it was found.
        The store's own guard refuses a table reconbot may not write (``ReadOnlyStore``)."""
        closed_at = cause.closed_at if cause and cause.closed_at else found_at
        if isinstance(self.store, BotRepository):
            await self.store.mark_closed(row_id, reason, closed_at)
            return
        audit_pool = self._audit_pool()
        if audit_pool is None:
            self.store.require_writable()  # a read-only store's refusal says more than a missing audit trail
            raise RuntimeError("no database to audit the change in")
        real = {"exit_price": cause.exit_price, "realized_pnl": cause.realized_pnl} if cause else {}
        async with self.store.change(audit_pool) as change:
            after = await self.store.close_if_active(change, row_id, reason, closed_at=closed_at, **real)
            if after is not None:
                await _audit(change.audit, row_id, "done", reason, after=after.as_dict())

    async def _refuse(self, row_id: str, reason: str) -> None:
        """Left open, in the words every fix path uses, and in the audit trail where there is one."""
        self.refused[row_id] = reason
        log.warning("auto-fix refused for position #%s: %s", row_id, reason)
        pool = self._audit_pool()
        if pool is not None:
            async with pool.acquire() as conn:
                await _audit(conn, row_id, "refused", reason)


async def _audit(conn: asyncpg.Connection, row_id: str, outcome: str, reason: str, **extra: Any) -> None:
    """An auto-fix outcome in reconbot's audit trail, when the database holding the store has one."""
    if await conn.fetchval("SELECT to_regclass('reconbot.audit_log')"):
        await audit.record(
            conn,
            actor=AUTO_FIX_ACTOR,
            action="close_ghost",
            target=f"position #{row_id}",
            outcome=outcome,
            reason=reason,
            **extra,
        )


__all__ = ["ALERT_MISMATCH", "ALERT_ORPHAN", "OrphanedPositionMonitor", "PositionReconciliation"]
