"""What a fix did, as data: a status and a reason (a code and its values). The words live with the
presentations (``services.report`` for the terminal and the audit trail, ``bot.texts`` for Telegram)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.plans import FixAction


class FixStatus(StrEnum):
    DONE = "done"
    REFUSED = "refused"
    UNKNOWN = "unknown"
    INTERRUPTED = "interrupted"


class Why(StrEnum):
    """Every reason a fix gives, done or not."""

    # refused before anything changed
    NOT_FOUND = "not_found"
    NOT_ACTIVE = "not_active"
    UNWATCHED = "unwatched"
    UNREADABLE = "unreadable"
    UNKNOWN_SYMBOL = "unknown_symbol"
    YOUNG = "young"
    OPEN_ON_EXCHANGE = "open_on_exchange"
    UNCHECKED = "unchecked"
    NOT_CONFIGURED = "not_configured"
    ROW_MOVED = "row_moved"
    CHANGED = "changed"
    ROW_CHANGED = "row_changed"
    CLOSED_MEANWHILE = "closed_meanwhile"
    RESIZED_MEANWHILE = "resized_meanwhile"
    CHANGED_MEANWHILE = "changed_meanwhile"
    NO_LONGER_HOLDS = "no_longer_holds"
    READ_ONLY = "read_only"
    ORDERS_NOT_ALLOWED = "orders_not_allowed"
    ORDER_REFUSED = "order_refused"
    TABLE_REFUSED = "table_refused"
    ALREADY_TRACKED = "already_tracked"
    MANY_ROWS = "many_rows"
    ORDER_NOT_CANCELLED = "order_not_cancelled"
    INTERRUPTED = "interrupted"
    # an order whose answer was lost
    ANSWER_LOST = "answer_lost"
    RE_READ = "re_read"
    SETTLED_DONE = "settled_done"
    SETTLED_NOT_EXECUTED = "settled_not_executed"
    SETTLED_UNKNOWN = "settled_unknown"
    # a confirmed fix whose process stopped mid-fix, settled by a re-read
    INTERRUPTED_DONE = "interrupted_done"
    INTERRUPTED_NOT_DONE = "interrupted_not_done"
    INTERRUPTED_UNREAD = "interrupted_unread"
    # done
    CLOSED = "closed"
    ADOPTED = "adopted"
    ORDER_SENT = "order_sent"
    RESIZED = "resized"
    ORDERS_CANCELLED = "orders_cancelled"


@dataclass(frozen=True, slots=True)
class Reason:
    why: Why
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, why: Why, **values: Any) -> Reason:
        return cls(why, values)

    def __str__(self) -> str:
        from services.outcome_text import reason_text

        return reason_text(self)


@dataclass(frozen=True, slots=True)
class FixOutcome:
    """What a fix did, or why it did nothing."""

    action: FixAction
    target: str
    status: FixStatus
    reason: Reason
    position_ids: tuple[str, ...] = ()
    before: Any = None
    after: Any = None

    @property
    def done(self) -> bool:
        return self.status is FixStatus.DONE

    @property
    def message(self) -> str:
        """The reason in the terminal's words (one line)."""
        return str(self.reason)


class Refused(Exception):
    """Raised inside a fix to stop it with a reason; becomes an audited refusal."""

    def __init__(self, reason: Reason, before: Any = None):
        super().__init__(str(reason.why))
        self.reason = reason
        self.before = before


def refuse(why: Why, before: Any = None, **values: Any) -> Refused:
    return Refused(Reason(why, values), before)
