"""One check: read both sides, detect, and confirm every discrepancy with a second read before reporting it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.causes import CloseCause
from services.detector import DetectionRules, detect
from services.model import ALL_KINDS, CheckResult, Finding, FindingKind, PositionKey, Sighting
from services.positions import PositionsStore
from services.settings import AccountSettings, ScanSettings
from services.snapshot import AccountSnapshot, SnapshotReader
from services.venues import Gateway

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Monitor:
    """Runs checks; the same object serves the CLI, the scheduler, the bot and embedding programs."""

    def __init__(
        self,
        scan: ScanSettings,
        gateways: Mapping[str, Gateway],
        repository: PositionsStore,
        *,
        clock: Clock = utc_now,
        sleep: Sleep | None = None,
    ):
        self.scan = scan
        self.gateways = gateways
        self.reader = SnapshotReader(gateways, repository)
        self.rules = DetectionRules(grace=timedelta(seconds=scan.grace_s), quantity_tolerance=scan.quantity_tolerance)
        self._clock = clock
        self._sleep = sleep or asyncio.sleep

    def now(self) -> datetime:
        return self._clock()

    def account_names(self, accounts: Sequence[str] | None = None) -> list[str]:
        """The accounts to check, in configured order; unknown names are an error, not a silent skip."""
        if not accounts:
            return list(self.gateways)
        unknown = [name for name in accounts if name not in self.gateways]
        if unknown:
            raise KeyError(f"unknown account {', '.join(unknown)}; configured: {', '.join(self.gateways)}")
        return [name for name in self.gateways if name in set(accounts)]

    def rules_for(self, account: AccountSettings) -> DetectionRules:
        """The account's own grace window where it sets one."""
        if account.grace_s is None:
            return self.rules
        return replace(self.rules, grace=timedelta(seconds=account.grace_s))

    def grace_s(self, account: AccountSettings) -> float:
        return self.rules_for(account).grace.total_seconds()

    def requires_stop(self, account: AccountSettings) -> bool:
        return self.scan.require_stop_loss if account.require_stop_loss is None else account.require_stop_loss

    def _detect(
        self, snapshots: Mapping[str, AccountSnapshot], kinds: frozenset[FindingKind]
    ) -> tuple[list[Finding], list[PositionKey]]:
        now = self.now()
        findings: list[Finding] = []
        pending: list[PositionKey] = []
        for snapshot in snapshots.values():
            if not snapshot.checked:
                continue
            detection = detect(
                snapshot.db_positions,
                snapshot.exchange_positions,
                self.rules_for(snapshot.account),
                now,
                kinds,
                orders=None if snapshot.orders_error else snapshot.orders,
                require_stop=self.requires_stop(snapshot.account),
                venue=snapshot.account.exchange,
            )
            findings.extend(detection.findings)
            pending.extend(detection.pending)
        return findings, pending

    async def check(
        self,
        kinds: frozenset[FindingKind] = ALL_KINDS,
        accounts: Sequence[str] | None = None,
        confirmed: Collection[str] = (),
        sightings: Collection[Sighting] = (),
    ) -> CheckResult:
        """Read, detect, and confirm what is new with a second read ``verify_delay_s`` later.

        Drift that was already confirmed in an earlier round (its fingerprint is in ``confirmed``), or that a
        stream announced (``sightings``), needs no second read; an account whose candidates are all known is
        reported from the first read.
        """
        started = self._clock()
        names = self.account_names(accounts)
        budgets = {id(g.budget): g.budget for g in (self.gateways[n] for n in names) if g.budget is not None}
        spent_before = {key: budget.spent for key, budget in budgets.items()}
        first = await self.reader.read(names)
        candidates, pending = self._detect(first, kinds)
        final = dict(first)
        known = {f.fingerprint for f in candidates if f.fingerprint in confirmed or _sighted(f, sightings)}
        findings = [f for f in candidates if f.fingerprint in known]
        suspect = sorted({f.key.account for f in candidates if f.fingerprint not in known}, key=names.index)
        if suspect:
            findings = [f for f in findings if f.key.account not in suspect]
            await self._sleep(self.scan.verify_delay_s)
            second = await self.reader.read(suspect)
            final.update(second)
            seen_first = {f.fingerprint for f in candidates}
            confirmed_now, pending_again = self._detect(second, kinds)
            findings += [f for f in confirmed_now if f.fingerprint in seen_first]
            pending = [key for key in pending if key.account not in second] + pending_again
            for snapshot in second.values():
                if not snapshot.checked:
                    log.info("%s: confirming read failed: %s", snapshot.account.name, snapshot.error)
        findings = await self._with_causes(findings, confirmed)
        findings.sort(key=lambda f: (names.index(f.key.account), f.key, f.kind))
        result = CheckResult(
            accounts=tuple(final[name].status() for name in names),
            findings=tuple(findings),
            pending=tuple(sorted(pending)),
            pending_gone=tuple(sorted(_without_position(pending, final))),
            started_at=started,
            finished_at=self._clock(),
            kinds=kinds,
            sightings=frozenset(sightings),
            budget_notes=tuple(
                note
                for key, budget in budgets.items()
                if (note := budget.bound_note(budget.spent - spent_before[key], self.scan.orphan_interval_s))
            ),
        )
        self._log(result, final)
        return result

    async def _with_causes(self, findings: list[Finding], confirmed: Collection[str]) -> list[Finding]:
        """Ask the venue's history why each new ghost vanished (and why a size shrank): one or two requests per
        finding, all at once; a history that cannot be read only makes the cause unknown."""
        wanted = [
            f for f in findings if _needs_cause(f) and f.fingerprint not in confirmed and f.key.account in self.gateways
        ]
        if not wanted:
            return findings
        causes = await asyncio.gather(*(self._cause(f) for f in wanted))
        found = {f.fingerprint: replace(f, cause=cause) for f, cause in zip(wanted, causes, strict=True)}
        return [found.get(f.fingerprint, f) for f in findings]

    async def _cause(self, finding: Finding) -> CloseCause:
        opened = [row.opened_at for row in finding.db_positions if row.opened_at is not None]
        gateway = self.gateways[finding.key.account]
        return await gateway.close_cause(finding.key.market, finding.key.side, min(opened) if opened else None)

    @staticmethod
    def _log(result: CheckResult, snapshots: Mapping[str, AccountSnapshot]) -> None:
        for note in result.budget_notes:
            log.warning("budget: %s", note)
        for status in result.accounts:
            snapshot = snapshots[status.account]
            found = [f for f in result.findings if f.key.account == status.account]
            log.info(
                "check account=%s result=%s duration_ms=%d exchange_positions=%d db_positions=%d findings=%d%s",
                status.account,
                status.status,
                snapshot.duration_s * 1000,
                len(snapshot.exchange_positions),
                len(snapshot.db_positions),
                len(found),
                f" error={status.error!r}" if status.error else "",
            )


def _sighted(finding: Finding, sightings: Collection[Sighting]) -> bool:
    return any(sighting.confirms(finding.kind, finding.key) for sighting in sightings)


def _without_position(keys: Sequence[PositionKey], snapshots: Mapping[str, AccountSnapshot]) -> list[PositionKey]:
    """The keys on which the read found no exchange position: that read said the position is gone."""
    held = {p.key for s in snapshots.values() for p in s.exchange_positions if p.quantity != 0}
    return [key for key in keys if key not in held]


def _needs_cause(finding: Finding) -> bool:
    """A ghost, or a position the exchange holds less of than the DB: something closed it, all or in part."""
    if finding.kind is FindingKind.GHOST:
        return True
    return finding.kind is FindingKind.QUANTITY_MISMATCH and (finding.difference or 0) < 0
