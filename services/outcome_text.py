"""A fix's reason in words, for the terminal and the audit trail: one template per ``Why``, filled from the
reason's values (sizes as exact decimals, sides in capitals, position ids as ``#17``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from services.causes import CloseKind
from services.model import Side
from services.report import decimal_text
from services.text_safety import escape_controls

if TYPE_CHECKING:
    from services.fixes.outcomes import Reason


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(f"#{pid}" for pid in ids)


def _value(value: Any) -> str:
    """One value as a person reads it: decimals without exponent or trailing zeros, sides upper-case."""
    if value is None:
        return "none"
    if isinstance(value, Decimal):
        return decimal_text(value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Side):
        return value.upper()
    return str(value)


def _closed(v: Mapping[str, str], raw: Mapping[str, Any]) -> str:
    noun = "position" if len(raw["rows"]) == 1 else "positions"
    how = raw.get("how")
    if how:
        label = CloseKind(how).label if how in {kind.value for kind in CloseKind} else str(how).replace("_", " ")
        how = f" ({label} on the exchange)"
    return f"{noun} {_ids(raw['rows'])} {v['market']} {v['side']} {v['quantity']} marked closed{how or ''}"


def _many_rows(v: Mapping[str, str], raw: Mapping[str, Any]) -> str:
    return f"{len(raw['rows'])} rows ({_ids(raw['rows']) or 'none'}) track this position; fix their sizes by hand"


def _orders_cancelled(v: Mapping[str, str], raw: Mapping[str, Any]) -> str:
    noun = "order" if len(raw["orders"]) == 1 else "orders"
    return f"{noun} {_ids(raw['orders'])} on {v['where']} cancelled"


def _order_not_cancelled(v: Mapping[str, str], raw: Mapping[str, Any]) -> str:
    done = f"cancelled {_ids(raw['cancelled'])}; " if raw["cancelled"] else ""
    return f"{done}order #{v['order']} on {v['where']} was not cancelled: {v['error']}"


_SEEN = {
    ("close_orphan", True): "{where} closed on the exchange",
    ("close_orphan", False): "{where} still open at {now}",
    ("adopt_orphan", True): "{where} tracked in the DB as position {rows}",
    ("adopt_orphan", False): "{where} still not in the DB",
    ("close_ghost", True): "position {rows} {where} closed in the DB",
    ("close_ghost", False): "position {rows} {where} still active in the DB",
    ("set_db_quantity", True): "position {rows} {where} now of size {now}",
    ("set_db_quantity", False): "position {rows} {where} still of size {now}",
    ("cancel_orders", True): "order {orders} on {where} no longer resting",
    ("cancel_orders", False): "order {orders} on {where} still resting",
}
_REDUCED = "{where} reduced to {now} on the exchange"
_STOPPED = "reconbot stopped mid-fix (confirmed by {by})"


def _interrupted(done: bool) -> Callable[[Mapping[str, str], Mapping[str, Any]], str]:
    """What a re-read found of a fix whose process stopped before it recorded an outcome."""

    def text(v: Mapping[str, str], raw: Mapping[str, Any]) -> str:
        shown = {**v, "rows": _ids(raw.get("rows", ())), "orders": _ids(raw.get("orders", ()))}
        reduced = done and raw["action"] == "close_orphan" and raw.get("now")
        seen = (_REDUCED if reduced else _SEEN[(str(raw["action"]), done)]).format(**shown)
        if done:
            return f"{_STOPPED.format(**v)}; a re-read found it done: {seen}"
        return f"{_STOPPED.format(**v)}; a re-read found it not done: {seen} — ask again if it is still needed"

    return text


_TEMPLATES: dict[str, str | Callable[[Mapping[str, str], Mapping[str, Any]], str]] = {
    "not_found": "position #{row} does not exist",
    "not_active": "position #{row} is not active (status {status})",
    "unwatched": "position #{row} is on {exchange}, which no configured account watches",
    "unreadable": "position #{row} cannot be read: {problem}",
    "unknown_symbol": "{note}",
    "young": "position #{row} was opened less than {grace}s ago; wait for it to fill",
    "open_on_exchange": "{target} is open on {account}: {market} {side} {quantity}",
    "unchecked": "cannot check {account}: {error}",
    "not_configured": "{account} is not a configured account",
    "row_moved": "position #{row} no longer tracks {where}",
    "row_changed": "position #{row} changed meanwhile: {what} now {now}, you approved {approved}; "
    "nothing changed — ask again",
    "changed": "changed since you were asked: {what} now {now}, you approved {approved}; nothing changed — ask again",
    "closed_meanwhile": "position #{row} was closed meanwhile; nothing changed",
    "resized_meanwhile": "position #{row} changed meanwhile (size now {size}); nothing changed",
    "changed_meanwhile": "position #{row} changed meanwhile; nothing changed",
    "no_longer_holds": "the {kind} on {where} no longer holds; nothing to fix",
    "read_only": "{remedy}",
    "orders_not_allowed": "{account} does not allow exchange orders (allow_exchange_orders)",
    "order_refused": "the order was not accepted: {error}",
    "table_refused": "the positions table refused the row: {error}",
    "already_tracked": "{where} is already tracked in the DB",
    "many_rows": _many_rows,
    "interrupted": "reconbot stopped before this fix finished; check the position before asking again",
    "answer_lost": "{error}; re-reading the position to find out whether the order executed",
    "re_read": "{error}; the re-read shows {where} {state}",
    "settled_done": "{target} closed on the exchange ({read})",
    "settled_not_executed": "{error}; the re-read shows {where} still open at {remaining}: not executed",
    "settled_unknown": "{error}; {account} could not be re-read, so whether the order executed is unknown: check it",
    "interrupted_done": _interrupted(True),
    "interrupted_not_done": _interrupted(False),
    "interrupted_unread": _STOPPED + " and it cannot be re-read ({error}): check {where} by hand",
    "closed": _closed,
    "adopted": "{where} {quantity} adopted as position #{row}",
    "order_sent": "{where} {quantity} closed on the exchange (order {order_id})",
    "resized": "position #{row} {market} {side} size {before} → {after}",
    "orders_cancelled": _orders_cancelled,
    "order_not_cancelled": _order_not_cancelled,
}


def reason_text(reason: Reason) -> str:
    """The one line a terminal, a log and the audit trail show for this reason."""
    values = {name: _value(value) for name, value in reason.values.items()}
    template = _TEMPLATES[reason.why.value]
    return escape_controls(template(values, reason.values) if callable(template) else template.format(**values))
