"""What every configuration section shares: unknown keys are errors, values are frozen, URLs are checked whole."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from yarl import URL


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def http_url(value: str | None) -> str | None:
    """An http(s) base URL without a trailing slash, whose host and port parse, so no request built on it can
    fail later with an error that quotes the whole URL (a bot token included)."""
    if value is None:
        return value
    try:
        url = URL(value)
        valid = url.scheme in ("http", "https") and bool(url.host) and url.port is not None
    except (ValueError, TypeError):
        valid = False
    if not valid or re.search(r"\s", value) or not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL with a host (and an optional numeric port)")
    return value.rstrip("/")


BaseUrl = Annotated[str | None, AfterValidator(http_url)]
