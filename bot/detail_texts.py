"""A finding's details as the Details button opens them: everything the alert knows, in words a trader reads
(``Liquidation price: 2,900.0, 2.88% from the mark``, never a field name), in an expandable blockquote under
the alert itself, so Details opens in place and rings nobody (Telegram HTML, every dynamic value escaped)."""

from __future__ import annotations

from decimal import Decimal

from bot.finding_texts import severity
from bot.texts import MESSAGE_LIMIT, moment, quote, span
from services.amounts import decimal_text
from services.causes import told_cause
from services.finding_details import CauseShown, FindingDetails
from services.findings import StoredFinding
from services.kinds import KINDS
from services.model import FindingKind
from services.money import USD_LIKE, amount, percent, price, size
from services.protection_text import db_belief_text, order_text, protection_text

Fact = tuple[str, str]  # (label, value as HTML)
MORE = "…"  # a details block cut to fit one message ends with this line


def _money(value: Decimal | None, currency: str | None, *, sign: bool = False) -> str | None:
    return None if value is None else quote(amount(value, currency, sign=sign))


def _price(value: Decimal | None, d: FindingDetails) -> str | None:
    return None if value is None else quote(price(value, d.price_tick))


def _size(value: Decimal | None) -> str | None:
    return None if value is None else quote(size(value))


def _value(d: FindingDetails) -> str | None:
    """The notional, and its USD worth when it is settled in something else."""
    notional = _money(d.notional, d.currency)
    if notional is None or d.exposure_usd is None or (d.currency or "USD") in USD_LIKE:
        return notional
    return f"{notional} (≈ {quote(amount(d.exposure_usd, 'USD'))})"


def _liquidation(d: FindingDetails) -> str | None:
    at = _price(d.liquidation_price, d)
    if at is None or d.liquidation_distance_pct is None:
        return at
    return f"{at}, {quote(percent(d.liquidation_distance_pct))} from the mark"


def _cause_facts(finding: StoredFinding, cause: CauseShown) -> list[tuple[str, str | None]]:
    """Why the position (or part of it) closed, as the venue's history tells it: the cause, its realized PnL,
    the exit price and time, how much it closed and the venue's order."""
    label = "Cause" if finding.kind is FindingKind.GHOST else "Cause of the cut"
    what = cause.kind.label if cause.note is None else f"{cause.kind.label}: {cause.note}"
    d = finding.details
    return [
        (label, quote(what)),
        ("Realized PnL", _money(cause.realized_pnl, cause.currency or d.currency, sign=True)),
        ("Exit price", _price(cause.exit_price, d)),
        ("Closed", moment(cause.closed_at) if cause.closed_at else None),
        ("Size closed", _size(cause.closed_quantity)),
        ("Venue order", quote(cause.order_id) if cause.order_id else None),
    ]


def details_facts(finding: StoredFinding) -> list[Fact]:
    """Every value the finding holds, labelled for a trader; what is unknown is left out."""
    d = finding.details
    kind = KINDS[finding.kind]
    facts: list[tuple[str, str | None]] = [
        ("Finding", f"#{finding.id}, {quote(kind.chat_noun)}, {quote(finding.state)}, {quote(severity(finding))}"),
        ("Exchange size", _size(d.exchange_quantity)),
        ("DB size", _size(d.db_quantity)),
        ("Difference", quote(decimal_text(d.difference)) if d.difference is not None else None),
        ("Value", _value(d)),
        ("DB value", _money(d.db_value, d.currency)),
        ("Entry price", _price(d.entry_price, d)),
        ("Mark price", _price(d.mark_price, d)),
        ("Unrealized PnL", _money(d.unrealized_pnl, d.currency, sign=True)),
        ("Leverage", f"{quote(decimal_text(d.leverage))}x" if d.leverage else None),
        ("Margin", _money(d.margin, d.currency)),
        ("Liquidation price", _liquidation(d)),
        ("Stop-loss", quote(protection_text(d)) if d.protection is not None else None),
        ("The trading bot's DB", quote(db_belief_text(d)) if db_belief_text(d) else None),
        ("Category", quote(d.category) if d.category else None),
        ("Hedge mode", "yes, one leg of two" if d.hedged else None),
        ("Open on the venue since", moment(d.venue_opened_at) if d.venue_opened_at else None),
    ]
    cause = d.cause
    if cause is not None and (told_cause(finding.kind, cause.kind) is not None or cause.note is not None):
        facts += _cause_facts(finding, cause)
    facts += [("Order", quote(order_text(order))) for order in d.orders]
    for row in d.db_rows:
        listed = "" if row.listed else " (symbol not listed on the venue)"
        opened = f", opened {moment(row.opened_at)}" if row.opened_at else ""
        held = f"{quote(row.symbol)} size {quote(size(row.quantity))}"
        facts.append((f"DB row #{quote(row.id)}", f"{held}{opened}{listed}"))
    facts.append(("Seen", f"for {span(finding.last_seen - finding.first_seen)}, last {moment(finding.last_seen)}"))
    return [(label, value) for label, value in facts if value]


def _units(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts a message."""
    return len(text.encode("utf-16-le")) // 2


def with_details(alert: str, finding: StoredFinding, limit: int = MESSAGE_LIMIT) -> str:
    """The alert with its details in an expandable blockquote below it; details that would not fit one message
    are cut at a line, ending with ``…``. The markup is at least as long as the text Telegram counts, so a
    result within ``limit`` is always accepted."""
    lines = [f"{label}: {value}" for label, value in details_facts(finding)]
    for keep in range(len(lines), 0, -1):
        shown = lines if keep == len(lines) else [*lines[:keep], MORE]
        text = f"{alert}\n<blockquote expandable>{chr(10).join(shown)}</blockquote>"
        if _units(text) <= limit:
            return text
    return alert
