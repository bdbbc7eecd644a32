"""Why a position closed, in one sentence for every channel: "BTCUSDT LONG #123 was liquidated at 14:03 UTC at
61,210.5, realized −412.30 USDT". A channel with markup passes ``escape`` (applied to every word and figure)
and ``at`` (how it writes the moment: Telegram's reader-local date-time entity)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from services.causes import CloseKind
from services.finding_details import CauseShown
from services.money import amount, price, size

CLOSED_BY = {
    CloseKind.LIQUIDATION: "was liquidated",
    CloseKind.ADL: "was auto-deleveraged (ADL)",
    CloseKind.STOP_LOSS: "was closed by its stop-loss",
    CloseKind.TAKE_PROFIT: "was closed by its take-profit",
    CloseKind.MANUAL_OR_OTHER: "was closed by an order (by hand or by another bot)",
    CloseKind.SETTLEMENT: "was settled (delivery or delisting)",
}
REDUCED_BY = {CloseKind.LIQUIDATION: "a liquidation", CloseKind.ADL: "auto-deleveraging (ADL)"}


Render = Callable[[str], str]
Moment = Callable[[datetime], str]


def _same(text: str) -> str:
    return text


def _moment(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    same_day = moment.astimezone(UTC).date() == now.astimezone(UTC).date()
    return moment.astimezone(UTC).strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def _tail(cause: CauseShown, tick: Decimal | None, now: datetime | None, at: Moment | None, escape: Render) -> str:
    text = ""
    if cause.closed_at is not None:
        text += " at " + (at(cause.closed_at) if at else escape(_moment(cause.closed_at, now)))
    if cause.exit_price is not None:
        text += escape(f" at {price(cause.exit_price, tick)}")
    if cause.realized_pnl is not None:
        text += escape(f", realized {amount(cause.realized_pnl, cause.currency, sign=True)}")
    return text


def cause_subject(market: str, side: str, row_ids: tuple[str, ...] | list[str]) -> str:
    """``BTCUSDT LONG #123`` (or ``#123, #124``)."""
    return f"{market} {side.upper()} " + ", ".join(f"#{i}" for i in row_ids)


def explain(
    kind_is_ghost: bool,
    cause: CauseShown,
    subject: str,
    tick: Decimal | None = None,
    *,
    at: Moment | None = None,
    escape: Render = _same,
) -> str | None:
    """The sentence a finding shows for its cause: a ghost's whole story, a shrunk size's only when the venue's
    risk engine did it."""
    if kind_is_ghost:
        return cause_sentence(cause, subject, tick, at=at, escape=escape)
    return reduction_sentence(cause, tick, at=at, escape=escape)


def cause_sentence(
    cause: CauseShown,
    subject: str,
    tick: Decimal | None = None,
    now: datetime | None = None,
    *,
    at: Moment | None = None,
    escape: Render = _same,
) -> str:
    """A ghost's cause, with ``subject`` naming the position (``BTCUSDT LONG #123``)."""
    if cause.kind is CloseKind.UNKNOWN:
        return escape(f"Why {subject} closed is unknown: {cause.note or 'the venue gave no reason'}")
    return escape(f"{subject} {CLOSED_BY[cause.kind]}") + _tail(cause, tick, now, at, escape)


def reduction_sentence(
    cause: CauseShown,
    tick: Decimal | None = None,
    now: datetime | None = None,
    *,
    at: Moment | None = None,
    escape: Render = _same,
) -> str | None:
    """A size that shrank because the venue's risk engine closed part of it; None for any other cause."""
    if cause.kind not in REDUCED_BY:
        return None
    closed = f" ({size(cause.closed_quantity)} closed)" if cause.closed_quantity is not None else ""
    return escape(f"Reduced by {REDUCED_BY[cause.kind]}{closed}") + _tail(cause, tick, now, at, escape)
