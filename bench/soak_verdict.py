"""The soak's verdict: what reached the alert chat and what reconbot changed, against what really happened.

The chat is read from the loopback Bot API's transcript, each message as first sent (later edits only mark a
finding resolved or fixed): an alert names its finding (``… · finding #17``), a digest carries one button per
finding it lists. reconbot's database says which drift each finding names (kind, account, market, side, when it
was filed) and which fixes it applied (``audit_log``). Four counts must be zero:

- **lost**: a drift that had to be announced (see :func:`bench.soak_truth.is_due`) whose finding never reached
  the chat — or a drift reconbot fixed without a word;
- **duplicate**: a finding announced more than once as new, or one drift announced as several findings;
- **false**: an announced finding that names no drift that was real when it was filed;
- **wrong fix**: an audited ``done`` that changed something that was not drift — with auto-fix on, a ghost row
  closed while its position was open, or while the trading bot was closing it itself. No operator presses a
  button in the soak, so any other fix is wrong too.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from bench.soak_truth import DRIFT_KINDS, Change, Drift, Timing, Window, Writer, is_due
from bot.callbacks import FindingAction, FindingButton
from emulator.telegram import StoredMessage
from services.model import FindingKind, PositionKey, Side

FINDING_LINE = re.compile(r"· finding #(\d+)\s*$", re.MULTILINE)
EPSILON_S = 0.5  # clocks: the driver's time.time() against PostgreSQL's now(), on one machine
EXAMPLES = 6


@dataclass(frozen=True)
class Announcement:
    finding_id: int
    at: float  # wall clock
    message_id: int
    via: str  # "alert" | "digest"


@dataclass
class Transcript:
    """The alert chat: announcements of findings, and how many messages of each other sort."""

    announcements: list[Announcement] = field(default_factory=list)
    messages: Counter[str] = field(default_factory=Counter)
    texts: list[tuple[float, str]] = field(default_factory=list)  # (wall clock, text as first sent)


def _digest_ids(markup: Mapping[str, Any] | None) -> list[int]:
    ids = []
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data") or ""
            if data.startswith(f"{FindingAction.__prefix__}:"):
                action = FindingAction.unpack(data)
                if action.action is FindingButton.SHOW:
                    ids.append(int(action.finding_id))
    return ids


def read_transcript(messages: Iterable[StoredMessage], wall_offset: float) -> Transcript:
    """Sort the bot's messages in the alert chat; ``wall_offset`` turns the emulator's monotonic send times into
    wall-clock ones."""
    transcript = Transcript()
    for message in messages:
        first = message.history[0] if message.history else None
        text = first.text if first else message.text
        markup = first.reply_markup if first else message.reply_markup
        at = message.sent_at + wall_offset
        transcript.texts.append((at, text))
        match = FINDING_LINE.search(text)
        digest = _digest_ids(markup)
        if match:
            transcript.messages["alert"] += 1
            transcript.announcements.append(Announcement(int(match.group(1)), at, message.message_id, "alert"))
        elif digest:
            transcript.messages["digest"] += 1
            transcript.announcements += [Announcement(i, at, message.message_id, "digest") for i in digest]
        elif text.startswith("⏰"):
            transcript.messages["reminder"] += 1
        else:
            transcript.messages["notice or other"] += 1
    return transcript


@dataclass(frozen=True)
class FiledFinding:
    id: int
    kind: str
    key: PositionKey
    first_seen: float
    state: str
    closed_at: float | None = None  # resolved or fixed; None while it is live

    @property
    def live(self) -> bool:
        return self.state in ("open", "snoozed", "acknowledged")

    def open_during(self, drift: Drift) -> bool:
        """Filed before the drift ended, not closed before it started: the chat showed it as open meanwhile."""
        return (
            (self.kind, self.key) == (str(drift.kind), drift.key)
            and self.first_seen <= drift.end + EPSILON_S
            and (self.closed_at is None or self.closed_at >= drift.start - EPSILON_S)
        )


@dataclass(frozen=True)
class AuditFix:
    id: int
    at: float
    actor: str
    action: str
    target: str
    key: PositionKey | None
    quantity: Decimal | None


@dataclass
class Filed:
    """What reconbot's database holds at the end."""

    findings: dict[int, FiledFinding]
    fixes: list[AuditFix]
    outcomes: Counter[str]
    undelivered: int

    def changes(self) -> list[Change]:
        """Each ghost row reconbot closed, as a change of the DB side (the other fixes are judged wrong anyway
        and change nothing the soak's positions table keeps apart)."""
        return [
            Change(fix.at, fix.key, None, -fix.quantity, False, f"{fix.action} by {fix.actor}", Writer.RECONBOT)
            for fix in self.fixes
            if fix.key is not None and fix.quantity is not None and fix.action == "close_ghost"
        ]


