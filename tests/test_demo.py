"""The demo runs the real pipeline end to end and shows every kind of finding and the unchecked account."""

from __future__ import annotations

import pytest

from demo.runner import DEFAULT_SCENARIO, ScenarioError, read_scenario, run_demo


async def test_demo_shows_every_kind_and_the_unchecked_account(tmp_path, database_url):
    lines: list[str] = []
    code = await run_demo(
        DEFAULT_SCENARIO, data_dir=tmp_path / "pg", database_url=database_url, rounds=1, say=lines.append
    )
    output = "\n".join(lines)
    assert code == 0
    assert "1 orphan, 1 ghost, 1 quantity mismatch" in output
    assert "ORPHAN  AVLUSDT LONG  on bybit-main (bybit)" in output
    assert "GHOST  BTCUSDT LONG  on binance-main (binanceusdm)" in output
    assert "DB id           #123" in output
    assert "QUANTITY MISMATCH  ETHUSDT LONG" in output
    assert "binance-sub   binanceusdm  UNCHECKED: timed out after 2s" in output
    assert "bybit-hedge   bybit        ok, 2 open position(s)" in output
    for alert in ("ORPHAN: open on the exchange", "GHOST: active in the DB", "QUANTITY MISMATCH: exchange and DB"):
        assert alert in output, "the console alerts show each kind"
    assert "UNCHECKED binance-sub: timed out after 2s" in output
    assert output.rstrip().endswith("demo: stopped")


def test_a_broken_scenario_is_a_clear_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("accounts: []\n")
    with pytest.raises(ScenarioError, match="needs an 'exchange' mapping"):
        read_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read"):
        read_scenario(tmp_path / "missing.yaml")
