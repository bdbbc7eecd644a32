"""The command line under odd answers and bad rows: one bad row spoils only its own account, a symbol reconbot
cannot map is never a ghost, the JSON is one document, and every failure is one line with exit code 3."""

from __future__ import annotations

import io
import json
import sys
from decimal import Decimal

import asyncpg
import pytest
import yaml

from services.fixes import GHOST_EXIT_REASON
from tests.helpers import (
    LONG_AGO,
    cli,
    config_dict,
    fetch_audit,
    fetch_positions_table,
    insert_positions,
    prepare_database,
    write_config,
)
from tests.helpers import position_row as row

# -- a row reconbot cannot map ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("venue", "symbol"),
    [("binance", "BTC-USDT"), ("bybit", "BTC/USDT"), ("binance", "BTC/USDT:USDT-200925")],
)
async def test_a_symbol_that_is_no_market_is_an_unknown_symbol_never_a_ghost(
    tmp_path, db, new_account, capsys, monkeypatch, venue, symbol
):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("1"))
    [pid] = await insert_positions(db, [row(account, symbol, "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [account])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    report = json.loads(out)
    assert code == 1
    [finding] = report["findings"]
    exchange_id = account.exchange_id
    assert (finding["kind"], finding["symbol"], finding["db_position_id"]) == ("unknown_symbol", symbol, str(pid))
    assert finding["note"] == f"DB row #{pid} symbol {symbol!r} is no market of {exchange_id}"
    assert report["fixes"] == [], "never in --fix"
    assert (await fetch_positions_table(db))[0]["status"] == "active"

    code, out, _ = await cli(capsys, "closeghost", pid, "--config", config, "--yes")
    assert code == 1
    assert f"not changed: DB row #{pid} symbol {symbol!r} is no market of {exchange_id}" in out
    [audit] = await fetch_audit(db)
    assert (audit["action"], audit["outcome"], audit["reason"]) == (
        "close_ghost",
        "refused",
        f"DB row #{pid} symbol {symbol!r} is no market of {exchange_id}",
    )
    code, text, _ = await cli(capsys, "reconcile", "--config", config)
    assert "UNKNOWN SYMBOL" in text and "positions.symbols" in text and "GHOST" not in text
    assert (await fetch_positions_table(db))[0]["status"] == "active"


# -- nothing dropped -------------------------------------------------------------------------------------------


async def test_a_binance_position_with_entry_price_zero_is_never_fixed_as_a_ghost(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("1"), entry_price=0)
    await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert (code, json.loads(out)["findings"], json.loads(out)["fixes"]) == (0, [], [])
    assert (await fetch_positions_table(db))[0]["status"] == "active"


# -- one bad row spoils only its own account -------------------------------------------------------------------

LOOSE_TABLE = """
CREATE TABLE loose (
    id serial PRIMARY KEY, exchange text, account text, symbol text, side text, quantity text, status text,
    opened_at timestamptz)
"""


def loose_config(db: str, accounts) -> dict:
    config = config_dict(db, accounts)
    config["positions"] = {
        "table": "loose",
        "columns": {"entry_price": None, "closed_at": None, "exit_reason": None, "updated_at": None},
    }
    return config


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (("BTCUSDT", "long", None), "quantity is NULL"),
        (("BTCUSDT", "long", "NaN"), "quantity 'NaN' is not a finite number"),
        (("BTCUSDT", "long", "abc"), "quantity 'abc' is not a number"),
        ((None, "long", "1"), "symbol is NULL"),
        (("BTCUSDT", "sideways", "1"), "side 'sideways' is neither 'long' nor 'short'"),
    ],
)
async def test_a_bad_db_row_makes_only_its_account_unchecked(tmp_path, db, new_account, capsys, values, reason):
    spoiled, healthy = new_account("binance"), new_account("bybit")
    healthy.set_position("ETHUSDT", "long", Decimal("2"))
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(LOOSE_TABLE)
        bad_id = await conn.fetchval(
            "INSERT INTO loose (exchange, account, symbol, side, quantity, status, opened_at)"
            " VALUES ('binance', $1, $2, $3, $4, 'active', $5) RETURNING id",
            spoiled.name,
            *values,
            LONG_AGO,
        )
        await conn.execute(
            "INSERT INTO loose (exchange, account, symbol, side, quantity, status, opened_at)"
            " VALUES ('bybit', $1, 'SOLUSDT', 'long', '3', 'active', $2), ('bybit', $1, 'ETHUSDT', 'long', '1.5',"
            " 'active', $2)",
            healthy.name,
            LONG_AGO,
        )
    finally:
        await conn.close()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(loose_config(db, [spoiled, healthy])))
    code, out, err = await cli(capsys, "reconcile", "--config", config, "--json")
    assert code == 3, err
    report = json.loads(out)
    accounts = {a["account"]: a for a in report["accounts"]}
    assert accounts[spoiled.name]["status"] == "unchecked"
    assert accounts[spoiled.name]["error"].startswith(f"DB row #{bad_id} cannot be read: {reason}")
    assert accounts[spoiled.name]["failed"] == "db"
    assert accounts[healthy.name] == {"account": healthy.name, "exchange": "bybit", "status": "ok", "error": None}
    assert sorted((f["kind"], f["symbol"]) for f in report["findings"]) == [
        ("ghost", "SOLUSDT"),
        ("quantity_mismatch", "ETHUSDT"),
    ]
    assert "Traceback" not in err


