"""Exit codes, decimal rendering and secret redaction of everything printed."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from services.model import AccountStatus, CheckResult, Finding, FindingKind, PositionKey, Side
from services.redaction import RedactingFilter, redact
from services.report import decimal_text, exit_code

OK = AccountStatus("a", "bybit", True)
UNCHECKED = AccountStatus("b", "bybit", False, "rate limited")


def finding(kind: FindingKind) -> Finding:
    return Finding(kind, PositionKey("a", "BTCUSDT", Side.LONG), "bybit")


@pytest.mark.parametrize(
    ("accounts", "kinds", "code"),
    [
        ((OK,), (), 0),
        ((OK,), (FindingKind.GHOST,), 1),
        ((OK,), (FindingKind.QUANTITY_MISMATCH,), 1),
        ((OK,), (FindingKind.ORPHAN, FindingKind.GHOST), 2),
        ((OK, UNCHECKED), (), 3),
        ((OK, UNCHECKED), (FindingKind.GHOST,), 3),
        ((OK, UNCHECKED), (FindingKind.ORPHAN,), 2),
    ],
)
def test_exit_codes_follow_the_monitoring_plugin_convention(accounts, kinds, code):
    result = CheckResult(accounts=accounts, findings=tuple(finding(k) for k in kinds))
    assert exit_code(result) == code


@pytest.mark.parametrize(
    ("value", "text"),
    [("86", "86"), ("86.000", "86"), ("0.0100", "0.01"), ("1E+3", "1000"), ("-0.5", "-0.5"), ("0E-8", "0")],
)
def test_decimals_print_plainly(value, text):
    assert decimal_text(Decimal(value)) == text
    assert decimal_text(None) is None


def test_redact_masks_every_secret_and_longest_first():
    assert redact("key=abcd1234 secret=abcd1234XYZ", ["abcd1234", "abcd1234XYZ"]) == "key=*** secret=***"
    assert redact("short x", ["x"]) == "short x", "one-letter values are not masked (they are not secrets)"


def test_log_lines_and_tracebacks_are_redacted(caplog):
    logger = logging.getLogger("test.redaction")
    handler_filter = RedactingFilter(["sk-live-1234"])
    caplog.handler.addFilter(handler_filter)
    try:
        logger.warning("using %s", "sk-live-1234")
        try:
            raise RuntimeError("auth with sk-live-1234 failed")
        except RuntimeError:
            logger.exception("boom")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert "sk-live-1234" not in caplog.text
    assert "using ***" in caplog.text
    assert "auth with *** failed" in caplog.text
