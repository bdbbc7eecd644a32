"""Growth re-alerts, as a trader's phone gets them (real aiogram against the loopback Bot API, real ccxt against
the loopback venues, real PostgreSQL): Snooze and Acknowledge cover what was shown, not what comes later. A
finding whose size or value grows by ``alerts.regrowth_factor`` over what it showed when it was quietened, or
whose severity rises, rings again naming the growth; smaller changes stay silent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg

from services.console import ConsoleAlerts
from services.finding_details import FindingDetails
from services.model import RECONCILIATION, SCAN_KINDS, FindingKind, FindingState
from services.reconciler import AutoFix
from services.regrowth import baseline_of, growth_of, value_at_stake
from services.settings import ConfigError, load_settings
from services.severity import Severity
from tests.chatops import ALERT_CHAT, OPERATOR, Harness, running_chatops, telegram_settings
from tests.helpers import fetch_audit, fetch_positions_table, insert_positions
from tests.helpers import position_row as row


@contextlib.asynccontextmanager
async def chatops(database_url, bot_api, accounts, **overrides) -> AsyncIterator[Harness]:
    settings = telegram_settings(database_url, accounts, bot_api, **overrides)
    async with running_chatops(settings, bot_api) as h:
        yield h


def sends(h: Harness) -> int:
    """How many messages the bot sent to the alert chat so far (each one a notification unless silent)."""
    return sum(1 for call in h.telegram.calls if call.method == "sendMessage" and call.params["chat_id"] == ALERT_CHAT)


async def quieten(h: Harness, button: str, kinds) -> object:
    """Check, wait for the one alert, press ``button`` on it and wait until the alert says so."""
    await h.reconciler.check(kinds)
    [alert] = await h.wait_alerts(1)
    await h.press(OPERATOR, alert, button)
    await h.edited_to(alert, "Snoozed by" if button.startswith("Snooze") else "Acknowledged by")
    await h.settled()
    return alert


async def test_a_snoozed_orphan_that_grew_a_thousandfold_rings_once_naming_the_growth(
    database_url, new_account, telegram
):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), mark_price=Decimal("65000"))
    async with chatops(database_url, telegram, [binance]) as h:
        alert = await quieten(h, "Snooze 1h", SCAN_KINDS)

        binance.set_position("BTCUSDT", "long", Decimal("1000"), mark_price=Decimal("65000"))
        filed = await h.reconciler.check(SCAN_KINDS)
        _first, again = await h.wait_alerts(2, timeout=5)
        await h.settled()

        first, second, *_rest = again.text.splitlines()
        assert (
            first == "📈 Orphan position grew · BTCUSDT LONG 1 → 1,000 contracts (≈ 65,000,000.00 USDT) — snoozed at 1"
        )
        assert second.startswith("🔴 Orphan position · 65,000,000.00 USDT")
        assert again.silent is False, "growth is new risk: it rings"
        assert again.button_texts == ["Adopt into DB", "Snooze 1h", "Details"]
        [finding] = await h.runtime.findings.live()
        assert finding.state is FindingState.OPEN and finding.snoozed_until is None, "the snooze ended"
        old = await h.edited_to(alert, "Contracts: 1,000")
        assert "Snoozed by" not in old.text, "the snooze ended on every copy"
        assert old.text.startswith("📈 Orphan position grew"), "every copy says the same"
        assert [f.id for f in filed.grown] == [finding.id]
        lines: list[str] = []
        ConsoleAlerts(lines.append)(filed)
        assert any("] GREW\nOrphan position grew · BTCUSDT LONG 1 → 1,000 contracts" in block for block in lines), lines

        before = sends(h)
        binance.set_position("BTCUSDT", "long", Decimal("1500"), mark_price=Decimal("65000"))
        await h.reconciler.check(SCAN_KINDS)
        await h.reconciler.check(SCAN_KINDS)
        await h.settled()
        assert sends(h) == before, "after the re-alert, 1,000 → 1,500 is below the factor"


async def test_an_acknowledged_mismatch_that_grew_rings_although_mismatches_are_silent(
    database_url, new_account, telegram
):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1.5"), mark_price=Decimal("65000"))
    async with chatops(database_url, telegram, [binance]) as h:
        await insert_positions(database_url, [row(binance, "BTCUSDT", "long", "1")])
        alert = await quieten(h, "Acknowledge", RECONCILIATION)
        assert alert.silent is True, "a new mismatch arrives silently"

        binance.set_position("BTCUSDT", "long", Decimal("100"), mark_price=Decimal("65000"))
        await h.reconciler.check(RECONCILIATION)
        _first, again = await h.wait_alerts(2, timeout=5)
        assert again.text.splitlines()[0] == (
            "📈 Quantity mismatch grew · BTCUSDT LONG difference 0.5 → 99 contracts (≈ 6,435,000.00 USDT)"
            " — acknowledged at 0.5"
        )
        assert again.silent is False
        assert again.button_texts == ["Set DB to exchange size", "Snooze 1h", "Acknowledge", "Details"]
        [finding] = await h.runtime.findings.live()
        assert finding.state is FindingState.OPEN and finding.closed_by is None


async def test_growth_below_the_factor_stays_silent_and_snoozed(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), mark_price=Decimal("65000"))
    async with chatops(database_url, telegram, [binance]) as h:
        alert = await quieten(h, "Snooze 1h", SCAN_KINDS)
        edits, before = len(h.telegram.message(ALERT_CHAT, alert.message_id).edits), sends(h)

        binance.set_position("BTCUSDT", "long", Decimal("1.9"), mark_price=Decimal("65000"))
        await h.reconciler.check(SCAN_KINDS)
        await h.settled()
        assert sends(h) == before and len(h.telegram.message(ALERT_CHAT, alert.message_id).edits) == edits
        [finding] = await h.runtime.findings.live()
        assert finding.state is FindingState.SNOOZED
        assert finding.details.exchange_quantity == Decimal("1.9"), "the figures are kept current"

        binance.set_position("BTCUSDT", "long", Decimal("2"), mark_price=Decimal("65000"))
        await h.reconciler.check(SCAN_KINDS)
        await h.wait_alerts(2, timeout=5)  # 2 × what was snoozed, not 2 × the last check (1.9)


async def test_a_severity_rise_rings_even_below_the_factor(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("SOLUSDT", "short", Decimal("5"), mark_price=Decimal("176"))  # 880 USDT: info
    async with chatops(database_url, telegram, [binance]) as h:
        await quieten(h, "Snooze 1h", SCAN_KINDS)

        binance.set_position("SOLUSDT", "short", Decimal("6"), mark_price=Decimal("176"))  # 1,056 USDT: warning
        await h.reconciler.check(SCAN_KINDS)
        _first, again = await h.wait_alerts(2, timeout=5)
        assert again.text.splitlines()[0] == (
            "📈 Orphan position grew · SOLUSDT SHORT 5 → 6 contracts (≈ 1,056.00 USDT), info → warning — snoozed at 5"
        )
        assert again.silent is False


async def test_an_open_finding_that_grew_rings_and_edits_its_alert(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), mark_price=Decimal("65000"))
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        [alert] = await h.wait_alerts(1)

        binance.set_position("BTCUSDT", "long", Decimal("3"), mark_price=Decimal("65000"))
        await h.reconciler.check(SCAN_KINDS)
        _first, again = await h.wait_alerts(2, timeout=5)
        assert again.text.splitlines()[0] == (
            "📈 Orphan position grew · BTCUSDT LONG 1 → 3 contracts (≈ 195,000.00 USDT) — alerted at 1"
        )
        assert again.silent is False
        await h.edited_to(alert, "Contracts: 3")


def test_a_regrowth_factor_of_one_or_less_is_a_clear_config_error(tmp_path):
    base = "accounts:\n  - {name: binance-main, exchange: binanceusdm, api_key: k, secret: s}\nalerts:\n"
    problems = {}
    for value in ("1", "0.5", "twice"):
        path = tmp_path / f"config-{value}.yaml"
        path.write_text(base + f"  regrowth_factor: {value}\n")
        try:
            load_settings(path)
        except ConfigError as exc:
            problems[value] = exc.problems
    assert problems == {
        "1": ["alerts.regrowth_factor: Input should be greater than 1 (got 1)"],
        "0.5": ["alerts.regrowth_factor: Input should be greater than 1 (got 0.5)"],
        "twice": ["alerts.regrowth_factor: Input should be a valid decimal (got 'twice')"],
    }
    path = tmp_path / "config.yaml"
    path.write_text(base + "  regrowth_factor: 3\n")
    assert load_settings(path).alerts.regrowth_factor == Decimal(3)


async def test_many_grown_findings_ring_as_one_digest(database_url, new_account, telegram):
    binance = new_account("binance", hedge_mode=True)
    sizes = {("BTCUSDT", "long"): "1", ("BTCUSDT", "short"): "2", ("ETHUSDT", "long"): "3", ("ETHUSDT", "short"): "4"}
    sizes |= {("SOLUSDT", "long"): "50", ("SOLUSDT", "short"): "60"}
    for (market, side), amount in sizes.items():
        binance.set_position(market, side, Decimal(amount))
    async with chatops(database_url, telegram, [binance]) as h:
        await h.reconciler.check(SCAN_KINDS)
        [digest] = await h.wait_alerts(1)
        await h.press(OPERATOR, digest, "Snooze all 1h")
        await h.settled()
        assert {f.state for f in await h.runtime.findings.live()} == {FindingState.SNOOZED}

        for (market, side), amount in sizes.items():
            binance.set_position(market, side, Decimal(amount) * 3)
        await h.reconciler.check(SCAN_KINDS)
        _first, again = await h.wait_alerts(2, timeout=5)
        assert again.text.splitlines()[0].startswith("🔴 6 grown findings · ")
        assert "1. 🔴 📈 Orphan BTCUSDT SHORT · " in again.text
        assert again.silent is False and again.button_texts[-2:] == ["Show all", "Snooze all 1h"]
        assert {f.state for f in await h.runtime.findings.live()} == {FindingState.OPEN}


# -- the rule itself, per kind ------------------------------------------------------------------------------------


def details(**values) -> FindingDetails:
    return FindingDetails(**{k: Decimal(v) if type(v) is str else v for k, v in values.items()})


def grows(kind: FindingKind, before: FindingDetails, after: FindingDetails) -> bool:
    baseline = baseline_of(kind, before, FindingState.SNOOZED)
    return growth_of(kind, after, baseline, Decimal(2)) is not None


def test_what_counts_as_growth_for_each_kind():
    orphan = details(exchange_quantity="1", notional="100", exposure_usd="100", severity=Severity.INFO)
    assert grows(FindingKind.ORPHAN, orphan, details(exchange_quantity="2", exposure_usd="200", severity=Severity.INFO))
    assert not grows(
        FindingKind.ORPHAN, orphan, details(exchange_quantity="1.9", exposure_usd="190", severity=Severity.INFO)
    )
    assert grows(  # the price doubled: the same size is twice the money
        FindingKind.ORPHAN, orphan, details(exchange_quantity="1", exposure_usd="200", severity=Severity.INFO)
    )
    mismatch = details(exchange_quantity="1.5", db_quantity="1", difference="0.5", exposure_usd="150")
    shrunk_db = details(exchange_quantity="1.5", db_quantity="0.1", difference="1.4", exposure_usd="150")
    assert grows(FindingKind.QUANTITY_MISMATCH, mismatch, shrunk_db), "the DB lost track of more of the position"
    flipped = details(exchange_quantity="0.6", db_quantity="1", difference="-0.4", exposure_usd="60")
    assert not grows(FindingKind.QUANTITY_MISMATCH, mismatch, flipped)
    ghost = details(db_quantity="1", db_value="100", exposure_usd="100")
    assert grows(FindingKind.GHOST, ghost, details(db_quantity="3", db_value="300", exposure_usd="300"))
    stray = details(severity=Severity.WARNING)
    assert not grows(FindingKind.STRAY_ORDER, stray, details(severity=Severity.WARNING)), "no size of its own"
    assert grows(FindingKind.STRAY_ORDER, details(severity=Severity.INFO), stray), "a severity rise is growth"
    assert not grows(FindingKind.ORPHAN, details(severity=Severity.CRITICAL), details(severity=Severity.WARNING))


def test_the_value_at_stake_is_a_share_of_the_notional_so_inverse_contracts_stay_in_coin():
    inverse = details(exchange_quantity="1000", db_quantity="400", difference="600", notional="0.25")
    assert value_at_stake(FindingKind.QUANTITY_MISMATCH, inverse) == Decimal("0.15")
    assert value_at_stake(FindingKind.ORPHAN, inverse) == Decimal("0.25")
    assert value_at_stake(FindingKind.GHOST, details(db_quantity="2", db_value="7000")) == Decimal(7000)


async def test_an_acknowledged_ghost_that_grew_rings_but_is_never_auto_fixed(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        [row_id] = await insert_positions(
            database_url, [row(binance, "ETHUSDT", "long", "1", entry_price=Decimal(3500))]
        )
        await quieten(h, "Acknowledge", RECONCILIATION)
        h.reconciler.auto_fix = AutoFix(enabled=True)

        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE positions SET quantity = 3 WHERE id = $1", row_id)
        finally:
            await conn.close()
        await h.reconciler.check(RECONCILIATION)
        _first, again = await h.wait_alerts(2, timeout=5)
        assert again.text.splitlines()[0] == (
            "📈 Ghost position grew · ETHUSDT LONG DB size 1 → 3 contracts (≈ 10,500.00 USDT), warning → critical"
            " — acknowledged at 1"
        )
        [stored] = await fetch_positions_table(database_url)
        assert stored["status"] == "active", "a trader chose to keep it: growth asks them again, it does not fix"
        assert [e["action"] for e in await fetch_audit(database_url)] == ["acknowledge"], "no fix"
