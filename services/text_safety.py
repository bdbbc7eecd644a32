"""One rule for every place text from outside is shown (a trading bot's DB row, a venue's answer, a chat user's
name): control characters become visible escapes. A newline in a DB symbol then cannot start a line of its own
that passes for reconbot's words (``… INFO 🟢 All clear``) on the console, in the journal, in a Telegram alert or
an e-mail, nor break an e-mail header; a bidi override cannot reorder what follows it.

Escaped: C0 and C1 controls (``\\n`` ``\\r`` ``\\t`` by name, the rest as ``\\xNN``), the line and paragraph
separators U+2028/U+2029, and the bidi embeddings, overrides and isolates U+202A–U+202E, U+2066–U+2069 (as
``\\uNNNN``). Anything else, emoji and every script included, is shown as it is. Escaping twice changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape; one line whatever it held."""
    return _UNSAFE.sub(_visible, text)


def escape_lines(lines: list[str]) -> str:
    """Lines reconbot composed, each escaped on its own and then joined: the only line breaks are reconbot's."""
    return "\n".join(escape_controls(line) for line in lines)


class _EscapingRecordFactory:
    """Makes every log record's message one line: a record whose formatted message holds a control character
    carries the escaped message instead (arguments merged in). Records without one are left untouched, their
    arguments included; tracebacks stay as Python formats them."""

    def __init__(self, inner: Callable[..., logging.LogRecord]):
        self.inner = inner

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: logging reports it when the record is emitted, as it always has
            return record
        if _UNSAFE.search(message):
            record.msg, record.args = escape_controls(message), ()
        return record


def install_log_escaping() -> None:
    """Escape control characters in every log record of this process, reconbot's and its libraries' alike."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _EscapingRecordFactory):
        logging.setLogRecordFactory(_EscapingRecordFactory(current))
