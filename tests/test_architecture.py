"""The seams a newcomer relies on: every reason a fix gives has words, every finding kind has labels and
buttons, every button a handler accepts is one a keyboard shows, and the layers import one way."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bot.keyboards import KIND_BUTTONS, LABELS, buttons_for
from services.confirmations import Claim, ClaimRefused
from services.fixes import Reason, Why
from services.kinds import KINDS
from services.model import FindingKind, Side
from services.outcome_text import reason_text
from services.plans import FixAction

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_VALUES = {
    "row": "17",
    "rows": ("17", "18"),
    "status": "closed",
    "exchange": "kraken",
    "problem": "quantity 'abc' is not a number",
    "note": "note",
    "grace": 60.0,
    "target": "position #17",
    "account": "binance-main",
    "market": "BTCUSDT",
    "side": Side.LONG,
    "quantity": Decimal("1.50"),
    "error": "rate limited",
    "where": "binance-main BTCUSDT LONG",
    "what": "DB size",
    "now": Decimal("1.5"),
    "approved": Decimal("1"),
    "size": Decimal("2"),
    "kind": "orphan",
    "remedy": "remedy",
    "state": "closed",
    "read": Reason.of(Why.RE_READ, error="timeout", where="w", state="closed"),
    "remaining": Decimal("1.5"),
    "order_id": "42",
    "before": Decimal("1"),
    "after": Decimal("2"),
    "orders": ("123", "456"),
    "order": "789",
    "cancelled": ("123",),
    "by": "@op (111)",
    "action": FixAction.CLOSE_ORPHAN,
}


@pytest.mark.parametrize("why", list(Why))
def test_every_reason_has_words(why: Why) -> None:
    text = reason_text(Reason(why, SAMPLE_VALUES))
    assert text and "{" not in text, text
    assert "1.50" not in text and "long" not in text.replace("no longer", ""), "sizes plain, sides upper-case"


def test_reasons_render_exact_values() -> None:
    closed = Reason.of(Why.CLOSED, rows=("17", "18"), market="BTCUSDT", side=Side.SHORT, quantity=Decimal("3.000"))
    assert str(closed) == "positions #17, #18 BTCUSDT SHORT 3 marked closed"
    changed = Reason.of(Why.CHANGED, what="exchange", now=Decimal("7"), approved=Decimal("5.0"))
    assert str(changed) == "changed since you were asked: exchange now 7, you approved 5; nothing changed — ask again"


def test_every_kind_has_labels_and_buttons() -> None:
    assert set(KINDS) == set(FindingKind)
    assert set(KIND_BUTTONS) == set(FindingKind)
    for kind in FindingKind:
        for button in buttons_for(kind, exchange_orders=True):
            assert button in LABELS


def test_every_button_a_keyboard_shows_has_a_handler() -> None:
    from handlers import alerts

    handled = alerts.LOOKING | alerts.QUIETING | set(alerts.FIX_BUTTONS)
    shown = {
        b
        for kind in FindingKind
        for acknowledged in (False, True)
        for b in buttons_for(kind, exchange_orders=True, acknowledged=acknowledged)
    }
    assert shown <= handled, shown - handled


def test_every_claim_refusal_has_words() -> None:
    from bot.answers import claim_refused

    for refused in ClaimRefused:
        assert "{" not in claim_refused(Claim(None, refused, "confirmed"))


def test_the_layers_import_one_way() -> None:
    """The import contracts in pyproject.toml hold (run here too, so a plain ``pytest`` catches a wrong import)."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
