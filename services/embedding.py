"""The two classes a trading bot embeds, with the interface the original integration snippet expects.

    monitor = OrphanedPositionMonitor(repository=repo, exchange_managers=gateways, alert_callback=on_alert)
    await monitor.start()            # scans every 5 minutes in the background
    orphans = await monitor.manual_scan()   # {account: [orphan dict, ...]}

Both run the same confirmed check as the CLI and the bot. ``alert_callback(alert_type, exchange, symbol,
details)`` may be a plain function or a coroutine function; it is called once per new finding, not again
while the same drift persists.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from services.model import ORPHANS_ONLY, RECONCILIATION, CheckResult, Finding, FindingKind
from services.monitor import Monitor
from services.positions import PositionsRepository
from services.settings import ScanSettings
from services.venues import Gateway

log = logging.getLogger(__name__)

AlertCallback = Callable[[str, str, str, dict[str, Any]], Awaitable[None] | None]

ALERT_ORPHAN = "orphaned_position"
ALERT_MISMATCH = "reconciliation_mismatch"


def finding_details(finding: Finding, detected_at: datetime) -> dict[str, Any]:
    """The dict the seed's alert callback receives; quantities and prices stay Decimal."""
    position = finding.exchange_position
    details: dict[str, Any] = {
        "type": finding.kind.value,
        "account": finding.key.account,
        "exchange": finding.exchange,
        "symbol": finding.key.market,
        "side": finding.key.side.value,
        "contracts": finding.exchange_quantity,
        "exchange_quantity": finding.exchange_quantity,
        "db_quantity": finding.db_quantity,
        "difference": finding.difference,
        "db_position_id": finding.db_position_ids[0] if finding.db_position_ids else None,
        "db_position_ids": list(finding.db_position_ids),
        "detected_at": detected_at,
    }
    if position is not None:
        details.update(
            entry_price=position.entry_price,
            mark_price=position.mark_price,
            unrealized_pnl=position.unrealized_pnl,
            leverage=position.leverage,
            stop_loss=position.stop_loss,
            has_stop_loss=position.stop_loss is not None,
        )
    elif finding.db_positions:
        details["entry_price"] = finding.db_positions[0].entry_price
    return details


class _PeriodicCheck:
    """A background loop around one kind of check, with the seed's start/stop lifecycle."""

    alert_type: str
    kinds: frozenset[FindingKind]
    default_interval_s: float

    def __init__(
        self,
        repository: PositionsRepository,
        exchange_managers: Mapping[str, Gateway],
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
        self.monitor = Monitor(scan or ScanSettings(), exchange_managers, repository)
        self._task: asyncio.Task[None] | None = None
        self._alerted: set[str] = set()
        self.last_result: CheckResult | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Begin checking every ``interval_s`` seconds, the first check at once; idempotent."""
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name=type(self).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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
        grouped: dict[str, list[dict[str, Any]]] = {a.account: [] for a in result.accounts if a.checked}
        current: set[str] = set()
        for finding in result.findings:
            details = finding_details(finding, detected_at)
            grouped[finding.key.account].append(details)
            current.add(finding.fingerprint)
            if finding.fingerprint not in self._alerted:
                await self._alert(finding.key.account, finding.key.market, details)
        checked = {a.account for a in result.accounts if a.checked}
        self._alerted = {fp for fp in self._alerted if fp.split("|", 1)[0] not in checked} | current
        return grouped

    async def _alert(self, account: str, symbol: str, details: dict[str, Any]) -> None:
        if self.alert_callback is None:
            return
        try:
            outcome = self.alert_callback(self.alert_type, account, symbol, details)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("alert callback failed for %s %s", account, symbol)


class OrphanedPositionMonitor(_PeriodicCheck):
    """Finds positions open on an exchange that the DB does not track."""

    alert_type = ALERT_ORPHAN
    kinds = ORPHANS_ONLY
    default_interval_s = 300.0

    async def manual_scan(self) -> dict[str, list[dict[str, Any]]]:
        """Scan now; ``{account: [orphan dict]}``. Unchecked accounts are absent: see ``last_result``."""
        return await self._run_once()


class PositionReconciliation(_PeriodicCheck):
    """Finds DB positions the exchange no longer has, and sizes that disagree."""

    alert_type = ALERT_MISMATCH
    kinds = RECONCILIATION
    default_interval_s = 600.0

    async def manual_reconcile(self) -> dict[str, list[dict[str, Any]]]:
        """Reconcile now; ``{account: [mismatch dict]}``, ``type`` ghost or quantity_mismatch; unchecked absent."""
        return await self._run_once()


__all__ = ["ALERT_MISMATCH", "ALERT_ORPHAN", "OrphanedPositionMonitor", "PositionReconciliation"]
