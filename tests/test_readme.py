"""The README documents what exists: its configuration reference is the settings models' own."""

from __future__ import annotations

from pathlib import Path

from services import config_reference
from services.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_configuration_reference_is_generated_from_the_models():
    assert config_reference.replace_in(README) == README, "run: python -m services.config_reference --write"


def test_every_settings_key_is_in_the_reference():
    keys = {row.key for row in config_reference.rows()}
    assert {"database.url", "accounts[].api_key_env", "telegram.token", "alerts.email.recipients", "ops.listen"} <= keys
    for section in Settings.model_fields:
        if section != "config_dir":
            assert any(key.startswith(section) for key in keys), section
    for key in keys:
        assert f"| `{key}` |" in README


def test_quick_start_names_the_two_commands_ci_runs():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make demo" in README and "make test" in README
