"""The detector is pure: these tests feed it position sets and check the findings, including properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector import DetectionRules, detect, quantities_differ
from services.model import (
    ALL_KINDS,
    RECONCILIATION,
    SCAN_KINDS,
    DbPosition,
    ExchangePosition,
    FindingKind,
    PositionKey,
    Side,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=2)
RULES = DetectionRules(grace=timedelta(seconds=60), quantity_tolerance=Decimal("0.001"))


def ex(market: str, side: Side, qty: str, *, account: str = "acct", step: str | None = "0.001", at=OLD):
    return ExchangePosition(
        account=account,
        exchange="binanceusdm",
        market=market,
        symbol=market,
        side=side,
        quantity=Decimal(qty),
        amount_step=Decimal(step) if step else None,
        opened_at=at,
        updated_at=at,
    )


def db(pid: str, market: str, side: Side, qty: str, *, account: str = "acct", at=OLD):
    return DbPosition(
        id=pid,
        account=account,
        exchange="binanceusdm",
        db_exchange="binance",
        symbol=market,
        market=market,
        side=side,
        quantity=Decimal(qty),
        opened_at=at,
        updated_at=at,
    )


def kinds_of(detection):
    return [(f.kind, f.key.market, f.key.side) for f in detection.findings]


def test_matching_books_give_no_finding():
    result = detect([db("1", "BTCUSDT", Side.LONG, "1.0")], [ex("BTCUSDT", Side.LONG, "1.000")], RULES, NOW)
    assert result.findings == ()
    assert result.pending == ()


def test_orphan_ghost_and_mismatch_are_told_apart():
    result = detect(
        [db("123", "BTCUSDT", Side.LONG, "1.0"), db("7", "ETHUSDT", Side.SHORT, "1.0")],
        [ex("AVLUSDT", Side.LONG, "86"), ex("ETHUSDT", Side.SHORT, "0.5")],
        RULES,
        NOW,
    )
    assert kinds_of(result) == [
        (FindingKind.ORPHAN, "AVLUSDT", Side.LONG),
        (FindingKind.GHOST, "BTCUSDT", Side.LONG),
        (FindingKind.QUANTITY_MISMATCH, "ETHUSDT", Side.SHORT),
    ]
    ghost = result.findings[1]
    assert ghost.db_position_ids == ("123",)
    assert ghost.exchange_position is None
    mismatch = result.findings[2]
    assert (mismatch.exchange_quantity, mismatch.db_quantity, mismatch.difference) == (
        Decimal("0.5"),
        Decimal("1.0"),
        Decimal("-0.5"),
    )


def test_hedge_mode_long_and_short_are_separate_positions():
    result = detect(
        [db("1", "BTCUSDT", Side.LONG, "1")],
        [ex("BTCUSDT", Side.LONG, "1"), ex("BTCUSDT", Side.SHORT, "2")],
        RULES,
        NOW,
    )
    assert kinds_of(result) == [(FindingKind.ORPHAN, "BTCUSDT", Side.SHORT)]


def test_side_matters_for_a_ghost():
    result = detect([db("1", "BTCUSDT", Side.SHORT, "1")], [ex("BTCUSDT", Side.LONG, "1")], RULES, NOW)
    assert sorted(kinds_of(result)) == [
        (FindingKind.GHOST, "BTCUSDT", Side.SHORT),
        (FindingKind.ORPHAN, "BTCUSDT", Side.LONG),
    ]


def test_accounts_do_not_mix():
    result = detect(
        [db("1", "BTCUSDT", Side.LONG, "1", account="a")], [ex("BTCUSDT", Side.LONG, "1", account="b")], RULES, NOW
    )
    assert sorted((f.kind, f.key.account) for f in result.findings) == [
        (FindingKind.GHOST, "a"),
        (FindingKind.ORPHAN, "b"),
    ]


def test_young_positions_are_pending_not_findings():
    young = NOW - timedelta(seconds=10)
    result = detect(
        [db("1", "BTCUSDT", Side.LONG, "1", at=young), db("2", "ETHUSDT", Side.LONG, "1", at=young)],
        [ex("SOLUSDT", Side.LONG, "5", at=young), ex("ETHUSDT", Side.LONG, "2", at=young)],
        RULES,
        NOW,
    )
    assert result.findings == ()
    assert result.pending == (
        PositionKey("acct", "BTCUSDT", Side.LONG),
        PositionKey("acct", "ETHUSDT", Side.LONG),
        PositionKey("acct", "SOLUSDT", Side.LONG),
    )


def test_grace_boundary_is_exclusive():
    at_edge = NOW - timedelta(seconds=60)
    result = detect([], [ex("SOLUSDT", Side.LONG, "5", at=at_edge)], RULES, NOW)
    assert kinds_of(result) == [(FindingKind.ORPHAN, "SOLUSDT", Side.LONG)]


def test_position_without_timestamps_is_judged_at_once():
    result = detect([], [ex("SOLUSDT", Side.LONG, "5", at=None)], RULES, NOW)
    assert kinds_of(result) == [(FindingKind.ORPHAN, "SOLUSDT", Side.LONG)]


def test_zero_size_exchange_rows_are_not_positions():
    result = detect([db("1", "BTCUSDT", Side.LONG, "1")], [ex("BTCUSDT", Side.LONG, "0")], RULES, NOW)
    assert kinds_of(result) == [(FindingKind.GHOST, "BTCUSDT", Side.LONG)]


def test_several_db_rows_on_one_key_are_summed():
    rows = [db("2", "BTCUSDT", Side.LONG, "0.4"), db("10", "BTCUSDT", Side.LONG, "0.6")]
    assert detect(rows, [ex("BTCUSDT", Side.LONG, "1.0")], RULES, NOW).findings == ()
    ghost = detect(rows, [], RULES, NOW).findings[0]
    assert ghost.db_position_ids == ("2", "10")
    assert ghost.db_quantity == Decimal("1.0")


def test_kinds_filter_limits_what_is_reported():
    books = (
        [db("1", "BTCUSDT", Side.LONG, "1"), db("2", "ETHUSDT", Side.LONG, "1")],
        [ex("SOLUSDT", Side.LONG, "1"), ex("ETHUSDT", Side.LONG, "3")],
    )
    assert [f.kind for f in detect(*books, RULES, NOW, SCAN_KINDS).findings] == [FindingKind.ORPHAN]
    assert sorted(f.kind for f in detect(*books, RULES, NOW, RECONCILIATION).findings) == [
        FindingKind.GHOST,
        FindingKind.QUANTITY_MISMATCH,
    ]


def test_differences_below_one_step_are_rounding():
    assert not quantities_differ(Decimal("0.1234"), Decimal("0.123"), Decimal("0.001"), Decimal("0"))
    assert quantities_differ(Decimal("0.124"), Decimal("0.123"), Decimal("0.001"), Decimal("0"))


def test_relative_tolerance_applies_above_one_step():
    # 1 000 contracts, step 1: a difference of 1 is within 0.1 %, a difference of 2 is not.
    assert not quantities_differ(Decimal("1000"), Decimal("999"), Decimal("1"), Decimal("0.001"))
    assert quantities_differ(Decimal("1000"), Decimal("998"), Decimal("1"), Decimal("0.001"))


def test_tolerance_is_decimal_exact():
    # 0.1 + 0.2 style float noise must not create or hide drift.
    assert not quantities_differ(Decimal("0.3"), Decimal("0.1") + Decimal("0.2"), None, Decimal("0"))
    assert quantities_differ(Decimal("0.3"), Decimal("0.30000000000000004"), None, Decimal("0"))


quantity = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3)
side = st.sampled_from([Side.LONG, Side.SHORT])
market = st.sampled_from(["BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "BTCPERP", "BTCUSD"])
book = st.dictionaries(st.tuples(market, side), quantity, max_size=8)


@settings(max_examples=300, deadline=None)
@given(exchange_book=book, db_book=book)
def test_every_key_lands_in_exactly_one_bucket(exchange_book, db_book):
    """Property: each key is matched, an orphan, a ghost or a mismatch, and nothing else."""
    exchange = [ex(m, s, str(q)) for (m, s), q in exchange_book.items()]
    rows = [db(str(i), m, s, str(q)) for i, ((m, s), q) in enumerate(db_book.items())]
    result = detect(rows, exchange, RULES, NOW, ALL_KINDS)
    by_key = {(f.key.market, f.key.side): f.kind for f in result.findings}
    assert len(by_key) == len(result.findings)
    for key in exchange_book.keys() | db_book.keys():
        if key not in db_book:
            assert by_key[key] is FindingKind.ORPHAN
        elif key not in exchange_book:
            assert by_key[key] is FindingKind.GHOST
        elif quantities_differ(exchange_book[key], db_book[key], Decimal("0.001"), RULES.quantity_tolerance):
            assert by_key[key] is FindingKind.QUANTITY_MISMATCH
        else:
            assert key not in by_key


@settings(max_examples=200, deadline=None)
@given(exchange_book=book, db_book=book)
def test_swapping_sides_of_the_books_swaps_orphans_and_ghosts(exchange_book, db_book):
    exchange = [ex(m, s, str(q)) for (m, s), q in exchange_book.items()]
    rows = [db(str(i), m, s, str(q)) for i, ((m, s), q) in enumerate(db_book.items())]
    mirrored_exchange = [ex(m, s, str(q)) for (m, s), q in db_book.items()]
    mirrored_rows = [db(str(i), m, s, str(q)) for i, ((m, s), q) in enumerate(exchange_book.items())]
    result = detect(rows, exchange, RULES, NOW)
    mirrored = detect(mirrored_rows, mirrored_exchange, RULES, NOW)
    orphans = {f.key for f in result.findings if f.kind is FindingKind.ORPHAN}
    ghosts_mirrored = {f.key for f in mirrored.findings if f.kind is FindingKind.GHOST}
    assert orphans == ghosts_mirrored


@settings(max_examples=200, deadline=None)
@given(qty=quantity, tolerance=st.decimals(min_value=Decimal("0"), max_value=Decimal("0.5"), places=4))
def test_equal_sizes_never_differ_and_the_check_is_symmetric(qty, tolerance):
    assert not quantities_differ(qty, qty, Decimal("0.001"), tolerance)
    other = qty * 2
    assert quantities_differ(qty, other, Decimal("0.001"), tolerance) == quantities_differ(
        other, qty, Decimal("0.001"), tolerance
    )
