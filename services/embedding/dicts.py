"""Findings as the dicts the seed's classes returned and passed to ``alert_callback``: its keys, its type names
(``missing_on_exchange``, ``quantity_mismatch``) and numbers that compare equal to its floats, each also
carrying the exact decimal reconbot read (``.exact``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from services.causes import CloseCause
from services.model import ExchangePosition, Finding, FindingKind
from services.protection import Protection

SEED_TYPES = {
    FindingKind.ORPHAN: "orphaned_position",
    FindingKind.GHOST: "missing_on_exchange",
    FindingKind.QUANTITY_MISMATCH: "quantity_mismatch",
    FindingKind.UNKNOWN_SYMBOL: "unknown_symbol",
    FindingKind.UNPROTECTED: "unprotected_position",
    FindingKind.STRAY_ORDER: "stray_order",
}


class SeedNumber(float):
    """A float, as the seed returned it, that keeps the exact decimal it came from."""

    exact: Decimal

    def __new__(cls, value: Decimal) -> SeedNumber:
        number = super().__new__(cls, value)
        number.exact = value
        return number


def number(value: Decimal | None) -> SeedNumber | None:
    return None if value is None else SeedNumber(value)


def finding_dict(finding: Finding, detected_at: datetime) -> dict[str, Any]:
    """One finding with the seed's keys for its kind, plus reconbot's (account, side, stop-loss, ids)."""
    position = finding.exchange_position
    rows = finding.db_positions
    details: dict[str, Any] = {
        "type": SEED_TYPES[finding.kind],
        "kind": finding.kind.value,
        "account": finding.key.account,
        "exchange": finding.key.account,
        "venue": finding.exchange,
        "symbol": finding.key.market,
        "side": finding.key.side.value,
        "contracts": number(finding.exchange_quantity),
        "exchange_quantity": number(finding.exchange_quantity),
        "db_quantity": number(finding.db_quantity),
        "difference": number(finding.difference),
        "db_position_id": _id(rows[0].id) if rows else None,
        "db_position_ids": [_id(row.id) for row in rows],
        "detected_at": detected_at,
    }
    if position is not None:
        details.update(
            raw_symbol=position.symbol,
            entry_price=number(position.entry_price),
            mark_price=number(position.mark_price),
            unrealized_pnl=number(position.unrealized_pnl),
            leverage=number(position.leverage),
            **_protection(position),
        )
    elif rows:
        details["entry_price"] = number(rows[0].entry_price)
    if finding.kind in (FindingKind.GHOST, FindingKind.QUANTITY_MISMATCH):
        details["cause"] = _cause(finding.cause) if finding.cause else None
    if finding.kind is FindingKind.GHOST:
        details["db_position"] = {
            "id": _id(rows[0].id),
            "symbol": rows[0].symbol,
            "quantity": number(rows[0].quantity),
            "side": rows[0].side.value,
        }
        details["exchange_position"] = None
    return details


def _protection(position: ExchangePosition) -> dict[str, Any]:
    """The stop as reconbot's alerts state it: ``has_stop_loss`` is None when the orders could not be read."""
    state = position.protection
    if state is None or not state.known:
        has_stop = True if position.stop_loss is not None else None
    else:
        has_stop = state.level in (Protection.STOP, Protection.PARTIAL)
    return {
        "stop_loss": number(position.stop_loss),
        "has_stop_loss": has_stop,
        "protection": str(state.level) if state else None,
    }


def _cause(cause: CloseCause) -> dict[str, Any]:
    """Why the position closed, numbers as the seed's dicts give them."""
    return {
        "kind": str(cause.kind),
        "closed_at": cause.closed_at,
        "exit_price": number(cause.exit_price),
        "realized_pnl": number(cause.realized_pnl),
        "currency": cause.currency,
        "order_id": cause.order_id,
        "note": cause.note,
    }


def _id(value: str) -> Any:
    """Ids as the bot's repository gave them (integers stay integers)."""
    return int(value) if value.isdigit() else value