async def test_unreadable_rows_raise_the_unchecked_account_alert(database_url, new_account):
    from services.findings import AlertPolicy
    from services.outbox import Destination
    from services.plain_text import notice_text
    from services.reconciler import Reconciler
    from services.runtime import Runtime
    from services.settings import Settings

    binance = new_account("binance")
    await prepare_database(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(LOOSE_TABLE)
        await conn.execute(
            "INSERT INTO loose (exchange, account, symbol, side, quantity, status)"
            " VALUES ('binance', $1, 'BTCUSDT', 'long', 'abc', 'active')",
            binance.name,
        )
    finally:
        await conn.close()
    settings = Settings(**loose_config(database_url, [binance]))
    async with Runtime(settings) as runtime:
        reconciler = Reconciler(runtime, [Destination("console", "-")], policy=AlertPolicy(unchecked_after=2))
        first = await reconciler.check()
        second = await reconciler.check()
    assert first.notices == ()
    [notice] = [notice_text(n) for n in second.notices]
    assert notice.startswith(f"{binance.name}: not checked since "), "the DB row failed, not the exchange"
    assert "DB row #1 cannot be read: quantity 'abc' is not a number" in notice


# -- the CLI is honest -----------------------------------------------------------------------------------------


async def test_json_with_fix_is_one_document_with_the_fixes(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("0.5"))
    ghost_id, _ = await insert_positions(
        db, [row(binance, "BTCUSDT", "long", "1"), row(binance, "ETHUSDT", "long", "1")]
    )
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, err = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert code == 1
    report = json.loads(out)  # exactly one document: json.loads refuses anything after it
    assert report["fixes"] == [
        {
            "position_id": str(ghost_id),
            "action": "close_ghost",
            "done": True,
            "status": "done",
            "message": f"position #{ghost_id} BTCUSDT LONG 1 marked closed",
        }
    ]
    assert f"fixed: position #{ghost_id} BTCUSDT LONG 1 marked closed" in err
    assert (await fetch_positions_table(db))[0]["exit_reason"] == GHOST_EXIT_REASON


async def test_json_with_fix_asks_on_stderr(tmp_path, db, new_account, capsys, monkeypatch):
    binance = new_account("binance")
    await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [binance])
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, out, err = await cli(capsys, "reconcile", "--config", config, "--json", "--fix")
    assert code == 1
    assert json.loads(out)["fixes"] == []
    assert "[y/N]" in err and "Nothing changed." in err