def _key_of(row: Mapping[str, Any] | None) -> tuple[PositionKey | None, Decimal | None]:
    if not row or not row.get("account") or not row.get("symbol") or row.get("side") not in set(Side):
        return None, None
    quantity = row.get("quantity")
    key = PositionKey(row["account"], row["symbol"], Side(row["side"]))
    return key, None if quantity is None else Decimal(str(quantity))


async def read_filed(conn: asyncpg.Connection, channel: str = "telegram") -> Filed:
    findings = {
        r["id"]: FiledFinding(
            r["id"],
            r["kind"],
            PositionKey(r["account"], r["market"], Side(r["side"])),
            r["first_seen"].timestamp(),
            r["state"],
            None if r["closed_at"] is None else r["closed_at"].timestamp(),
        )
        for r in await conn.fetch(
            "SELECT id, kind, account, market, side, first_seen, state, closed_at FROM reconbot.findings"
        )
    }
    fixes, outcomes = [], Counter[str]()
    for r in await conn.fetch(
        "SELECT id, at, actor, action, target, outcome, before FROM reconbot.audit_log ORDER BY id"
    ):
        outcomes[f"{r['action']} {r['outcome']}"] += 1
        if r["outcome"] != "done":
            continue
        before = json.loads(r["before"]) if isinstance(r["before"], str) else r["before"]
        key, quantity = _key_of(before)
        fixes.append(AuditFix(r["id"], r["at"].timestamp(), r["actor"], r["action"], r["target"], key, quantity))
    undelivered = await conn.fetchval(
        "SELECT count(*) FROM reconbot.outbox WHERE channel = $1 AND sent_at IS NULL AND dead_at IS NULL", channel
    )
    return Filed(findings, fixes, outcomes, int(undelivered))


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    wrong_fix: list[str] = field(default_factory=list)
    phone_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    phone_clear_s: list[float] = field(default_factory=list)  # no fault in its way between drift and message
    drifts: Counter[str] = field(default_factory=Counter)
    stale: list[str] = field(default_factory=list)  # live at the end, though no drift of its kind was left there

    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicate": len(self.duplicate),
            "false": len(self.false),
            "wrong_fix": len(self.wrong_fix),
        }

    def examples(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)[:EXAMPLES]) for name in self.counts()}


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def phone_figures(latencies: Sequence[float]) -> dict[str, float | int | None]:
    if not latencies:
        return {"samples": 0, "median_s": None, "p95_s": None, "max_s": None}
    return {
        "samples": len(latencies),
        "median_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 0.95),
        "max_s": max(latencies),
    }


