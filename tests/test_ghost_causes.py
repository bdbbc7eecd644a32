"""Every ghost says how its position ended, and every fix path writes the venue's close into the DB: the alert,
``reconcile`` and its JSON, and the rows written by ``reconcile --fix``, ``closeghost``, Mark closed and
auto-fix, with the seed's and freqtrade's own columns. End to end: the loopback venues serve the history in
their own JSON, PostgreSQL is real, Telegram is the loopback Bot API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.fixes import GHOST_EXIT_REASON
from services.model import RECONCILIATION
from tests.chatops import ALERT_CHAT, OPERATOR, running_chatops, telegram_settings
from tests.helpers import cli, fetch_positions_table, insert_positions, prepare_database, running, until, write_config
from tests.helpers import position_row as row
from tests.test_reach import SCHEMAS, execute, fetch, seed_row
from tests.test_reach import write as write_with_positions

CLOSED_AT = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
CLOSED_MS = int(CLOSED_AT.timestamp() * 1000)
HHMM = CLOSED_AT.strftime("%H:%M")


def liquidated(account, symbol="BTCUSDT", side="long", quantity="0.5", price="61210.5", entry="62035.1"):
    """A position the venue liquidated 30 minutes ago; returns its fill."""
    account.set_position(symbol, side, Decimal(quantity), entry_price=Decimal(entry))
    [fill] = account.close_position(symbol, side, cause="liquidation", price=price, at_ms=CLOSED_MS)
    return fill


async def test_reconcile_says_why_and_its_json_carries_the_cause(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    fill = liquidated(binance)
    [pid] = await insert_positions(db, [row(binance, "BTCUSDT", "long", "0.5")])
    config = write_config(tmp_path / "c.yaml", db, [binance])

    code, out, _ = await cli(capsys, "reconcile", "--config", config)
    assert code == 1
    assert f"BTCUSDT LONG #{pid} was liquidated at {HHMM} UTC at 61,210.5, realized −412.30 USDT" in out

    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json")
    [finding] = json.loads(out)["findings"]
    assert finding["cause"] == {
        "kind": "liquidation",
        "closed_at": CLOSED_AT.isoformat(),
        "exit_price": "61210.5",
        "realized_pnl": "-412.3",
        "currency": "USDT",
        "order_id": fill.order_id,
    }


async def test_reconcile_fix_writes_the_venues_close(tmp_path, db, new_account, capsys):
    bybit = new_account("bybit")
    bybit.set_position("ETHUSDT", "short", Decimal("2"), entry_price=Decimal("3000"))
    bybit.close_position("ETHUSDT", "short", cause="adl", price="2900", at_ms=CLOSED_MS)
    [pid] = await insert_positions(db, [row(bybit, "ETHUSDT", "short", "2")])
    config = write_config(tmp_path / "c.yaml", db, [bybit])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--fix", "--yes")
    assert code == 1
    assert f"fixed: position #{pid} ETHUSDT SHORT 2 marked closed" in out
    assert "marked closed (auto-deleveraging on the exchange)" in out
    [written] = await fetch_positions_table(db)
    assert (written["status"], written["exit_reason"]) == ("closed", "reconciliation: auto-deleveraging on exchange")
    assert written["closed_at"] == CLOSED_AT


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        ("stop_loss", "reconciliation: stop-loss on exchange"),
        ("take_profit", "reconciliation: take-profit on exchange"),
        ("manual", "reconciliation: closed on exchange"),
        ("settlement", "reconciliation: settlement on exchange"),
    ],
)
async def test_closeghost_writes_each_cause(tmp_path, db, new_account, capsys, cause, reason):
    binance = new_account("binance")
    binance.set_position("SOLUSDT", "long", Decimal("10"), entry_price=Decimal("140"), stop_loss=130)
    if cause == "take_profit":
        binance.set_position_stops("SOLUSDT", "long", take_profit=150)
    binance.close_position("SOLUSDT", "long", cause=cause, at_ms=CLOSED_MS)
    [pid] = await insert_positions(db, [row(binance, "SOLUSDT", "long", "10")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, _ = await cli(capsys, "closeghost", pid, "--config", config, "--yes")
    assert code == 0, out
    [written] = await fetch_positions_table(db)
    assert (written["exit_reason"], written["closed_at"]) == (reason, CLOSED_AT)


async def test_an_empty_history_keeps_the_seeds_reason_and_the_fix_time(tmp_path, db, new_account, capsys):
    bybit = new_account("bybit")
    [pid] = await insert_positions(db, [row(bybit, "BTCUSDT", "short", "0.25")])
    config = write_config(tmp_path / "c.yaml", db, [bybit])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json")
    [finding] = json.loads(out)["findings"]
    assert finding["cause"]["kind"] == "unknown"
    assert finding["cause"]["note"].startswith("no trade closing BTCUSDT SHORT in the venue's history since ")
    code, out, _ = await cli(capsys, "closeghost", pid, "--config", config, "--yes")
    assert code == 0
    [written] = await fetch_positions_table(db)
    assert written["exit_reason"] == GHOST_EXIT_REASON
    assert abs(written["closed_at"] - datetime.now(UTC)) < timedelta(minutes=1)


async def test_a_failed_history_read_never_blocks_the_finding_or_the_fix(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    liquidated(binance)
    binance.fail("http_500", "history")
    await insert_positions(db, [row(binance, "BTCUSDT", "long", "0.5")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert code == 1
    [finding] = json.loads(out)["findings"]
    assert finding["cause"]["kind"] == "unknown"
    assert finding["cause"]["note"].startswith("the history could not be read: ")
    assert [f["done"] for f in json.loads(out)["fixes"]] == [True]
    [written] = await fetch_positions_table(db)
    assert (written["status"], written["exit_reason"]) == ("closed", GHOST_EXIT_REASON)
    assert binance.api_key not in out and binance.secret not in out


async def test_a_size_cut_by_a_liquidation_says_so(tmp_path, db, new_account, capsys):
    bybit = new_account("bybit")
    bybit.set_position("ETHUSDT", "long", Decimal("4"), entry_price=Decimal("3000"))
    bybit.close_position("ETHUSDT", "long", cause="liquidation", qty="1.5", price="2700", at_ms=CLOSED_MS)
    await insert_positions(db, [row(bybit, "ETHUSDT", "long", "4")])
    config = write_config(tmp_path / "c.yaml", db, [bybit])
    code, out, _ = await cli(capsys, "reconcile", "--config", config)
    assert code == 1
    assert f"Reduced by a liquidation (1.5 closed) at {HHMM} UTC at 2,700" in out
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json")
    [finding] = json.loads(out)["findings"]
    assert (finding["kind"], finding["cause"]["kind"]) == ("quantity_mismatch", "liquidation")


# -- the seed's and freqtrade's own columns --------------------------------------------------------------------


async def test_the_seed_preset_gets_exit_price_and_realized_pnl(tmp_path, database_url, new_account, capsys):
    await prepare_database(database_url)
    await execute(database_url, (SCHEMAS / "seed_monitoring_positions.sql").read_text())
    binance = new_account("binance")
    liquidated(binance)
    ghost = await seed_row(database_url, "binance", "BTCUSDT", "long", "0.5")
    config = write_with_positions(tmp_path, database_url, [binance], {"preset": "seed"})
    _code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert [f["done"] for f in json.loads(out)["fixes"]] == [True]
    [written] = await fetch(
        database_url,
        "SELECT status, exit_reason, closed_at, current_price, realized_pnl FROM monitoring.positions WHERE id = $1",
        ghost,
    )
    assert (written["status"], written["exit_reason"]) == ("closed", "reconciliation: liquidation on exchange")
    assert written["closed_at"] == CLOSED_AT
    assert (written["current_price"], written["realized_pnl"]) == (Decimal("61210.5"), Decimal("-412.3"))


# -- Telegram: the alert and Mark closed; the running service's auto-fix ------------------------------------------


async def test_the_ghost_alert_says_why_and_mark_closed_writes_it(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("60000"), stop_loss=58000)
    bybit.close_position("BTCUSDT", "long", cause="stop_loss", at_ms=CLOSED_MS)
    await prepare_database(database_url)
    [pid] = await insert_positions(database_url, [row(bybit, "BTCUSDT", "long", "1")])
    settings = telegram_settings(database_url, [bybit], telegram)
    async with running_chatops(settings, telegram) as h:
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
        when = CLOSED_AT.strftime("%Y-%m-%d %H:%M UTC")
        assert f"BTCUSDT LONG #{pid} was closed by its stop-loss at {when} at 58,000" in alert.text
        [closed] = [e for e in alert.entities if e["type"] == "date_time" and e["unix_time"] == CLOSED_MS // 1000]
        assert closed["date_time_format"] == "dt", "shown in each reader's own zone"
        assert "realized −2,000" in alert.text
        await h.press(OPERATOR, alert, "Mark closed")
        question = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Mark position"))
        assert "(stop-loss on the exchange, exit 58,000: written to the DB)" in question.text
        asked = question.text
        await h.press(OPERATOR, question, "Confirm")
        await telegram.wait_until(lambda: telegram.message(ALERT_CHAT, question.message_id).text != asked)
    [written] = await fetch_positions_table(database_url)
    assert (written["status"], written["exit_reason"]) == ("closed", "reconciliation: stop-loss on exchange")
    assert written["closed_at"] == CLOSED_AT


async def test_auto_fix_writes_the_venues_close(database_url, new_account, telegram):
    binance = new_account("binance")
    liquidated(binance, symbol="ETHUSDT", side="short", quantity="3", price="3400", entry="3000")
    await prepare_database(database_url)
    [pid] = await insert_positions(database_url, [row(binance, "ETHUSDT", "short", "3")])
    settings = telegram_settings(
        database_url,
        [binance],
        telegram,
        scan={"orphan_interval_s": 1, "reconcile_interval_s": 1, "jitter_s": 0, "auto_fix_ghosts": True},
        alerts={"console": False},
    )
    async with running(settings):
        await until(lambda: any("Fixed by reconbot (auto-fix)" in m.text for m in telegram.messages(ALERT_CHAT)))
    [written] = await fetch_positions_table(database_url)
    assert written["id"] == pid
    assert (written["status"], written["exit_reason"]) == ("closed", "reconciliation: liquidation on exchange")
    assert written["closed_at"] == CLOSED_AT
    fixed = next(m for m in telegram.messages(ALERT_CHAT) if "Fixed by reconbot (auto-fix)" in m.text)
    assert "liquidat" in fixed.text
