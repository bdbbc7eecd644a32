"""Check results as a person reads them, as JSON, and as a monitoring-plugin exit code."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from services.amounts import decimal_text
from services.cause_text import cause_subject, explain
from services.causes import CloseCause
from services.finding_details import FindingDetails
from services.kinds import KINDS, SYMBOL_MAPPING_HINT, count_text, unknown_symbol_text
from services.model import CheckResult, Finding, FindingKind
from services.money import amount, distance_pct, price
from services.plans import AdoptOrphan, CancelOrders, CloseGhost, CloseOrphan, FixPlan, OrderSeen
from services.protection import short_order_id
from services.protection_text import (
    PURPOSE_WORDS,
    adoption_text,
    db_belief_text,
    order_text,
    orders_label,
    protection_text,
)
from services.text_safety import escape_controls, escape_lines

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_ORPHAN = 2
EXIT_UNKNOWN = 3


def exit_code(result: CheckResult) -> int:
    """Nagios/Icinga convention: an orphan is critical (2) and wins; an unchecked account is unknown (3)."""
    if result.of_kind(FindingKind.ORPHAN):
        return EXIT_ORPHAN
    if result.unchecked:
        return EXIT_UNKNOWN
    if result.findings:
        return EXIT_DRIFT
    return EXIT_OK


def finding_dict(finding: Finding) -> dict[str, Any]:
    position = finding.exchange_position
    ids = finding.db_position_ids
    data = {
        "kind": finding.kind.value,
        "account": finding.key.account,
        "exchange": finding.exchange,
        "symbol": finding.key.market,
        "side": finding.key.side.value,
        "exchange_quantity": decimal_text(finding.exchange_quantity),
        "db_quantity": decimal_text(finding.db_quantity),
        "db_position_id": ids[0] if ids else None,
        "db_position_ids": list(ids),
        "entry_price": decimal_text(_entry_price(finding)),
        "mark_price": decimal_text(position.mark_price if position else None),
        "unrealized_pnl": decimal_text(position.unrealized_pnl if position else None),
        "leverage": decimal_text(position.leverage if position else None),
        "stop_loss": decimal_text(position.stop_loss if position else None),
        "protection": str(position.protection.level) if position and position.protection else None,
    }
    if position is not None and position.protection is not None:
        state = position.protection
        data["protected_quantity"] = decimal_text(state.covered)
        data["stop_distance_pct"] = decimal_text(distance_pct(state.stop_price, position.mark_price))
        if state.reason:
            data["protection_note"] = state.reason
    if finding.kind in (FindingKind.GHOST, FindingKind.QUANTITY_MISMATCH):
        data["cause"] = cause_dict(finding.cause) if finding.cause else None
    if finding.orders:
        data["orders"] = [
            {
                "order_id": o.order_id,
                "purpose": str(o.purpose),
                "trigger_price": decimal_text(o.trigger_price),
                "quantity": decimal_text(o.quantity),
                "whole_position": o.whole_position,
                "source": o.source,
            }
            for o in finding.orders
        ]
    if finding.kind is FindingKind.UNKNOWN_SYMBOL:
        data["note"] = unknown_symbol_text(ids, finding.key.market, finding.exchange)
    return data


def cause_dict(cause: CloseCause) -> dict[str, Any]:
    """A close cause in JSON: exact decimals as text, the time in ISO 8601 (UTC)."""
    data: dict[str, Any] = {
        "kind": str(cause.kind),
        "closed_at": cause.closed_at.isoformat() if cause.closed_at else None,
        "exit_price": decimal_text(cause.exit_price),
        "realized_pnl": decimal_text(cause.realized_pnl),
        "currency": cause.currency,
        "order_id": cause.order_id,
    }
    if cause.note:
        data["note"] = cause.note
    return data


def _entry_price(finding: Finding) -> Decimal | None:
    if finding.exchange_position and finding.exchange_position.entry_price is not None:
        return finding.exchange_position.entry_price
    prices = [p.entry_price for p in finding.db_positions if p.entry_price is not None]
    return prices[0] if prices else None


def result_dict(result: CheckResult) -> dict[str, Any]:
    return {
        "accounts": [
            {"account": a.account, "exchange": a.exchange, "status": a.status, "error": a.error}
            | ({"orders_error": a.orders_error} if a.orders_error else {})
            | ({"failed": str(a.failed)} if a.failed else {})
            for a in result.accounts
        ],
        "findings": [finding_dict(f) for f in result.findings],
        "pending": [{"account": k.account, "symbol": k.market, "side": k.side.value} for k in result.pending],
        "budget": list(result.budget_notes),
    }


def render_json(result: CheckResult) -> str:
    return json.dumps(result_dict(result), indent=2)


def render_finding(finding: Finding) -> list[str]:
    data = finding_dict(finding)
    position = finding.exchange_position
    side = orders_label(finding.orders) if finding.kind is FindingKind.STRAY_ORDER else finding.key.side.upper()
    title = f"{KINDS[finding.kind].title}  {finding.key.market} {side}"
    lines = [f"{title}  on {finding.key.account} ({finding.exchange})"]
    details = FindingDetails.of(finding)
    if finding.kind is FindingKind.STRAY_ORDER:
        rows: list[tuple[str, str | None]] = [("position", "none on the exchange: nothing for these orders to close")]
        rows += [("order", order_text(order)) for order in details.orders]
        return lines + [f"  {label:<15} {value}" for label, value in rows]
    rows = [
        ("exchange size", data["exchange_quantity"] or "none (not on the exchange)"),
        ("DB size", data["db_quantity"] or "none (no active row)"),
    ]
    if finding.kind is FindingKind.QUANTITY_MISMATCH:
        rows.append(("difference", decimal_text(finding.difference)))
    rows += [
        ("entry price", data["entry_price"]),
        ("mark price", data["mark_price"]),
        ("unrealized PnL", data["unrealized_pnl"]),
        ("leverage", f"{data['leverage']}x" if data["leverage"] else None),
    ]
    if position is not None:
        rows.append(("stop-loss", protection_text(details)))
        belief = db_belief_text(details)
        if belief:
            rows.append(("DB belief", belief))
    if details.cause is not None:
        subject = cause_subject(finding.key.market, finding.key.side, finding.db_position_ids)
        sentence = explain(finding.kind is FindingKind.GHOST, details.cause, subject)
        if sentence:
            rows.append(("cause", sentence))
    if finding.db_positions:
        rows.append(("DB id", ", ".join(f"#{pid}" for pid in finding.db_position_ids)))
        opened = [p.opened_at for p in finding.db_positions if p.opened_at]
        if opened:
            rows.append(("in DB since", min(opened).strftime("%Y-%m-%d %H:%M:%S UTC")))
        if finding.kind is FindingKind.UNKNOWN_SYMBOL:
            rows.append(("note", data["note"]))
            rows.append(("to fix", SYMBOL_MAPPING_HINT))
    lines += [f"  {label:<15} {value if value is not None else 'unknown'}" for label, value in rows]
    return lines


def render_text(result: CheckResult, title: str) -> str:
    counts = {kind: len(result.of_kind(kind)) for kind in FindingKind if kind in result.kinds}
    summary = ", ".join(count_text(k, n) for k, n in counts.items())
    lines = [f"{title}: {len(result.accounts)} account(s), {len(result.unchecked)} unchecked; {summary}"]
    lines.append("")
    width = max((len(a.account) for a in result.accounts), default=0)
    for account in result.accounts:
        state = f"ok, {account.positions} open position(s)" if account.checked else f"UNCHECKED: {account.error}"
        if account.checked and account.orders_error:
            state += f"; stop orders not read ({account.orders_error}): protection unknown"
        lines.append(f"  {account.account:<{width}}  {account.exchange:<11}  {state}")
    for finding in result.findings:
        lines.append("")
        lines += render_finding(finding)
    if result.pending:
        lines.append("")
        lines.append("Pending (inside the grace window, checked again next round):")
        lines += [f"  {key}" for key in result.pending]
    if result.budget_notes:
        lines.append("")
        lines += [f"Budget: {note}" for note in result.budget_notes]
    lines.append("")
    if not result.findings and not result.unchecked:
        lines.append("All clear.")
    elif result.unchecked:
        lines.append("Unchecked accounts were not compared: no finding is reported for them until they can be read.")
    return escape_lines(lines)


def _order_seen_text(order: OrderSeen) -> str:
    size = "the whole position" if order.quantity is None else decimal_text(order.quantity)
    trigger = f" at {decimal_text(order.trigger_price)}" if order.trigger_price is not None else ""
    return f"{PURPOSE_WORDS[order.purpose]}{trigger} for {size} (#{short_order_id(order.order_id)})"


def fix_question(plan: FixPlan) -> str:
    """What a confirmation will do, with the exact values it will apply (the terminal and Telegram ask alike)."""
    return escape_controls(_question(plan))


def _question(plan: FixPlan) -> str:
    if isinstance(plan, CloseGhost):
        listing = ", ".join(f"#{pid}" for pid in plan.position_ids)
        noun = "position" if len(plan.rows) == 1 else "positions"
        how = ""
        if plan.cause is not None:
            exit_at = f", exit {price(plan.cause.exit_price)}" if plan.cause.exit_price is not None else ""
            how = f" ({plan.cause.kind.label} on the exchange{exit_at}: written to the DB)"
        return f"Mark {noun} {listing} {plan.market} {plan.side.upper()} {decimal_text(plan.quantity)} as closed{how}?"
    if isinstance(plan, AdoptOrphan):
        worth = f", {amount(plan.shown.notional, plan.shown.currency)}" if plan.shown.notional is not None else ""
        protection = adoption_text(plan.shown, plan.quantity)
        question = (
            f"Adopt {plan.where} ({decimal_text(plan.quantity)} contracts{worth}) into the DB as an active position?"
        )
        return f"{question} {protection}" if protection else question
    if isinstance(plan, CloseOrphan):
        worth = f", {amount(plan.shown.notional, plan.shown.currency)}" if plan.shown.notional is not None else ""
        pnl = plan.shown.unrealized_pnl
        realize = (
            f" It would realize about {amount(pnl, plan.shown.currency, sign=True)} (the unrealized PnL shown)."
            if pnl is not None
            else ""
        )
        return (
            f"Close {plan.where} ({decimal_text(plan.quantity)} contracts{worth}) on the exchange with a reduce-only "
            f"market order?{realize}"
        )
    if isinstance(plan, CancelOrders):
        listing = "; ".join(_order_seen_text(o) for o in plan.orders)
        noun = "this order" if len(plan.orders) == 1 else f"these {len(plan.orders)} orders"
        return f"Cancel {noun} on {plan.where}, which has no position to close: {listing}?"
    return (
        f"Set position #{plan.row.id} {plan.market} {plan.side.upper()} size from {decimal_text(plan.row.quantity)} "
        f"to {decimal_text(plan.exchange_quantity)} (the exchange's)?"
    )