@dataclass
class _Judge:
    drifts: Sequence[Drift]
    changes: Sequence[Change]
    windows: Sequence[Window]
    venues: Mapping[str, str]
    filed: Filed
    transcript: Transcript
    timing: Timing
    origin: float
    end: float
    slack_s: float
    faulted: Sequence[Window]

    def __post_init__(self) -> None:
        self.by_kind: dict[tuple[PositionKey, str], list[Drift]] = defaultdict(list)
        for drift in self.drifts:
            self.by_kind[(drift.key, str(drift.kind))].append(drift)
        self.announced: dict[int, list[Announcement]] = defaultdict(list)
        for announcement in self.transcript.announcements:
            self.announced[announcement.finding_id].append(announcement)

    def when(self, at: float) -> str:
        return f"+{at - self.origin:.1f}s" + (" (replicas stopping)" if at > self.end else "")

    def drift_of(self, finding: FiledFinding) -> tuple[Drift | None, str | None]:
        """The drift a finding names — the last of its key and kind that started before it was filed — or why
        there is none."""
        started = [
            d for d in self.by_kind.get((finding.key, finding.kind), []) if d.start - EPSILON_S <= finding.first_seen
        ]
        if not started:
            return None, f"no {finding.kind} on {finding.key} had started"
        drift = started[-1]
        if not drift.real:
            life = drift.planned_s if drift.ended_by is Writer.RECONBOT else drift.duration
            return None, (
                f"the {drift.kind} was to last {life or 0:.2f}s, under its {drift.min_life:g}s minimum life "
                f"({drift.cause})"
            )
        if drift.ended_by is not None and finding.first_seen > drift.end + self.slack_s:
            return None, f"filed {finding.first_seen - drift.end:.1f}s after the {drift.kind} ended"
        return drift, None

    def exchange_at(self, key: PositionKey, at: float) -> Decimal:
        size = Decimal(0)
        for change in self.changes:
            if change.key == key and change.exchange is not None and change.at <= at:
                size = change.exchange
        return size

    def run(self) -> Verdict:
        verdict = Verdict()
        findings_of: dict[Drift, list[FiledFinding]] = defaultdict(list)
        for finding in sorted(self.filed.findings.values(), key=lambda f: f.id):
            if finding.kind not in DRIFT_KINDS:
                drift, why = None, f"the soak makes no {finding.kind}"
            else:
                drift, why = self.drift_of(finding)
            announcements = self.announced.get(finding.id, [])
            if drift is not None:
                findings_of[drift].append(finding)
            elif announcements:
                verdict.false.append(
                    f"finding #{finding.id} {finding.kind} {finding.key} filed {self.when(finding.first_seen)}, "
                    f"announced {self.when(announcements[0].at)}: {why}"
                )
            if len(announcements) > 1:
                verdict.duplicate += [
                    f"finding #{finding.id} {finding.kind} {finding.key} announced {len(announcements)} times: "
                    + ", ".join(f"{a.via} {self.when(a.at)}" for a in announcements)
                ] * (len(announcements) - 1)
        for drift in self.drifts:
            verdict.drifts["drifts"] += 1
            verdict.drifts["real"] += drift.real
            due = is_due(drift, self.windows, self.venues[drift.key.account], self.timing)
            verdict.drifts["due"] += due
            mine = findings_of.get(drift, [])
            told = sorted((a for f in mine for a in self.announced.get(f.id, [])), key=lambda a: a.at)
            if told:
                verdict.phone_s[str(drift.kind)].append(told[0].at - drift.start)
                venue = self.venues[drift.key.account]
                if not any(
                    w.start < told[0].at and w.end > drift.start and w.hides(drift.key.account, venue)
                    for w in self.faulted
                ):
                    verdict.phone_clear_s.append(told[0].at - drift.start)
            announced = sorted({a.finding_id for a in told})
            if len(announced) > 1:
                verdict.duplicate += [
                    f"{drift.describe(self.origin)} announced as findings " + ", ".join(f"#{i}" for i in announced)
                ] * (len(announced) - 1)
            fixed_silently = drift.ended_by is Writer.RECONBOT and drift.real
            if told or not (due or fixed_silently) or self.shown_open(drift):
                continue  # told, not owed, or still on screen from a finding reconbot never saw end
            if fixed_silently and not due:
                why = "fixed by reconbot without an alert"
            elif mine:
                why = f"filed as #{mine[0].id} {self.when(mine[0].first_seen)} but never reached the chat"
            else:
                why = "never filed"
            verdict.lost.append(f"{drift.describe(self.origin)}: {why}")
        for fix in self.filed.fixes:
            why = self.wrong(fix)
            if why:
                verdict.wrong_fix.append(f"audit #{fix.id} {self.when(fix.at)} {fix.action} {fix.target}: {why}")
        left = {(d.key, str(d.kind)) for d in self.drifts if d.ended_by is None}
        verdict.stale = [
            f"finding #{f.id} {f.kind} {f.key} ({f.state})"
            for f in sorted(self.filed.findings.values(), key=lambda f: f.id)
            if f.live and (f.key, f.kind) not in left
        ]
        return verdict

    def shown_open(self, drift: Drift) -> bool:
        """An announced finding of the drift's key and kind stayed open all through it: reconbot never saw an
        earlier drift end, so this one is the same finding, still on screen (``stale`` counts the opposite)."""
        return any(
            f.open_during(drift) and f.first_seen <= drift.start and self.announced.get(f.id)
            for f in self.filed.findings.values()
        )

    def wrong(self, fix: AuditFix) -> str | None:
        if fix.action != "close_ghost" or fix.key is None:
            return f"done by {fix.actor}, though no operator pressed a button"
        size = self.exchange_at(fix.key, fix.at)
        if size > 0:
            return f"its position {fix.key} was open on the exchange ({size})"
        ghosts = [
            d
            for d in self.by_kind.get((fix.key, str(FindingKind.GHOST)), [])
            if d.start - EPSILON_S <= fix.at <= d.end + EPSILON_S
        ]
        if not ghosts:
            return f"{fix.key} was no ghost then"
        ghost = ghosts[-1]
        if not ghost.real:
            return (
                f"the trading bot was to close that row itself {ghost.planned_s or 0:.2f}s after the exchange "
                f"({ghost.cause}): no ghost that outlives the {ghost.min_life:g}s confirming read"
            )
        return None


def judge(
    drifts: Sequence[Drift],
    changes: Sequence[Change],
    windows: Sequence[Window],
    venues: Mapping[str, str],
    filed: Filed,
    transcript: Transcript,
    timing: Timing,
    origin: float,
    end: float,
    slack_s: float,
    faulted: Sequence[Window] = (),
) -> Verdict:
    """Count lost, duplicate and false alerts and wrong fixes, with examples, and the time to phone (also apart
    for drifts with no fault in their way — of their account, their venue, or shared — before their message)."""
    return _Judge(drifts, changes, windows, venues, filed, transcript, timing, origin, end, slack_s, faulted).run()
