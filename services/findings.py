"""Findings with a life: stored by fingerprint, so the same drift seen again is the same finding.

States: open → snoozed / acknowledged → resolved (drift gone) or fixed (someone fixed it). A check files
its result in one transaction: new findings, findings that persist, findings that resolved, each account's
check status, and an outbox row for every alert that has to go out. A persisting finding that grew beyond what
its alerts showed (services.regrowth) is open again and alerted again.

A finding with a confirmed fix whose outcome is not recorded yet is never resolved as "drift no longer seen":
the drift may be gone *because of* that fix. It stays live until the fix, or the re-read that settles an
interrupted one, says what happened.

Drift ends the way it starts: confirmed by a second read. The read that first no longer sees a live finding
only marks it (``missed_at`` in its details), silently: no edit, no state change, so a snooze or an
acknowledgement stands. The next read of its account that covers its kind — the confirming read the reconciler
makes ``verify_delay_s`` later, or the next check when that read failed — resolves it if it does not see it either,
and any read that sees it clears the mark. So one venue answer that left out a position, or one DB read that left
out a row, neither edits the alert to "Resolved" nor, at the check after, files the same drift as new with a
second alert. A stream event that says the position is gone (``Sighting.ends``) is the first of those two reads.
Nothing counts as a miss on an account that could not be read (its findings are not even looked at), for order
kinds on an account whose orders could not be read, for a key back inside its grace window, or while a confirmed
fix is unsettled; the mark stays until a read that counts.

Drift seen again after two reads said it was gone is filed as new and rings. A position opened again on the same
key (the trading bot, or a trader, opening another untracked one right after the first was closed) is new risk
the trader must hear of; keeping resolved findings open a while to absorb a venue that flaps twice in a row
would hide exactly that, for a glitch the two-read rule already makes unlikely.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from services import audit, outbox
from services.announcements import AlertPolicy, announce, queue_update, remind
from services.finding_details import FindingDetails
from services.model import LIVE_STATES, ORDER_KINDS, CheckResult, Finding, FindingKind, FindingState, PositionKey, Side
from services.notices import Notice, NoticeKind
from services.outbox import Destination, OutboxKind
from services.regrowth import baseline_of, growth_of

_COLUMNS = (
    "id, fingerprint, kind, account, exchange, market, side, state, details, first_seen, last_seen, "
    "snoozed_until, reminded_at, closed_at, closed_by, resolution"
)
_ADVISORY_LOCK = 0x66696E64  # serialises filing of concurrent checks
_QUIETING_ACTIONS = {
    FindingState.SNOOZED: "snooze",
    FindingState.ACKNOWLEDGED: "acknowledge",
    FindingState.OPEN: "reopen",
}


@dataclass(frozen=True, slots=True)
class StoredFinding:
    id: int
    fingerprint: str
    kind: FindingKind
    account: str
    exchange: str
    market: str
    side: Side
    state: FindingState
    details: FindingDetails
    first_seen: datetime
    last_seen: datetime
    snoozed_until: datetime | None
    reminded_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    resolution: str | None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def key(self) -> PositionKey:
        return PositionKey(self.account, self.market, self.side)

    @property
    def db_position_ids(self) -> list[str]:
        return list(self.details.db_position_ids)


def _biggest_first(findings: Iterable[Finding]) -> list[tuple[Finding, FindingDetails]]:
    """A check's findings with what their alerts show, biggest exposure first (unknown values last): new ones
    are filed, and so announced, in this order."""
    shown = [(f, FindingDetails.of(f)) for f in findings]
    return sorted(shown, key=lambda pair: (pair[1].exposure_usd is None, -(pair[1].exposure_usd or 0)))


def _stored(record: asyncpg.Record) -> StoredFinding:
    details = record["details"]
    return StoredFinding(
        id=record["id"],
        fingerprint=record["fingerprint"],
        kind=FindingKind(record["kind"]),
        account=record["account"],
        exchange=record["exchange"],
        market=record["market"],
        side=Side(record["side"]),
        state=FindingState(record["state"]),
        details=FindingDetails.model_validate_json(details)
        if isinstance(details, str)
        else FindingDetails.model_validate(details),
        first_seen=record["first_seen"],
        last_seen=record["last_seen"],
        snoozed_until=record["snoozed_until"],
        reminded_at=record["reminded_at"],
        closed_at=record["closed_at"],
        closed_by=record["closed_by"],
        resolution=record["resolution"],
    )


def _read_again(first: CheckResult, again: CheckResult) -> CheckResult:
    """A check some of whose accounts ``again`` read once more: those accounts as the later read saw them."""
    read = {status.account for status in again.accounts}
    statuses = {status.account: status for status in (*first.accounts, *again.accounts)}
    return replace(
        first,
        accounts=tuple(statuses[status.account] for status in first.accounts),
        findings=(*(f for f in first.findings if f.key.account not in read), *again.findings),
        pending=(*(k for k in first.pending if k.account not in read), *again.pending),
        pending_gone=(*(k for k in first.pending_gone if k.account not in read), *again.pending_gone),
        finished_at=again.finished_at,
        budget_notes=tuple(dict.fromkeys((*first.budget_notes, *again.budget_notes))),
    )


@dataclass(frozen=True)
class FiledCheck:
    """A check and what filing it changed."""

    result: CheckResult
    new: tuple[StoredFinding, ...]
    resolved: tuple[StoredFinding, ...]
    live: tuple[StoredFinding, ...]
    reminded: tuple[StoredFinding, ...] = ()
    notices: tuple[Notice, ...] = ()
    grown: tuple[StoredFinding, ...] = ()  # snoozed, acknowledged or open findings that grew: alerted again
    missed: tuple[StoredFinding, ...] = ()  # live findings this check first no longer saw: one more read ends them

    def then(self, again: FiledCheck) -> FiledCheck:
        """This check and ``again``, the read of some of its accounts that confirms what it no longer saw, as one
        check: those accounts as the later read left them (as this one did where that read failed)."""
        judged = {status.account for status in again.result.accounts if status.checked}
        return FiledCheck(
            _read_again(self.result, again.result),
            new=(*self.new, *again.new),
            resolved=(*self.resolved, *again.resolved),
            live=(*(f for f in self.live if f.account not in judged), *again.live),
            reminded=(*self.reminded, *again.reminded),
            notices=(*self.notices, *again.notices),
            grown=(*self.grown, *again.grown),
            missed=(*(f for f in self.missed if f.account not in judged), *again.missed),
        )


class FindingsStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def file(
        self, result: CheckResult, destinations: Sequence[Destination], policy: AlertPolicy | None = None
    ) -> FiledCheck:
        """Record a check: insert new findings, refresh persisting ones, mark vanished ones and resolve those that
        vanished from two reads, queue alerts, end expired snoozes, queue reminders, and raise or clear
        unreadable-account alerts."""
        checked = [a.account for a in result.accounts if a.checked]
        kinds = [k.value for k in result.kinds]
        pending = {(k.account, k.market, k.side.value) for k in result.pending}
        blind = {a.account for a in result.accounts if a.orders_error}  # orders unread: order kinds not judged
        new: list[StoredFinding] = []
        grown: list[StoredFinding] = []
        resolved: list[StoredFinding] = []
        missed: list[StoredFinding] = []
        live: list[StoredFinding] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
            existing = {
                f.fingerprint: f
                for f in map(
                    _stored,
                    await conn.fetch(
                        f"SELECT {_COLUMNS} FROM reconbot.findings "
                        "WHERE state = ANY($1::text[]) AND account = ANY($2::text[]) AND kind = ANY($3::text[])",
                        [str(s) for s in LIVE_STATES],
                        checked,
                        kinds,
                    ),
                )
            }
            policy = policy or AlertPolicy()
            for finding, shown in _biggest_first(result.findings):
                current = shown.model_copy(update={"severity": policy.severity.of(shown.exposure_usd)})
                if finding.fingerprint in existing:
                    stored, grew = await self._refresh(conn, existing.pop(finding.fingerprint), current, policy)
                    live.append(stored)
                    if grew:
                        grown.append(stored)
                    continue
                details = current.model_copy(update={"baseline": baseline_of(finding.kind, current, FindingState.OPEN)})
                record = await conn.fetchrow(
                    f"INSERT INTO reconbot.findings (fingerprint, kind, account, exchange, market, side, state, "
                    f"details) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7::jsonb) RETURNING {_COLUMNS}",
                    finding.fingerprint,
                    finding.kind.value,
                    finding.key.account,
                    finding.exchange,
                    finding.key.market,
                    finding.key.side.value,
                    details.model_dump_json(),
                )
                stored = _stored(record)
                new.append(stored)
                live.append(stored)
            await announce(conn, new, destinations, policy, grown)
            fixing = await self._being_fixed(conn) if existing else set()
            for gone in existing.values():
                if (gone.account, gone.market, gone.side.value) in pending:
                    live.append(gone)  # inside the grace window again: neither drift nor resolved yet
                    continue
                if gone.id in fixing or (gone.account, gone.market, gone.side.value) in fixing:
                    live.append(gone)  # a confirmed fix on it has not recorded its outcome yet
                    continue
                if gone.kind in ORDER_KINDS and gone.account in blind:
                    live.append(gone)  # its orders could not be read this time: not seen is not gone
                    continue
                if gone.details.missed_at is None and not any(s.ends(gone.kind, gone.key) for s in result.sightings):
                    marked = await self._miss(conn, gone.id)
                    if marked is not None:
                        live.append(marked)  # the first read that no longer sees it: one more must agree
                        missed.append(marked)
                    continue
                closed = await self._close(conn, gone.id, FindingState.RESOLVED, "reconbot", "drift no longer seen")
                if closed is not None:
                    resolved.append(closed)
                    await queue_update(conn, closed.id, destinations)
            notices = await self._record_accounts(conn, result, policy.unchecked_after)
            for notice in notices:
                await outbox.enqueue_many(conn, destinations, OutboxKind.NOTICE, body=notice.to_body())
            reminded = await self._remind(conn, destinations, policy)
        return FiledCheck(
            result,
            tuple(new),
            tuple(resolved),
            tuple(live),
            tuple(reminded),
            tuple(notices),
            tuple(grown),
            tuple(missed),
        )

    @staticmethod
    async def _refresh(
        conn: asyncpg.Connection, known: StoredFinding, current: FindingDetails, policy: AlertPolicy
    ) -> tuple[StoredFinding, bool]:
        """Keep a persisting finding's figures current; True when it grew. Grown beyond its baseline, it is open
        again (a snooze or acknowledgement covered what was shown) with the growth recorded and the baseline
        moved to it; the reminder clock restarts with the alert that growth sends."""
        baseline = known.details.baseline or baseline_of(known.kind, known.details, known.state)
        carried = {
            "cause": current.cause if current.cause is not None else known.details.cause,  # read once per drift
            "baseline": baseline,
            "growth": known.details.growth,
        }
        current = current.model_copy(update=carried)
        growth = growth_of(known.kind, current, baseline, policy.regrowth_factor)
        if growth is None:
            record = await conn.fetchrow(
                f"UPDATE reconbot.findings SET last_seen = now(), details = $2::jsonb "
                f"WHERE id = $1 RETURNING {_COLUMNS}",
                known.id,
                current.model_dump_json(),
            )
            return _stored(record), False
        current = current.model_copy(
            update={"growth": growth, "baseline": baseline_of(known.kind, current, FindingState.OPEN)}
        )
        record = await conn.fetchrow(
            f"UPDATE reconbot.findings SET last_seen = now(), details = $2::jsonb, state = 'open', "
            f"snoozed_until = NULL, closed_by = NULL, reminded_at = now() "
            f"WHERE id = $1 AND state = ANY($3::text[]) RETURNING {_COLUMNS}",
            known.id,
            current.model_dump_json(),
            [str(s) for s in LIVE_STATES],
        )
        return (_stored(record), True) if record else (known, False)  # fixed meanwhile: never reopened

    @staticmethod
    async def _miss(conn: asyncpg.Connection, finding_id: int) -> StoredFinding | None:
        """Mark a live finding that this check no longer saw; nothing is said about it yet."""
        record = await conn.fetchrow(
            f"UPDATE reconbot.findings SET details = details || jsonb_build_object('missed_at', now()) "
            f"WHERE id = $1 AND state = ANY($2::text[]) RETURNING {_COLUMNS}",
            finding_id,
            [str(s) for s in LIVE_STATES],
        )
        return _stored(record) if record else None

    @staticmethod
    async def _being_fixed(conn: asyncpg.Connection) -> set[int | tuple[str, str, str]]:
        """The findings (by id, and by position for fixes asked without one: ``/closeghost``) that a confirmed fix
        is changing, or was changing when its process stopped, until its outcome is recorded."""
        records = await conn.fetch(
            "SELECT finding_id, payload ->> 'account' AS account, payload ->> 'market' AS market, "
            "payload ->> 'side' AS side FROM reconbot.confirmations WHERE outcome = 'confirmed' AND settled_at IS NULL"
        )
        fixing: set[int | tuple[str, str, str]] = set()
        for r in records:
            fixing.add(r["finding_id"] if r["finding_id"] is not None else (r["account"], r["market"], r["side"]))
        return fixing

    async def _remind(
        self, conn: asyncpg.Connection, destinations: Sequence[Destination], policy: AlertPolicy
    ) -> list[StoredFinding]:
        """End snoozes that ran out, then remind about findings open longer than ``remind_after`` since the
        last alert or reminder: one message per destination listing them."""
        woken = await conn.fetch(
            f"UPDATE reconbot.findings SET state = 'open', snoozed_until = NULL, reminded_at = NULL "
            f"WHERE state = 'snoozed' AND snoozed_until <= now() RETURNING {_COLUMNS}"
        )
        for record in woken:
            await queue_update(conn, record["id"], destinations)
        due = await conn.fetch(
            f"UPDATE reconbot.findings SET reminded_at = now() "
            f"WHERE state = 'open' AND coalesce(reminded_at, first_seen) <= now() - $1::interval "
            f"RETURNING {_COLUMNS}",
            policy.remind_after,
        )
        return await remind(conn, list(map(_stored, due)), destinations, policy)

    @staticmethod
    async def _record_accounts(conn: asyncpg.Connection, result: CheckResult, unchecked_after: int) -> list[Notice]:
        """Keep each account's last check; returns the notices due: newly unreadable, or readable again."""
        notices: list[Notice] = []
        for status in result.accounts:
            record = await conn.fetchrow(
                """INSERT INTO reconbot.account_checks AS c
                       (account, exchange, checked_at, ok, error, positions, failures_in_row, failing_since,
                        last_ok_at)
                   VALUES ($1, $2, now(), $3, $4, $5, CASE WHEN $3 THEN 0 ELSE 1 END,
                           CASE WHEN $3 THEN NULL ELSE now() END, CASE WHEN $3 THEN now() END)
                   ON CONFLICT (account) DO UPDATE SET
                       exchange = EXCLUDED.exchange, checked_at = now(), ok = $3, error = $4, positions = $5,
                       failures_in_row = CASE WHEN $3 THEN 0 ELSE c.failures_in_row + 1 END,
                       failing_since = CASE WHEN $3 THEN NULL ELSE coalesce(c.failing_since, now()) END,
                       last_ok_at = CASE WHEN $3 THEN now() ELSE c.last_ok_at END
                   RETURNING failures_in_row, failing_since, alerted_at""",
                status.account,
                status.exchange,
                status.checked,
                status.error,
                status.positions,
            )
            if not status.checked and record["failures_in_row"] >= unchecked_after and record["alerted_at"] is None:
                notices.append(
                    Notice(
                        NoticeKind.UNREACHABLE,
                        account=status.account,
                        since=record["failing_since"],
                        failures=record["failures_in_row"],
                        error=status.error,
                        failed=status.failed,
                    )
                )
                await conn.execute(
                    "UPDATE reconbot.account_checks SET alerted_at = now() WHERE account = $1", status.account
                )
            elif status.checked and record["alerted_at"] is not None:
                notices.append(Notice(NoticeKind.REACHABLE, account=status.account))
                await conn.execute(
                    "UPDATE reconbot.account_checks SET alerted_at = NULL WHERE account = $1", status.account
                )
        return notices

    @staticmethod
    async def _close(
        conn: asyncpg.Connection, finding_id: int, state: FindingState, by: str, resolution: str
    ) -> StoredFinding | None:
        record = await conn.fetchrow(
            f"UPDATE reconbot.findings SET state = $2, closed_at = now(), closed_by = $3, resolution = $4 "
            f"WHERE id = $1 AND state = ANY($5::text[]) RETURNING {_COLUMNS}",
            finding_id,
            state,
            by,
            resolution,
            [str(s) for s in LIVE_STATES],
        )
        return _stored(record) if record else None

    async def mark_fixed(
        self, finding_id: int, by: str, resolution: str, destinations: Sequence[Destination]
    ) -> StoredFinding | None:
        """Close a live finding as fixed and queue the edit of its alerts; None if it was no longer live."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.fix_on(conn, finding_id, by, resolution, destinations)

    @classmethod
    async def fix_on(
        cls,
        conn: asyncpg.Connection,
        finding_id: int,
        by: str,
        resolution: str,
        destinations: Sequence[Destination],
    ) -> StoredFinding | None:
        """``mark_fixed`` in the caller's transaction, with the change that fixed it."""
        closed = await cls._close(conn, finding_id, FindingState.FIXED, by, resolution)
        if closed is not None:
            await queue_update(conn, finding_id, destinations)
        return closed

    async def set_state(
        self,
        finding_id: int,
        state: FindingState,
        *,
        by: str | None,
        destinations: Sequence[Destination],
        snoozed_until: datetime | None = None,
        actor: str | None = None,
    ) -> StoredFinding | None:
        """Snooze, acknowledge or reopen a live finding (guarded); the alerts are edited to say so (``by``: the
        name they show), and what they show becomes the finding's baseline: it alerts again only when it grows
        beyond that. ``actor`` (with the user's id) gets an audit row in the same transaction. Serialised with
        filing, so a check running at the same moment neither reopens it on a stale baseline nor loses this one."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
            record = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM reconbot.findings WHERE id = $1 AND state = ANY($2::text[])",
                finding_id,
                [str(s) for s in LIVE_STATES],
            )
            if record is None:
                return None
            known = _stored(record)
            details = known.details.model_copy(
                update={"baseline": baseline_of(known.kind, known.details, FindingState(state))}
            )
            record = await conn.fetchrow(
                f"UPDATE reconbot.findings SET state = $2, snoozed_until = $3, closed_by = $4, details = $5::jsonb "
                f"WHERE id = $1 RETURNING {_COLUMNS}",
                finding_id,
                state,
                snoozed_until,
                by,
                details.model_dump_json(),
            )
            if actor is not None:
                await audit.record(
                    conn,
                    actor=actor,
                    action=_QUIETING_ACTIONS[FindingState(state)],
                    target=f"finding #{finding_id} {known.kind} {known.market} {known.side.upper()} on {known.account}",
                    outcome="done",
                    after={"state": str(state), "snoozed_until": snoozed_until},
                )
            await queue_update(conn, finding_id, destinations)
        return _stored(record)

    async def digest(self, digest_id: int) -> list[StoredFinding]:
        """The findings a digest listed, in its order (biggest first)."""
        ids = await self.pool.fetchval("SELECT finding_ids FROM reconbot.digests WHERE id = $1", digest_id)
        found = [await self.get(finding_id) for finding_id in ids or []]
        return [f for f in found if f is not None]

    async def get(self, finding_id: int) -> StoredFinding | None:
        record = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM reconbot.findings WHERE id = $1", finding_id)
        return _stored(record) if record else None

    async def live(self, accounts: Iterable[str] | None = None) -> list[StoredFinding]:
        """Open, snoozed and acknowledged findings, oldest first."""
        records = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM reconbot.findings WHERE state = ANY($1::text[]) "
            "AND ($2::text[] IS NULL OR account = ANY($2::text[])) ORDER BY id",
            [str(s) for s in LIVE_STATES],
            None if accounts is None else list(accounts),
        )
        return [_stored(r) for r in records]

    async def live_fingerprints(self) -> set[str]:
        """Drift already confirmed and announced: seen again, it needs no second read."""
        return {
            r["fingerprint"]
            for r in await self.pool.fetch(
                "SELECT fingerprint FROM reconbot.findings WHERE state = ANY($1::text[])", [str(s) for s in LIVE_STATES]
            )
        }

    async def live_ghost_for_position(self, position_id: str) -> StoredFinding | None:
        record = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM reconbot.findings WHERE kind = 'ghost' AND state = ANY($1::text[]) "
            "AND details -> 'db_position_ids' ? $2 ORDER BY id LIMIT 1",
            [str(s) for s in LIVE_STATES],
            position_id,
        )
        return _stored(record) if record else None

    async def record_alert_message(self, chat_id: int, message_id: int, finding_id: int) -> None:
        """Remember a message that announced a finding, so its changes edit that message."""
        await self.pool.execute(
            "INSERT INTO reconbot.alert_messages (chat_id, message_id, finding_id) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            chat_id,
            message_id,
            finding_id,
        )

    async def alert_messages(self, finding_id: int, chat_id: int) -> list[int]:
        records = await self.pool.fetch(
            "SELECT message_id FROM reconbot.alert_messages WHERE finding_id = $1 AND chat_id = $2 ORDER BY message_id",
            finding_id,
            chat_id,
        )
        return [r["message_id"] for r in records]

    async def is_alert_message(self, chat_id: int, message_id: int, finding_id: int) -> bool:
        """Whether this message announced this finding (and so is edited with it through the outbox)."""
        return bool(
            await self.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM reconbot.alert_messages "
                "WHERE chat_id = $1 AND message_id = $2 AND finding_id = $3)",
                chat_id,
                message_id,
                finding_id,
            )
        )

    async def account_checks(self) -> dict[str, asyncpg.Record]:
        records = await self.pool.fetch("SELECT * FROM reconbot.account_checks")
        return {r["account"]: r for r in records}
