"""Configuration: YAML plus environment, validated with one line per problem naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
accounts:
  - name: binance-main
    exchange: binanceusdm
    api_key: k
    secret: s
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    return caught.value.problems


def test_minimal_config_gets_documented_defaults(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.database.url is None
    assert settings.data_dir == (tmp_path / "var/pgdata").resolve()
    assert settings.positions.table == "positions"
    assert settings.scan.grace_s == 60
    assert settings.scan.verify_delay_s == 2
    assert str(settings.scan.quantity_tolerance) == "0.001"
    assert settings.scan.auto_fix_ghosts is False
    account = settings.accounts[0]
    assert (account.db_exchange, account.db_account) == ("binance", "binance-main")
    assert account.credentials() == ("k", "s")


def test_shipped_config_names_environment_variables(monkeypatch):
    for name in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BYBIT_API_KEY", "BYBIT_API_SECRET"):
        monkeypatch.setenv(name, f"value-of-{name}")
    settings = load_settings(ROOT / "config.yaml")
    assert [a.name for a in settings.accounts] == ["binance-main", "bybit-main"]
    assert settings.account("bybit-main").credentials() == ("value-of-BYBIT_API_KEY", "value-of-BYBIT_API_SECRET")
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert all("api_key" not in a and "secret" not in a for a in shipped["accounts"])
    assert "url" not in shipped["database"]


def test_shipped_config_without_environment_names_each_missing_variable(monkeypatch):
    for name in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BYBIT_API_KEY", "BYBIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as caught:
        load_settings(ROOT / "config.yaml")
    assert caught.value.problems == [
        "accounts[binance-main].api_key: api_key_env names BINANCE_API_KEY, which is not set in the environment",
        "accounts[binance-main].secret: secret_env names BINANCE_API_SECRET, which is not set in the environment",
        "accounts[bybit-main].api_key: api_key_env names BYBIT_API_KEY, which is not set in the environment",
        "accounts[bybit-main].secret: secret_env names BYBIT_API_SECRET, which is not set in the environment",
    ]


def test_keys_from_reconbot_prefixed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONBOT_BYBIT_SUB_1_API_KEY", "env-key")
    monkeypatch.setenv("RECONBOT_BYBIT_SUB_1_SECRET", "env-secret")
    settings = load_settings(write(tmp_path, "accounts:\n  - {name: bybit-sub.1, exchange: bybit}\n"))
    assert settings.accounts[0].credentials() == ("env-key", "env-secret")


def test_missing_keys_say_where_they_may_come_from(tmp_path):
    assert problems(tmp_path, "accounts:\n  - {name: b, exchange: bybit}\n") == [
        "accounts[b].api_key: not set: give api_key, api_key_env or set RECONBOT_B_API_KEY",
        "accounts[b].secret: not set: give secret, secret_env or set RECONBOT_B_SECRET",
    ]


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONBOT_SCAN__GRACE_S", "5")
    monkeypatch.setenv("RECONBOT_DATABASE__URL", "postgresql://u:pw@db/x")
    settings = load_settings(write(tmp_path, MINIMAL + "scan:\n  grace_s: 30\n  verify_delay_s: 1\n"))
    assert settings.scan.grace_s == 5
    assert settings.scan.verify_delay_s == 1
    assert settings.database.url.get_secret_value() == "postgresql://u:pw@db/x"
    assert "pw" not in repr(settings)


def test_every_problem_is_one_line_naming_its_key(tmp_path):
    text = """
database:
  url: mysql://x
  pool_sise: 3
positions:
  table: "positions; DROP TABLE users"
  columns:
    symbol: "sym bol"
accounts:
  - name: binance-main
    exchange: kraken
    api_key: k
    secret: s
  - name: bybit-main
    exchange: bybit
    api_key: k
    secret: s
    api_base_url: ftp://example
    ws_base_url: https://example
    grace_s: -5
    timeout_s: 0
scan:
  grace_s: -1
  quantity_tolerance: 2
  stream_settle_s: 60
  db_poll_s: -1
