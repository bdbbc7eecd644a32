"""What every configuration section shares: unknown keys are errors, values are frozen, URLs are checked whole."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from yarl import URL


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_url(value: str | None, schemes: tuple[str, str]) -> str | None:
    if value is None:
        return value
    try:
        url = URL(value)
        valid = url.scheme in schemes and bool(url.host) and url.port is not None
    except (ValueError, TypeError):
        valid = False
    pattern = rf"^(?:{schemes[0]}|{schemes[1]})://[^/\s]+"
    if not valid or re.search(r"\s", value) or not re.match(pattern, value):
        article = "an" if schemes[0] == "http" else "a"
        raise ValueError(
            f"must be {article} {schemes[0]}:// or {schemes[1]}:// URL with a host (and an optional numeric port)"
        )
    return value.rstrip("/")


def http_url(value: str | None) -> str | None:
    """An http(s) base URL without a trailing slash, whose host and port parse, so no request built on it can
    fail later with an error that quotes the whole URL (a bot token included)."""
    return _base_url(value, ("http", "https"))


def ws_url(value: str | None) -> str | None:
    """A ws(s) base URL, checked as ``http_url`` is."""
    return _base_url(value, ("ws", "wss"))


BaseUrl = Annotated[str | None, AfterValidator(http_url)]
WsBaseUrl = Annotated[str | None, AfterValidator(ws_url)]
