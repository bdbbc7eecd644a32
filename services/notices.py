"""Notices: what reconbot tells about an account or itself rather than about one finding. Stored in the outbox
as structured data; each channel words them (``plain_text`` for the console and e-mail, ``bot.texts`` for
Telegram)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.model import FailedSide


class NoticeKind(StrEnum):
    UNREACHABLE = "unreachable"  # an account could not be read for several checks in a row
    REACHABLE = "reachable"  # and now it can
    AUTO_FIX_LIMIT = "auto_fix_limit"  # more ghosts at once than auto-fix may close
    STREAM_DOWN = "stream_down"  # an account's live stream has been down for scan.stream_grace_s
    STREAM_UP = "stream_up"  # and now it is back
    STARTED = "started"  # run started: the accounts it watches
    STOPPED = "stopped"  # run stopped gracefully (count: other replicas still watching)
    STALLED = "stalled"  # held accounts went scan.stall_after_s without a check: nobody is watching them
    RESUMED = "resumed"  # and now they are checked again
    TEXT = "text"  # free text (notices queued by an earlier version)


LOUD_NOTICES = frozenset({NoticeKind.STALLED})  # the rest arrive silently


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    account: str | None = None
    since: datetime | None = None
    failures: int | None = None
    error: str | None = None
    count: int | None = None
    limit: int | None = None
    text: str | None = None
    interval_s: float | None = None  # how often the account is polled meanwhile
    failed: FailedSide | None = None  # the side an unchecked account's error is about (None: the venue)
    accounts: tuple[str, ...] | None = None  # the accounts a presence notice is about
    replica: str | None = None  # the replica it is about, when several share the accounts
    quiet_s: float | None = None  # how long the accounts have gone without a check

    @property
    def loud(self) -> bool:
        """Nobody watching the accounts rings; everything else reconbot says about itself is quiet."""
        return self.kind in LOUD_NOTICES

    def to_body(self) -> dict[str, Any]:
        body = {key: value for key, value in asdict(self).items() if value is not None}
        body["kind"] = str(self.kind)
        if self.since is not None:
            body["since"] = self.since.isoformat()
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Notice:
        """A queued notice; one without a known kind is kept as text, so nothing queued is lost."""
        try:
            kind = NoticeKind(body.get("kind"))
        except ValueError:
            return cls(NoticeKind.TEXT, text=str(body.get("text", "")))
        since = body.get("since")
        return cls(
            kind=kind,
            account=body.get("account"),
            since=datetime.fromisoformat(since) if isinstance(since, str) else None,
            failures=body.get("failures"),
            error=body.get("error"),
            count=body.get("count"),
            limit=body.get("limit"),
            text=body.get("text"),
            interval_s=body.get("interval_s"),
            failed=FailedSide(body["failed"]) if body.get("failed") in set(FailedSide) else None,
            accounts=tuple(str(a) for a in body["accounts"]) if isinstance(body.get("accounts"), list) else None,
            replica=body.get("replica"),
            quiet_s=body.get("quiet_s"),
        )