"""
    assert problems(tmp_path, text) == [
        "database.url: must start with postgresql:// or postgres://",
        "database.pool_sise: unknown key",
        "positions.table: table name part 'positions; DROP TABLE users' is not a plain SQL identifier"
        " (letters, digits, _ and $; at most 63)",
        "positions.columns: column symbol 'sym bol' is not a plain SQL identifier"
        " (letters, digits, _ and $; at most 63)",
        "accounts[binance-main].exchange: 'kraken' is not supported (binanceusdm, bybit)",
        "accounts[bybit-main].api_base_url: must be an http:// or https:// URL with a host"
        " (and an optional numeric port)",
        "accounts[bybit-main].ws_base_url: must be a ws:// or wss:// URL with a host (and an optional numeric port)",
        "accounts[bybit-main].grace_s: Input should be greater than or equal to 0 (got -5)",
        "accounts[bybit-main].timeout_s: Input should be greater than 0 (got 0)",
        "scan.grace_s: Input should be greater than or equal to 0 (got -1)",
        "scan.quantity_tolerance: Input should be less than 1 (got 2)",
        "scan.db_poll_s: Input should be greater than or equal to 0 (got -1)",
        "scan.stream_settle_s: Input should be less than or equal to 10 (got 60)",
    ]


def test_duplicate_account_names_are_refused(tmp_path):
    text = MINIMAL + "  - {name: binance-main, exchange: bybit, api_key: k, secret: s}\n"
    assert problems(tmp_path, text) == ["config: account names must be unique; repeated: binance-main"]


def test_shared_exchange_without_account_column_is_refused(tmp_path):
    text = (
        "positions:\n  columns:\n    account: null\n"
        "accounts:\n"
        "  - {name: a, exchange: bybit, api_key: k, secret: s}\n"
        "  - {name: b, exchange: bybit, api_key: k, secret: s}\n"
    )
    assert problems(tmp_path, text) == [
        "config: accounts share db_exchange bybit but positions.columns.account is null, "
        "so their DB rows cannot be told apart"
    ]


def test_testnet_and_demo_trading_exclude_each_other(tmp_path):
    text = MINIMAL + "    testnet: true\n    demo_trading: true\n"
    assert problems(tmp_path, text) == [
        "accounts[binance-main]: testnet and demo_trading exclude each other; choose one"
    ]


def test_no_accounts_is_an_error(tmp_path):
    assert problems(tmp_path, "scan: {grace_s: 1}\n") == ["accounts: required"]
    assert problems(tmp_path, "accounts: []\n") == [
        "accounts: List should have at least 1 item after validation, not 0"
    ]


def test_yaml_syntax_error_names_the_line(tmp_path):
    [line] = problems(tmp_path, "accounts:\n  - name: [unclosed\n")
    assert line.startswith(f"{tmp_path / 'config.yaml'}: line 3")
    assert "not valid YAML" in line


def test_top_level_must_be_a_mapping(tmp_path):
    assert problems(tmp_path, "- just\n- a list\n") == [
        f"{tmp_path / 'config.yaml'}: the top level must be a mapping of sections"
    ]


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.yaml")
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_schema_qualified_table_is_quoted(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL + "positions:\n  table: trading.Positions\n"))
    assert settings.positions.qualified_table == '"trading"."Positions"'


def test_secrets_never_appear_in_repr(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL.replace("api_key: k", "api_key: AKIA-very-secret")))
    assert "AKIA-very-secret" not in repr(settings)
    assert "AKIA-very-secret" not in str(settings.model_dump())
    assert "AKIA-very-secret" in settings.secrets()


def test_check_config_command_prints_problems_and_fails(tmp_path):
    bad = write(tmp_path, "accounts:\n  - {name: x, exchange: kraken, api_key: k, secret: s}\n")
    run = subprocess.run(
        [sys.executable, "main.py", "check-config", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 3
    assert run.stdout == ""
    assert run.stderr.strip() == "config: accounts[x].exchange: 'kraken' is not supported (binanceusdm, bybit)"

    good = write(tmp_path, MINIMAL)
    run = subprocess.run(
        [sys.executable, "main.py", "check-config", "--config", str(good)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "config OK: 1 account(s): binance-main"


def test_telegram_token_comes_from_the_environment_only(tmp_path, monkeypatch):
    text = MINIMAL + "telegram:\n  token: '123:abc'\n"
    assert problems(tmp_path, text) == [
        "telegram.token: keep the bot token out of the file; set RECONBOT_TELEGRAM__TOKEN instead"
    ]
    monkeypatch.setenv("RECONBOT_TELEGRAM__TOKEN", "123456:AAE-secret_token")
    settings = load_settings(write(tmp_path, MINIMAL + "telegram:\n  operators: [1]\n  alert_chat_ids: [-100]\n"))
    assert settings.telegram.enabled
    assert settings.telegram.token.get_secret_value() == "123456:AAE-secret_token"
    assert "AAE-secret_token" not in repr(settings)
    assert "123456:AAE-secret_token" in settings.secrets()
    assert (settings.telegram.operators, settings.telegram.alert_chat_ids) == ([1], ["-100"])


def test_telegram_settings_are_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONBOT_TELEGRAM__TOKEN", "not a token")
    text = MINIMAL + "telegram:\n  operators: [alice]\n  api_base_url: telegram.local\n  confirm_ttl_s: 0\n"
    assert problems(tmp_path, text) == [
        "telegram.token: does not look like a bot token from @BotFather (digits:letters)",
        "telegram.operators[0]: Input should be a valid integer, unable to parse string as an integer (got 'alice')",
        "telegram.api_base_url: must be an http:// or https:// URL with a host (and an optional numeric port)",
        "telegram.confirm_ttl_s: Input should be greater than 0 (got 0)",
    ]


def test_notify_takes_kinds_and_causes(tmp_path):
    text = MINIMAL + "alerts:\n  notify: {ghost: silent, liquidation: loud, adl: off}\n"
    settings = load_settings(write(tmp_path, text))
    assert {str(k): str(v) for k, v in settings.alerts.notify.items()} == {
        "ghost": "silent",
        "liquidation": "loud",
        "adl": "off",
    }


def test_an_unknown_notify_key_names_what_it_may_be(tmp_path):
    found = problems(tmp_path, MINIMAL + "alerts:\n  notify: {liquidaton: loud, ghost: lod}\n")
    assert found == [
        "alerts.notify: unknown kind or cause 'liquidaton'; kinds: orphan, ghost, quantity_mismatch, "
        "unknown_symbol, unprotected, stray_order; causes: liquidation, adl, stop_loss, take_profit, "
        "manual_or_other, settlement, unknown",
    ]
    assert problems(tmp_path, MINIMAL + "alerts:\n  notify: {ghost: lod}\n") == [
        "alerts.notify.ghost: Input should be 'loud', 'silent' or 'off' (got 'lod')"
    ]
