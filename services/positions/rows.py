"""A row of the trading bot's table as reconbot reads it: every value parsed on its own, so one row holding
garbage names its problem and spoils only its own account's check instead of the whole query."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from services.model import Side


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A row as stored. ``problem`` names what makes it unreadable (NULL or non-numeric size, no symbol, a side
    value reconbot does not know); such a row makes its account unchecked rather than being guessed at.
    ``side`` is None with ``any_side`` set for a source that keeps no side (then any side matches)."""

    id: str
    exchange: str | None
    account: str | None
    symbol: str | None
    side: Side | None
    quantity: Decimal | None
    entry_price: Decimal | None
    status: str | None
    opened_at: datetime | None
    updated_at: datetime | None
    closed_at: datetime | None
    exit_reason: str | None
    problem: str | None = None
    side_text: str | None = field(default=None, compare=False)
    quantity_raw: Any = field(default=None, compare=False)
    stop_loss: Decimal | None = field(default=None, compare=False)
    has_stop_loss: bool | None = field(default=None, compare=False)
    any_side: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit trail."""
        return {
            "id": self.id,
            "exchange": self.exchange,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value if self.side else self.side_text,
            "quantity": None if self.quantity is None else str(self.quantity),
            "entry_price": None if self.entry_price is None else str(self.entry_price),
            "status": self.status,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "exit_reason": self.exit_reason,
        }


def parse_decimal(value: Any) -> tuple[Decimal | None, str | None]:
    """A finite decimal from a column's value (text, float or int), or None and why not."""
    if value is None:
        return None, "is NULL"
    if isinstance(value, bool):
        return None, f"{value!r} is not a number"
    text = repr(value) if isinstance(value, float) else str(value)
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None, f"{text[:40]!r} is not a number"
    if not number.is_finite():
        return None, f"{text[:40]!r} is not a finite number"
    return number, None


def parse_moment(value: Any, zone: tzinfo = UTC) -> tuple[datetime | None, str | None]:
    """A timestamp from a typed column or from text (ISO 8601); one without a zone is in ``zone``."""
    if value is None or value == "":
        return None, None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None, f"{str(value)[:40]!r} is not a time"
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC), None


def parse_flag(value: Any) -> bool | None:
    """A boolean column's value, whatever the backend hands over (True, 1, 'true', 't')."""
    if value is None:
        return None
    if isinstance(value, bool | int):
        return bool(value)
    return str(value).strip().lower() in ("true", "t", "1", "yes")
