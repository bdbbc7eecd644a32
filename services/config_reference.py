"""The README's configuration reference, generated from the settings models so it cannot drift from them.

python -m services.config_reference            # print the table
python -m services.config_reference --write     # refresh it in README.md
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from services.settings import ENV_PREFIX, Settings

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"
ENV_ONLY = {"telegram.token", "alerts.email.password"}


@dataclass(frozen=True)
class Row:
    key: str
    default: str
    env: str
    description: str


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model a field holds (directly, optionally or as a list), and whether it is a list."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin is list:
        model, _ = _model_in(typing.get_args(annotation)[0])
        return model, True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model, is_list = _model_in(arg)
            if model is not None:
                return model, is_list
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[]`" if not value else f"`{value}`"
    return f"`{value}`"


def rows(model: type[BaseModel] = Settings, prefix: str = "", env: str | None = ENV_PREFIX) -> list[Row]:
    found: list[Row] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        env_name = f"{env}{name.upper()}" if env is not None else None
        nested, is_list = _model_in(field.annotation)
        if nested is not None:
            if is_list:
                found += rows(nested, f"{key}[].", None)
            else:
                found += rows(nested, f"{key}.", f"{env_name}__" if env_name else None)
            continue
        description = (field.description or "").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        found.append(Row(key, _default(field), f"`{env_name}`" if env_name else "—", description))
    return found


def markdown() -> str:
    lines = [
        START,
        "| key | default | environment | meaning |",
        "|---|---|---|---|",
    ]
    for row in rows():
        env = row.env + (" (environment only)" if row.key in ENV_ONLY else "")
        lines.append(f"| `{row.key}` | {row.default} | {env} | {row.description} |")
    lines.append(END)
    return "\n".join(lines)


def replace_in(text: str) -> str:
    before, start, rest = text.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md lacks the {START} … {END} markers")
    return before + markdown() + after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="refresh the table in README.md")
    args = parser.parse_args(argv)
    if args.write:
        README.write_text(replace_in(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write(markdown() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