async def test_check_config_reports_every_problem_at_once(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "accounts:\n  - {name: x, exchange: kraken}\n  - {name: y, exchange: bybit, api_key: k, secret: s,"
        " timeout_s: -1}\nscan: {grace_s: -5}\n"
    )
    code, out, err = await cli(capsys, "check-config", "--config", config)
    assert (code, out) == (3, "")
    assert err.splitlines() == [
        "config: accounts[x].exchange: 'kraken' is not supported (binanceusdm, bybit)",
        "config: accounts[x].api_key: not set: give api_key, api_key_env or set RECONBOT_X_API_KEY",
        "config: accounts[x].secret: not set: give secret, secret_env or set RECONBOT_X_SECRET",
        "config: accounts[y].timeout_s: Input should be greater than 0 (got -1)",
        "config: scan.grace_s: Input should be greater than or equal to 0 (got -5)",
    ]


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("refused", "ConnectionRefusedError"),
        ("unknown host", "gaierror"),
        ("no such database", 'InvalidCatalogNameError: database "no_such_database_here" does not exist'),
    ],
)
async def test_check_config_fails_when_the_database_refuses(tmp_path, database_url, capsys, where, why):
    """A config that names a database reconbot cannot use is not OK: one line, exit 3, no password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    netloc = {
        "refused": "reconbot:pw-never-shown@127.0.0.1:1",
        "unknown host": "reconbot:pw-never-shown@no-such-host.invalid",
        "no such database": parts.netloc,
    }[where]
    path = "/no_such_database_here" if where == "no such database" else parts.path
    config = {"database": {"url": urlunsplit(parts._replace(netloc=netloc, path=path))}}
    config["accounts"] = [{"name": "a", "exchange": "bybit", "api_key": "k", "secret": "s"}]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    code, out, err = await cli(capsys, "check-config", "--config", tmp_path / "c.yaml")
    assert code == 3, (out, err)
    assert out == "config OK: 1 account(s): a\n"
    [line] = err.splitlines()
    assert line.startswith("error: database: cannot connect to PostgreSQL: ") and why in line, line
    assert "pw-never-shown" not in out + err


async def test_a_mapped_column_that_does_not_exist_is_one_line(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    config = config_dict(db, [binance])
    config["positions"] = {"columns": {"quantity": "qty"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    for command in ("scan", "reconcile", "closeghost 1"):
        code, out, err = await cli(capsys, *command.split(), "--config", path)
        assert (code, out) == (3, "")
        assert err.strip() == (
            "error: positions table positions lacks configured columns: quantity (qty); "
            "map them under positions.columns"
        )


async def test_a_database_error_during_a_command_is_one_line(tmp_path, db, new_account, capsys):
    binance = new_account("binance")
    [pid] = await insert_positions(db, [row(binance, "BTCUSDT", "long", "1")])
    conn = await asyncpg.connect(db)
    try:  # the status column holds a value its type cannot compare with the configured one
        await conn.execute("ALTER TABLE positions ALTER COLUMN status DROP DEFAULT")
        await conn.execute("ALTER TABLE positions ALTER COLUMN status TYPE boolean USING false")
    finally:
        await conn.close()
    config = write_config(tmp_path / "c.yaml", db, [binance])
    code, out, err = await cli(capsys, "reconcile", "--config", config)
    assert (code, out) == (3, "")
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert (await fetch_positions_table(db))[0]["id"] == pid


@pytest.mark.parametrize(
    "url",
    ["postgresql://user:hunter2@db.example:notaport/x", "postgresql://user:hunter2@[::1/x", "postgres://"],
)
async def test_a_malformed_database_url_is_one_line_without_the_password(tmp_path, new_account, capsys, url):
    binance = new_account("binance")
    config = write_config(tmp_path / "c.yaml", url, [binance])
    code, out, err = await cli(capsys, "scan", "--config", config)
    assert (code, out) == (3, "")
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "hunter2" not in err and "Traceback" not in err


async def test_an_odd_venue_row_spoils_only_its_own_account(tmp_path, db, new_account, capsys):
    odd, fine = new_account("binance"), new_account("bybit")
    odd.set_position("BTCUSDT", "long", Decimal("1"))
    fine.set_position("AVLUSDT", "long", Decimal("86"))
    odd.tamper("/fapi/v3/positionRisk", lambda rows: [*rows, {**rows[0], "positionAmt": "abc"}])
    await insert_positions(db, [row(odd, "BTCUSDT", "long", "1")])
    config = write_config(tmp_path / "c.yaml", db, [odd, fine])
    code, out, _ = await cli(capsys, "scan", "--config", config, "--json")
    report = json.loads(out)
    assert code == 2, "the other account's orphan is still found (and critical wins over unknown)"
    accounts = {a["account"]: a for a in report["accounts"]}
    assert accounts[odd.name]["status"] == "unchecked"
    assert "positionAmt 'abc', not a number" in accounts[odd.name]["error"]
    assert [(f["kind"], f["account"]) for f in report["findings"]] == [("orphan", fine.name)]
    code, out, _ = await cli(capsys, "reconcile", "--config", config, "--json", "--fix", "--yes")
    assert code == 3
    assert json.loads(out)["fixes"] == []
    assert (await fetch_positions_table(db))[0]["status"] == "active", "an unchecked account is never fixed"
