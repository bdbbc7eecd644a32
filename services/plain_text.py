"""Findings as plain text, for the console and e-mail (Telegram has its own HTML in bot/texts.py)."""

from __future__ import annotations

from typing import Any

from services.findings import StoredFinding
from services.kinds import KINDS, SYMBOL_MAPPING_HINT
from services.model import FindingKind


def _value(details: dict[str, Any], key: str) -> str:
    value = details.get(key)
    return "unknown" if value in (None, "") else str(value)


def subject(finding: StoredFinding, prefix: str = "") -> str:
    head = f"{prefix} " if prefix else ""
    return f"[reconbot] {head}{KINDS[finding.kind].short} {finding.market} {finding.side.upper()} on {finding.account}"


def finding_text(finding: StoredFinding) -> str:
    d = finding.details
    names = KINDS[finding.kind]
    where = f"{finding.market} {finding.side.upper()} on {finding.account} ({finding.exchange})"
    lines = [f"{names.title}: {names.headline}", where]
    if finding.kind is FindingKind.ORPHAN:
        lines += [
            f"contracts: {_value(d, 'exchange_quantity')}",
            f"entry: {_value(d, 'entry_price')}  mark: {_value(d, 'mark_price')}",
            f"unrealized PnL: {_value(d, 'unrealized_pnl')}  leverage: {_value(d, 'leverage')}",
            f"stop-loss: {d['stop_loss']}" if d.get("stop_loss") else "NO STOP LOSS",
        ]
    elif finding.kind is FindingKind.GHOST:
        ids = ", ".join(f"#{i}" for i in d.get("db_position_ids") or [])
        lines.append(f"DB position {ids}, size {_value(d, 'db_quantity')}; nothing on the exchange")
    elif finding.kind is FindingKind.UNKNOWN_SYMBOL:
        lines += [_value(d, "note"), f"to fix: {SYMBOL_MAPPING_HINT}"]
    else:
        ids = ", ".join(f"#{i}" for i in d.get("db_position_ids") or [])
        lines += [
            f"exchange size: {_value(d, 'exchange_quantity')}  DB size: {_value(d, 'db_quantity')} ({ids})",
            f"difference: {_value(d, 'difference')}",
        ]
    lines.append(f"finding #{finding.id}, first seen {finding.first_seen:%Y-%m-%d %H:%M UTC}")
    if finding.state in ("resolved", "fixed"):
        by = f" by {finding.closed_by}" if finding.state == "fixed" and finding.closed_by else ""
        lines.append(f"{finding.state.upper()}{by} at {finding.closed_at:%Y-%m-%d %H:%M UTC}: {finding.resolution}")
    elif finding.state == "snoozed" and finding.snoozed_until:
        lines.append(f"snoozed by {finding.closed_by} until {finding.snoozed_until:%Y-%m-%d %H:%M UTC}")
    elif finding.state == "acknowledged":
        lines.append(f"acknowledged by {finding.closed_by}")
    return "\n".join(lines)
