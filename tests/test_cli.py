"""The command line end to end: real config file, real PostgreSQL, real ccxt against the loopback venues."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from main import run_cli
from services.fixes import GHOST_EXIT_REASON
from tests.helpers import (
    cli,
    fetch_audit,
    fetch_positions_table,
    insert_positions,
    write_config,
)
from tests.helpers import (
    position_row as row,
)

ROOT = Path(__file__).resolve().parent.parent


async def test_scan_reports_an_orphan_with_full_detail(tmp_path, db, new_account, capsys):
    bybit = new_account("bybit")
    bybit.set_position(
        "AVLUSDT", "long", Decimal("86"), entry_price=Decimal("0.1234"), mark_price=Decimal("0.1301"), leverage=10
    )
    config = write_config(tmp_path / "c.yaml", db, [bybit])
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    assert code == 2
    report = json.loads(out)
    assert report["accounts"] == [{"account": bybit.name, "exchange": "bybit", "status": "ok", "error": None}]
    [finding] = report["findings"]
    assert finding == {
        "kind": "orphan",
        "account": bybit.name,
        "exchange": "bybit",
        "symbol": "AVLUSDT",
        "side": "long",
        "exchange_quantity": "86",
        "db_quantity": None,
        "db_position_id": None,
        "db_position_ids": [],
        "entry_price": "0.1234",
        "mark_price": "0.1301",
        "unrealized_pnl": "0.5762",
        "leverage": "10",
        "stop_loss": None,
        "protection": "none",
        "protected_quantity": None,
        "stop_distance_pct": None,
    }

    code, text, _ = await cli(capsys, "scan", "--config", config)
    assert code == 2
    assert "ORPHAN  AVLUSDT LONG  on " + bybit.name + " (bybit)" in text
    for line in (
        "exchange size   86",
        "entry price     0.1234",
        "mark price      0.1301",
        "unrealized PnL  0.5762",
        "leverage        10x",
        "stop-loss       NONE",
    ):
        assert line in text


async def test_all_clear_exits_zero(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), stop_loss=Decimal("60000"))
    await insert_positions(db, [row(binance, "BTCUSDT", "long", "1.000")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    for command in ("scan", "reconcile"):
        code, out, _ = await cli(capsys, command, "--config", config)
        assert code == 0
        assert out.rstrip().endswith("All clear.")


async def test_reconcile_finds_ghosts_and_mismatches_but_not_orphans(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("0.5"), entry_price=Decimal("3000"))
    binance.set_position("SOLUSDT", "short", Decimal("4"))
    ids = await insert_positions(
        db,
        [
            row(binance, "BTCUSDT", "long", "1.0", entry_price=Decimal("65000")),
            row(binance, "ETH/USDT:USDT", "long", "1.0"),
        ],
    )
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json")
    assert code == 1
    findings = json.loads(out)["findings"]
    assert [
        (f["kind"], f["symbol"], f["side"], f["exchange_quantity"], f["db_quantity"], f["db_position_id"])
        for f in findings
    ] == [
        ("ghost", "BTCUSDT", "long", None, "1", str(ids[0])),
        ("quantity_mismatch", "ETHUSDT", "long", "0.5", "1", str(ids[1])),
    ]
    assert findings[0]["entry_price"] == "65000"
    code, text, _ = await cli(capsys, "reconcile", "--config", config)
    assert "difference      -0.5" in text
    assert f"DB id           #{ids[0]}" in text


async def test_hedge_mode_pair_is_matched_side_by_side(tmp_path, db, new_account, capsys):
    binance = new_account("binance", hedge_mode=True)
    binance.set_position("BTCUSDT", "long", Decimal("1"), stop_loss=Decimal("60000"))
    binance.set_position("BTCUSDT", "short", Decimal("0.4"), stop_loss=Decimal("70000"))
    await insert_positions(db, [row(binance, "BTCUSDT", "long", "1"), row(binance, "BTCUSDT", "short", "0.4")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    assert (code, json.loads(out)["findings"]) == (0, [])
    binance.set_position("BTCUSDT", "short", Decimal("0.1"))
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json")
    [finding] = json.loads(out)["findings"]
    assert (code, finding["kind"], finding["side"], finding["exchange_quantity"]) == (
        1,
        "quantity_mismatch",
        "short",
        "0.1",
    )


async def test_every_bybit_category_and_page_is_scanned(tmp_path, db, new_account, capsys):
    bybit = new_account("bybit")
    bybit.page_size = 2
    tracked = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BTCPERP", "ETHPERP", "ETHUSD", "XRPUSD"]
    for market in tracked:
        bybit.set_position(market, "long", Decimal("1"))
    bybit.set_position("DOGEUSDT", "short", Decimal("100"))
    bybit.set_position("SOLPERP", "short", Decimal("2"))
    bybit.set_position("BTCUSD", "short", Decimal("300"))
    await insert_positions(db, [row(bybit, m, "long", "1") for m in tracked])
    config = write_config(tmp_path / "c.yaml", db, [bybit])
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    assert code == 2
    findings = json.loads(out)["findings"]
    assert sorted(f["symbol"] for f in findings if f["kind"] == "orphan") == ["BTCUSD", "DOGEUSDT", "SOLPERP"]
    assert sorted(f["symbol"] for f in findings if f["kind"] == "unprotected") == sorted(tracked), "no stops"


FAULT_KINDS = ["http_500", "rate_limit", "empty_body", "timeout", "bad_key", "garbage_json", "no_success_marker"]


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_a_failing_account_is_unchecked_never_empty(tmp_path, db, new_account, capsys, kind):
    """A fault must not make tracked positions look like ghosts, nor hide orphans as 'all clear'."""
    failing = new_account("bybit")
    failing.set_position("BTCUSDT", "long", Decimal("1"))
    healthy = new_account("binance")
    await insert_positions(db, [row(failing, "ETHUSDT", "long", "2")])
    before = await fetch_positions_table(db)
    failing.fail(kind, endpoint="positions")
    config = write_config(tmp_path / "c.yaml", db, [failing, healthy])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    report = json.loads(out)
    assert code == 3
    assert report["findings"] == []
    status = {a["account"]: a for a in report["accounts"]}
    assert status[failing.name]["status"] == "unchecked"
    assert status[failing.name]["error"]
    assert status[healthy.name] == {"account": healthy.name, "exchange": "binanceusdm", "status": "ok", "error": None}
    assert await fetch_positions_table(db) == before

    healthy.set_position("SOLUSDT", "long", Decimal("1"))
    code, out, _ = await cli(capsys, "scan", "--config", config)
    assert code == 2, "an orphan elsewhere still wins over an unchecked account"
    assert "UNCHECKED: " in out


async def test_young_positions_are_pending(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    now = datetime.now(UTC)
    await insert_positions(db, [row(binance, "BTCUSDT", "long", "1", opened_at=now, updated_at=now)])
    binance.set_position("ETHUSDT", "long", Decimal("1"))  # opened just now on the venue
    config = write_config(tmp_path / "c.yaml", db, [binance], grace_s=60)
    for command in ("scan", "reconcile"):
        code, out, _ = await cli(capsys, command, "--config", config, "--json")
        report = json.loads(out)
        assert (code, report["findings"]) == (0, [])
        assert len(report["pending"]) == 1
    code, text, _ = await cli(capsys, "scan", "--config", config)
    assert "Pending (inside the grace window" in text


async def test_reconcile_fix_closes_confirmed_ghosts_only(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("0.5"))
    ghost_id, mismatch_id = await insert_positions(
        db,
        [
            row(binance, "BTCUSDT", "long", "1"),
            row(binance, "ETHUSDT", "long", "1"),
        ],
    )
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--fix", "--yes")
    assert code == 1
    assert f"fixed: position #{ghost_id} BTCUSDT LONG 1 marked closed" in out
    rows = {r["id"]: r for r in await fetch_positions_table(db)}
    assert (rows[ghost_id]["status"], rows[ghost_id]["exit_reason"]) == ("closed", GHOST_EXIT_REASON)
    assert rows[ghost_id]["closed_at"] is not None
    assert (rows[mismatch_id]["status"], rows[mismatch_id]["quantity"]) == ("active", Decimal("1"))
    [entry] = await fetch_audit(db)
    assert (entry["action"], entry["target"], entry["outcome"]) == ("close_ghost", f"position #{ghost_id}", "done")
    assert entry["actor"].startswith("cli:")
    assert json.loads(entry["before"])["status"] == "active"
    assert json.loads(entry["after"])["status"] == "closed"


async def test_reconcile_fix_asks_first_and_no_changes_nothing(tmp_path, db, new_account, capsys, monkeypatch):
    binance = new_account("binance")
    [ghost_id] = await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, err = await cli(capsys, "reconcile", "--config", config, "--fix")
    assert code == 1
    assert f"Mark 1 ghost position(s) #{ghost_id} as closed? [y/N]" in out
    assert "Nothing changed." in err
    assert (await fetch_positions_table(db))[0]["status"] == "active"
    assert await fetch_audit(db) == []


async def test_closeghost_closes_after_rechecking_the_exchange(tmp_path, db, new_account, capsys, monkeypatch):
    bybit = new_account("bybit")
    [ghost_id] = await insert_positions(db, [row(bybit, "BTCUSDT", "short", "0.25")])
    config = write_config(tmp_path / "c.yaml", db, [bybit])
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, _ = await cli(capsys, "closeghost", ghost_id, "--config", config)
    assert code == 0
    assert f"Mark position #{ghost_id} BTCUSDT SHORT 0.25 as closed? [y/N]" in out
    assert f"fixed: position #{ghost_id} BTCUSDT SHORT 0.25 marked closed" in out
    assert (await fetch_positions_table(db))[0]["exit_reason"] == GHOST_EXIT_REASON

    code, out, _ = await cli(capsys, "closeghost", ghost_id, "--config", config, "--yes")
    assert (code, out.strip()) == (1, f"not changed: position #{ghost_id} is not active (status closed)")


async def test_closeghost_refuses_with_reasons(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    now = datetime.now(UTC)
    open_id, young_id, unwatched_id = await insert_positions(
        db,
        [
            row(binance, "BTCUSDT", "long", "1"),
            row(binance, "ETHUSDT", "long", "1", opened_at=now),
            {"exchange": "kraken", "symbol": "XBTUSD", "side": "long", "quantity": Decimal(1)},
        ],
    )
    config = write_config(tmp_path / "c.yaml", db, [binance], grace_s=60)
    cases = {
        open_id: f"position #{open_id} is open on {binance.name}: BTCUSDT LONG 1",
        young_id: f"position #{young_id} was opened less than 60s ago; wait for it to fill",
        unwatched_id: f"position #{unwatched_id} is on kraken, which no configured account watches",
        "999999": "position #999999 does not exist",
        "abc": "position #abc does not exist",
    }
    before = await fetch_positions_table(db)
    for pid, reason in cases.items():
        code, out, err = await cli(capsys, "closeghost", pid, "--config", config, "--yes")
        assert code == 1
        assert reason in out + err
    assert await fetch_positions_table(db) == before
    refusals = [(a["target"], a["outcome"]) for a in await fetch_audit(db)]
    assert refusals == [
        (f"position #{open_id}", "refused"),
        (f"position #{young_id}", "refused"),
        (f"position #{unwatched_id}", "refused"),
    ]


async def test_closeghost_refuses_when_the_exchange_cannot_be_checked(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    [ghost_id] = await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    binance.fail("rate_limit", endpoint="positions")
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, _ = await cli(capsys, "closeghost", ghost_id, "--config", config, "--yes")
    assert code == 1
    assert f"not changed: cannot check {binance.name}: rate limited" in out
    assert (await fetch_positions_table(db))[0]["status"] == "active"


async def test_closeghost_race_with_the_trading_bot_changes_nothing(tmp_path, db, new_account, capsys):
    """The trading bot closes the row while reconbot is about to: the guarded UPDATE finds nothing to do."""
    binance = new_account("binance")
    [ghost_id] = await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    trading_bot = await asyncpg.connect(db)
    try:
        transaction = trading_bot.transaction()
        await transaction.start()
        await trading_bot.execute(
            "UPDATE positions SET status = 'closed', exit_reason = 'take profit' WHERE id = $1", ghost_id
        )
        task = asyncio.create_task(cli(capsys, "closeghost", ghost_id, "--config", config, "--yes"))
        watcher = await asyncpg.connect(db)
        try:
            for _ in range(200):
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                if waiting:
                    break
                await asyncio.sleep(0.025)
            assert waiting, "reconbot's UPDATE should be waiting on the trading bot's row lock"
        finally:
            await watcher.close()
        await transaction.commit()
        code, out, _ = await task
    finally:
        await trading_bot.close()
    assert code == 1
    assert f"position #{ghost_id} was closed meanwhile; nothing changed" in out
    [stored] = await fetch_positions_table(db)
    assert (stored["status"], stored["exit_reason"]) == ("closed", "take profit")
    assert [a["outcome"] for a in await fetch_audit(db)] == ["refused"]


async def test_unknown_account_and_missing_migrations_are_clear_errors(tmp_path, database_url, new_account, capsys):
    binance = new_account("binance")
    config = write_config(tmp_path / "c.yaml", database_url, [binance])
    code, _, err = await cli(capsys, "scan", "--config", config)
    assert code == 3
    assert "positions table positions does not exist; run `python main.py migrate`" in err
    code, out, err = await cli(capsys, "migrate", "--config", config)
    assert code == 0
    assert "created positions table positions" in out
    code, _, err = await cli(capsys, "scan", "--config", config, "--account", "nope")
    assert code == 3
    assert f"unknown account nope; configured: {binance.name}" in err


async def test_unreachable_database_is_exit_three(tmp_path, new_account, capsys):
    binance = new_account("binance")
    config = write_config(tmp_path / "c.yaml", "postgresql://x:hunter2@127.0.0.1:1/db", [binance])
    code, out, err = await cli(capsys, "scan", "--config", config)
    assert (code, out) == (3, "")
    assert err.startswith("error: cannot connect to PostgreSQL")
    assert "hunter2" not in err


async def test_account_filter_checks_only_the_named_accounts(tmp_path, db, new_account, capsys):
    first, second = new_account("binance"), new_account("bybit")
    second.set_position("BTCUSDT", "long", Decimal("1"))
    config = write_config(tmp_path / "c.yaml", db, [first, second])
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json", "--account", first.name)
    assert code == 0
    assert [a["account"] for a in json.loads(out)["accounts"]] == [first.name]
    assert second.request_count("positions") == 0


async def run_main(*argv, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "main.py",
        *map(str, argv),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    return process.returncode, out.decode(), err.decode()


async def test_cli_as_a_separate_process(tmp_path, db, new_account):
    """What an operator or a monitoring system runs: the real entry point, its exit code and output."""
    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    [ghost_id] = await insert_positions(db, [row(bybit, "BTCUSDT", "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [bybit])
    code, out, _ = await run_main("scan", "--config", config, "--json")
    assert code == 2
    assert json.loads(out)["findings"][0]["symbol"] == "AVLUSDT"
    code, out, _ = await run_main("closeghost", ghost_id, "--config", config, stdin=b"y\n")
    assert code == 0, out
    assert "marked closed" in out
    code, out, _ = await run_main("reconcile", "--config", config)
    assert code == 0
    assert bybit.secret not in out


async def test_confirmation_read_drops_transient_drift(tmp_path, db, new_account, capsys, monkeypatch):
    """Seen once and gone a moment later (the trading bot was mid-write): nobody is told."""
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    config = write_config(tmp_path / "c.yaml", db, [binance], verify_delay_s=0.2)
    real_sleep = asyncio.sleep

    async def trading_bot_catches_up(delay, *args, **kwargs):
        if delay == 0.2:
            await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
        return await real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", trading_bot_catches_up)
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    assert (code, json.loads(out)["findings"]) == (0, [])
    assert binance.request_count("positions") >= 2


async def test_confirmation_read_failure_makes_the_account_unchecked(tmp_path, db, new_account, capsys, monkeypatch):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"))
    config = write_config(tmp_path / "c.yaml", db, [binance], verify_delay_s=0.2)
    real_sleep = asyncio.sleep

    async def venue_fails_meanwhile(delay, *args, **kwargs):
        if delay == 0.2:
            binance.fail("http_500", endpoint="positions", times=1)
        return await real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", venue_fails_meanwhile)
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    report = json.loads(out)
    assert (code, report["findings"], report["accounts"][0]["status"]) == (3, [], "unchecked")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["closeghost"], "the following arguments are required: ID"),
        (["scan", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
async def test_usage_errors_exit_three_not_two(argv, message, capsys):
    """argparse's usual 2 would read as CRITICAL (an orphan) to a monitoring system."""
    with pytest.raises(SystemExit) as caught:
        await run_cli(argv)
    _, err = capsys.readouterr()
    assert caught.value.code == 3
    assert message in err
    assert err.startswith("usage: python main.py")
