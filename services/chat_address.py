"""Where a Telegram alert goes: a chat, or a topic of a forum group written ``chat_id:thread_id``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_ADDRESS = re.compile(r"^(-?\d{1,20})(?::(\d{1,20}))?$")


def normalize(value: Any) -> str:
    """``-1001234`` or ``"-1001234:7"`` as one canonical text; anything else is a clear error."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a chat id")
    text = str(value).strip()
    match = _ADDRESS.match(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a chat id or chat_id:thread_id")
    chat, thread = match.groups()
    if thread is not None and int(thread) <= 0:
        raise ValueError(f"{text!r}: a topic's thread id is a positive number")
    return f"{int(chat)}" if thread is None else f"{int(chat)}:{int(thread)}"


ChatAddress = Annotated[str, BeforeValidator(normalize)]


def split_address(address: str) -> tuple[int, int | None]:
    """The chat id and the topic's thread id (None for the chat itself)."""
    chat, _, thread = address.partition(":")
    return int(chat), int(thread) if thread else None


def chat_of(address: str) -> int:
    return split_address(address)[0]
