"""What a filed check sends, decided in the filing transaction: one alert per new or grown finding (a grown
one's earlier messages are edited first), or one digest when a check files more than ``digest_after`` of them;
one reminder per destination listing what is still open; and every edit to each chat that shows a finding,
alert chats and the replies to /findings, /scan, /reconcile alike.

A kind or cause set to ``off`` is recorded and listed, never announced or reminded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import asyncpg

from services import outbox
from services.causes import told_cause
from services.chat_address import chat_of
from services.outbox import Channel, Destination, OutboxKind
from services.settings import AlertSettings, SeveritySettings
from services.severity import Notify, NotifyKey, notify_of

if TYPE_CHECKING:
    from services.findings import StoredFinding


@dataclass(frozen=True)
class AlertPolicy:
    """When to remind, when an unreadable account deserves an alert, how loud each kind and cause is, when many
    new findings become one digest, and how much a finding must grow to ring again."""

    remind_after: timedelta = timedelta(hours=1)
    unchecked_after: int = 3
    severity: SeveritySettings = field(default_factory=SeveritySettings)
    digest_after: int = 5
    notify: Mapping[NotifyKey, Notify] = field(default_factory=dict)
    regrowth_factor: Decimal = Decimal(2)

    @classmethod
    def from_settings(cls, alerts: AlertSettings) -> AlertPolicy:
        return cls(
            remind_after=timedelta(seconds=alerts.remind_after_s),
            unchecked_after=alerts.unchecked_after,
            severity=alerts.severity,
            digest_after=alerts.digest_after,
            notify=dict(alerts.notify),
            regrowth_factor=alerts.regrowth_factor,
        )

    def notify_for(self, finding: StoredFinding) -> Notify:
        """The finding's sound: that of the cause its alert tells (a liquidation rings), else its kind's."""
        cause = finding.details.cause
        return notify_of(self.notify, finding.kind, told_cause(finding.kind, cause.kind if cause else None))

    def announced(self, findings: Sequence[StoredFinding]) -> list[StoredFinding]:
        return [f for f in findings if self.notify_for(f) is not Notify.OFF]


def biggest_first(findings: Sequence[StoredFinding]) -> list[StoredFinding]:
    """Biggest exposure first; findings whose value is unknown after those whose value is known."""
    return sorted(findings, key=lambda f: (f.details.exposure_usd is None, -(f.details.exposure_usd or Decimal(0))))


async def announce(
    conn: asyncpg.Connection,
    new: Sequence[StoredFinding],
    destinations: Sequence[Destination],
    policy: AlertPolicy,
    grown: Sequence[StoredFinding] = (),
) -> None:
    """Queue the alerts of a check's new and grown findings, biggest exposure first, or one digest of them. A grown
    finding's earlier Telegram messages are edited first (its snooze or acknowledgement ended), so the chat shows
    one state when the new alert rings; e-mail gets the alert alone."""
    chats = [d for d in destinations if d.channel is Channel.TELEGRAM]
    for finding in grown:
        await queue_update(conn, finding.id, chats)
    announced = biggest_first(policy.announced([*new, *grown]))
    if not announced:
        return
    ids = [f.id for f in announced]
    if len(announced) > policy.digest_after:
        digest_id = await conn.fetchval("INSERT INTO reconbot.digests (finding_ids) VALUES ($1) RETURNING id", ids)
        await outbox.enqueue_many(
            conn, destinations, OutboxKind.DIGEST, body={"digest_id": digest_id, "finding_ids": ids}
        )
        return
    for finding in announced:
        await outbox.enqueue_many(conn, destinations, OutboxKind.ALERT, finding_id=finding.id)


async def remind(
    conn: asyncpg.Connection, due: Sequence[StoredFinding], destinations: Sequence[Destination], policy: AlertPolicy
) -> list[StoredFinding]:
    """One reminder per destination listing the open findings due for one; returns those listed."""
    listed = biggest_first(policy.announced(due))
    if listed:
        await outbox.enqueue_many(conn, destinations, OutboxKind.REMINDER, body={"finding_ids": [f.id for f in listed]})
    return listed


async def update_destinations(
    conn: asyncpg.Connection, finding_id: int, destinations: Sequence[Destination]
) -> list[Destination]:
    """The destinations plus every other chat that shows this finding with buttons, so every copy is edited."""
    chats = await conn.fetch("SELECT DISTINCT chat_id FROM reconbot.alert_messages WHERE finding_id = $1", finding_id)
    covered = {chat_of(d.address) for d in destinations if d.channel is Channel.TELEGRAM}
    extra = [Destination(Channel.TELEGRAM, str(r["chat_id"])) for r in chats if r["chat_id"] not in covered]
    return [*destinations, *extra]


async def queue_update(conn: asyncpg.Connection, finding_id: int, destinations: Sequence[Destination]) -> None:
    targets = await update_destinations(conn, finding_id, destinations)
    await outbox.enqueue_many(conn, targets, OutboxKind.UPDATE, finding_id=finding_id)
