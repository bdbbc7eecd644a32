"""A loopback Telegram Bot API server for end-to-end tests of aiogram bots.

The emulator speaks the HTTP side of the Bot API (``{base}/bot{token}/{method}``) closely enough
for a real :class:`aiogram.Bot` to run against it unchanged::

    tg = BotApiEmulator(token="123456:TEST", bot_username="reconbot_test")
    base = await tg.start()                          # "http://127.0.0.1:PORT"
    session = AiohttpSession(api=TelegramAPIServer.from_base(base))
    bot = Bot("123456:TEST", session=session)

Requests may be ``application/x-www-form-urlencoded`` (what aiogram sends when no file is attached),
``multipart/form-data``, ``application/json`` or a plain query string.  Complex form fields
(``reply_markup``, ``entities``, ``allowed_updates``, ``commands``, ``scope``, ...) are JSON strings,
exactly as aiogram encodes them; integers arrive as decimal strings and booleans as ``true``/``false``.
Every response has the Bot API shape ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}`` with the HTTP status equal
to ``error_code``, so aiogram raises its usual exceptions (``TelegramBadRequest``,
``TelegramRetryAfter``, ``TelegramServerError``, ``TelegramUnauthorizedError``, ...).

Text rules, as Telegram applies them:

* ``parse_mode`` ``HTML``, ``MarkdownV2`` and ``Markdown`` are parsed with TDLib's rules; the stored and
  returned ``text`` is the plain text after parsing, with ``entities`` whose offsets and lengths are
  counted in UTF-16 code units.  The markup as sent is kept as :attr:`StoredMessage.raw_text`.
* Parse failures answer ``400 Bad Request: can't parse entities: <TDLib's reason>``.
* HTML is stricter than Telegram in one respect, on purpose: a bare ``&`` that does not start
  ``&lt;``, ``&gt;``, ``&amp;``, ``&quot;`` or a numeric reference is rejected (Telegram keeps it as
  literal text; an unescaped ``&`` means the bot forgot to escape user data).  Turn it off with
  ``BotApiEmulator(strict_html_ampersand=False)``.  Inside attribute values bare ``&`` is accepted.
* Leading and trailing whitespace of the parsed text is trimmed and entities are clipped to match.
  A text that is empty after that answers ``message text is empty``.
* The 4096 limit is checked after parsing and trimming, counting UTF-16 code units (an emoji outside the
  Basic Multilingual Plane counts 2).  That is never more lenient than counting characters.
* Automatic entities (urls, mentions, hashtags, ...) are not detected in bot messages.

Fault injection: :meth:`BotApiEmulator.fail` queues error answers; faults never touch ``getUpdates``
unless that method is named explicitly, so polling keeps running through a ``sendMessage`` outage.
``tg.down = True`` makes the server drop every request (including ``getUpdates``): with the default
``down_mode = "reset"`` the TCP connection is aborted after the request is read, which aiogram reports as
``TelegramNetworkError`` ("ServerDisconnectedError: Server disconnected"); with ``down_mode = "502"`` it
answers ``502 Bad Gateway`` in Bot API JSON, which aiogram raises as ``TelegramServerError``.

The test-control methods are synchronous and must be called from the event loop thread that runs
the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import itertools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

__all__ = [
    "ApiCall",
    "BotApiEmulator",
    "CallbackQueryRecord",
    "EntityParseError",
    "Fault",
    "MessageVersion",
    "StoredMessage",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "parse_text",
    "utf16_len",
]

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_TEXT = 200
MAX_INLINE_BUTTONS = 100

ERR_UNAUTHORIZED = "Unauthorized"
ERR_NOT_FOUND = "Not Found"
ERR_TEXT_EMPTY = "Bad Request: message text is empty"
ERR_TEXT_TOO_LONG = "Bad Request: message is too long"
ERR_CHAT_NOT_FOUND = "Bad Request: chat not found"
ERR_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
ERR_DELETE_NOT_FOUND = "Bad Request: message to delete not found"
ERR_REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
ERR_CANT_EDIT = "Bad Request: message can't be edited"
ERR_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
ERR_BUTTON_DATA = "Bad Request: BUTTON_DATA_INVALID"
ERR_BUTTON_URL = "Bad Request: BUTTON_URL_INVALID"
ERR_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
ERR_PARSE_ENTITIES = "Bad Request: can't parse entities: "
ERR_MARKUP_JSON = "Bad Request: can't parse reply keyboard markup JSON object"
ERR_CONFLICT_POLL = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
ERR_CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
_DEFAULT_UPDATE_TYPES = frozenset(_UPDATE_TYPES) - {"chat_member", "message_reaction", "message_reaction_count"}

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "reply_parameters",
        "link_preview_options",
        "message_ids",
    }
)
_INT_FIELDS = frozenset(
    {
        "message_id",
        "offset",
        "limit",
        "timeout",
        "message_thread_id",
        "reply_to_message_id",
        "cache_time",
        "user_id",
        "from_chat_id",
        "max_connections",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "allow_paid_broadcast",
    }
)
_JSON_ERRORS = {
    "reply_markup": ERR_MARKUP_JSON,
    "entities": "Bad Request: can't parse entities JSON object",
    "allowed_updates": "Bad Request: can't parse allowed_updates JSON array",
}

_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_BOT_COMMAND_IN_TEXT_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_TOKEN_RE = re.compile(r"(\d+):[A-Za-z0-9_-]+")


# ---------------------------------------------------------------------------------------------------------
# Text utilities
# ---------------------------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit of Bot API entity offsets and lengths."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _u16(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


class EntityParseError(ValueError):
    """Markup rejected by the parser; ``str(err)`` is TDLib's reason (without the Bot API prefix)."""


# TDLib's is_space(); NUL doubles as the end-of-text sentinel returned by _at().
_SPACE = " \t\r\n\v\0"
_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_ENTITY_PRIORITY = {
    "bold": 90,
    "italic": 91,
    "code": 20,
    "pre": 11,
    "text_link": 49,
    "text_mention": 49,
    "underline": 92,
    "strikethrough": 93,
    "blockquote": 0,
    "expandable_blockquote": 0,
    "spoiler": 94,
    "custom_emoji": 99,
}
_LINK_SCHEMES = frozenset({"http", "https", "ftp", "tg", "ton", "tonsite"})
_USER_LINK_RE = re.compile(r"(?i)^tg:(?://)?user\?id=(\d+)$")
_HOST_LABEL_RE = re.compile(r"(?i)^(?!-)[a-z0-9\u00a1-\uffff-]{1,63}(?<!-)$")
_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def _at(text: str, index: int) -> str:
    return text[index] if index < len(text) else "\0"


def _entity_sort_key(entity: dict[str, Any]) -> tuple[int, int, int]:
    priority = _ENTITY_PRIORITY.get(entity["type"], 50)
    if entity["type"] == "pre" and entity.get("language"):
        priority = 10
    return entity["offset"], -entity["length"], priority


def _sorted_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entities, key=_entity_sort_key)


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    """TDLib's decode_html_entity: ``(character, next position)`` or None when ``&`` starts no entity."""
    end = pos + 1
    if _at(text, end) == "#":
        end += 1
        value = 0
        if _at(text, end) == "x":
            end += 1
            while _at(text, end) in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while "0" <= _at(text, end) <= "9":
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        while _at(text, end).isascii() and _at(text, end).isalpha():
            end += 1
        name = text[pos + 1 : end]
        mapped = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(name)
        if mapped is None:
            return None
        char = mapped
    if _at(text, end) == ";":
        end += 1
    return char, end


def _link_user_id(url: str) -> int | None:
    match = _USER_LINK_RE.match(url.strip())
    if match is None:
        return None
    user_id = int(match.group(1))
    return user_id or None


def _valid_host(host: str) -> bool:
    hostname = host.rsplit("@", 1)[-1]
    if hostname.startswith("["):
        return hostname.endswith("]") or "]:" in hostname
    if ":" in hostname:
        hostname, port = hostname.rsplit(":", 1)
        if not port.isdigit():
            return False
    hostname = hostname.rstrip(".")
    if _IPV4_RE.match(hostname):
        return all(int(part) < 256 for part in hostname.split("."))
    labels = hostname.split(".")
    if len(labels) < 2 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        return False
    tld = labels[-1]
    return len(tld) >= 2 and (tld.isalpha() or tld.lower().startswith("xn--"))


def _check_link(url: str) -> str | None:
    """Normalize a link the way Telegram does for text links and URL buttons; None when it is rejected."""
    url = url.strip()
    if not url or any(ch.isspace() for ch in url):
        return None
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*):(//)?", url)
    if match is not None and not (match.group(2) is None and url[match.end() : match.end() + 1].isdigit()):
        scheme = match.group(1).lower()
        if scheme not in _LINK_SCHEMES:
            return None
        if scheme in {"tg", "ton", "tonsite"}:
            return url if len(url) > match.end() else None
        if match.group(2) is None:
            return None
        rest = url[match.end() :]
    else:
        scheme = "http"
        rest = url
    host_end = len(rest)
    for separator in "/?#":
        index = rest.find(separator)
        if index != -1:
            host_end = min(host_end, index)
    host, tail = rest[:host_end], rest[host_end:]
    if not host or not _valid_host(host):
        return None
    if not tail.startswith("/"):
        tail = "/" + tail
    return f"{scheme}://{host}{tail}"


def _link_entity(offset: int, length: int, url: str) -> dict[str, Any] | None:
    user_id = _link_user_id(url)
    if user_id is not None:
        return {
            "type": "text_mention",
            "offset": offset,
            "length": length,
            "user": {"id": user_id, "is_bot": False, "first_name": ""},
        }
    normalized = _check_link(url)
    if normalized is None:
        return None
    return {"type": "text_link", "offset": offset, "length": length, "url": normalized}


def _check_unicode(text: str) -> None:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched "
            "surrogate code units"
        )


@dataclass
class _HtmlOpen:
    name: str
    argument: str
    offset: int
    out_len: int


def parse_html(markup: str, *, strict_ampersand: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Parse Bot API HTML into ``(plain text, entities)``; raises :class:`EntityParseError`.

    Follows TDLib's ``parse_html``: supported tags are b/strong, i/em, u/ins, s/strike/del,
    span class="tg-spoiler", tg-spoiler, a href, tg-emoji emoji-id, code (class="language-x"), pre,
    blockquote (expandable); entities ``&lt; &gt; &amp; &quot;`` and numeric references.
    ``strict_ampersand`` rejects a bare ``&`` in text content.
    """
    n = len(markup)
    out: list[str] = []
    u16 = 0
    stack: list[_HtmlOpen] = []
    entities: list[dict[str, Any]] = []
    i = 0

    def fail(message: str) -> EntityParseError:
        return EntityParseError(message)

    def skip_spaces(k: int) -> int:
        while k < n and markup[k] in _SPACE:
            k += 1
        return k

    while i < n:
        c = markup[i]
        if c == "&":
            decoded = _decode_html_entity(markup, i)
            if decoded is not None:
                char, i = decoded
                out.append(char)
                u16 += _u16(char)
                continue
            if strict_ampersand:
                raise fail(f'Character "&" must be escaped as "&amp;" at byte offset {_byte_offset(markup, i)}')
        if c != "<":
            out.append(c)
            u16 += _u16(c)
            i += 1
            continue

        begin = i
        i += 1
        if _at(markup, i) != "/":
            while _at(markup, i) not in _SPACE and _at(markup, i) != ">":
                i += 1
            if i >= n:
                raise fail(f"Unclosed start tag at byte offset {_byte_offset(markup, begin)}")
            name = markup[begin + 1 : i].lower()
            if name not in _HTML_TAGS:
                raise fail(f'Unsupported start tag "{name}" at byte offset {_byte_offset(markup, begin)}')
            argument = ""
            while _at(markup, i) != ">":
                i = skip_spaces(i)
                if i >= n:
                    raise fail(f"Unclosed start tag at byte offset {_byte_offset(markup, begin)}")
                if markup[i] == ">":
                    break
                attribute_begin = i
                while i < n and markup[i] not in _SPACE and markup[i] not in "=>":
                    i += 1
                attribute = markup[attribute_begin:i].lower()
                if not attribute:
                    raise fail(f'Empty attribute name in the tag "{name}" at byte offset {_byte_offset(markup, begin)}')
                i = skip_spaces(i)
                if _at(markup, i) != "=":
                    if name == "blockquote" and attribute == "expandable":
                        argument = "1"
                    continue
                i = skip_spaces(i + 1)
                if i >= n:
                    raise fail(f'Unclosed start tag "{name}" at byte offset {_byte_offset(markup, begin)}')
                if markup[i] not in "'\"":
                    token_begin = i
                    while i < n and ((markup[i].isascii() and markup[i].isalnum()) or markup[i] in ".-"):
                        i += 1
                    value = markup[token_begin:i].lower()
                    if i < n and markup[i] not in _SPACE and markup[i] != ">":
                        raise fail(f"Unexpected end of name token at byte offset {_byte_offset(markup, token_begin)}")
                else:
                    quote = markup[i]
                    i += 1
                    parts: list[str] = []
                    while i < n and markup[i] != quote:
                        if markup[i] == "&":
                            decoded = _decode_html_entity(markup, i)
                            if decoded is not None:
                                parts.append(decoded[0])
                                i = decoded[1]
                                continue
                        parts.append(markup[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(parts)
                if i >= n:
                    raise fail(f"Unclosed start tag at byte offset {_byte_offset(markup, begin)}")
                if name == "a" and attribute == "href":
                    argument = value
                elif name == "code" and attribute == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif name == "span" and attribute == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif name == "tg-emoji" and attribute == "emoji-id":
                    argument = value
                elif name == "blockquote" and attribute == "expandable":
                    argument = "1"
            if name == "span" and argument != "spoiler":
                raise fail(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(markup, begin)}')
            stack.append(_HtmlOpen(name, argument, u16, len(out)))
            i += 1
            continue

        if not stack:
            raise fail(f"Unexpected end tag at byte offset {_byte_offset(markup, begin)}")
        while _at(markup, i) not in _SPACE and _at(markup, i) != ">":
            i += 1
        end_name = markup[begin + 2 : i].lower()
        i = skip_spaces(i)
        if _at(markup, i) != ">":
            raise fail(f"Unclosed end tag at byte offset {_byte_offset(markup, begin)}")
        i += 1
        top = stack.pop()
        if end_name and end_name != top.name:
            raise fail(
                f"Unmatched end tag at byte offset {_byte_offset(markup, begin)}, "
                f'expected "</{top.name}>", found "</{end_name}>"'
            )
        length = u16 - top.offset
        if length <= 0:
            continue
        offset = top.offset
        simple = {
            "i": "italic",
            "em": "italic",
            "b": "bold",
            "strong": "bold",
            "s": "strikethrough",
            "strike": "strikethrough",
            "del": "strikethrough",
            "u": "underline",
            "ins": "underline",
            "tg-spoiler": "spoiler",
            "span": "spoiler",
        }
        if top.name in simple:
            entities.append({"type": simple[top.name], "offset": offset, "length": length})
        elif top.name == "tg-emoji":
            if not top.argument.isdigit() or int(top.argument) == 0:
                raise fail("Invalid custom emoji identifier specified")
            entities.append(
                {"type": "custom_emoji", "offset": offset, "length": length, "custom_emoji_id": top.argument}
            )
        elif top.name == "a":
            url = top.argument or "".join(out[top.out_len :])
            entity = _link_entity(offset, length, url)
            if entity is not None:
                entities.append(entity)
        elif top.name == "pre":
            last = entities[-1] if entities else None
            if (
                last is not None
                and last["type"] == "code"
                and last["offset"] == offset
                and last["length"] == length
                and last.get("_language")
            ):
                entities[-1] = {"type": "pre", "offset": offset, "length": length, "language": last["_language"]}
            else:
                entities.append({"type": "pre", "offset": offset, "length": length})
        elif top.name == "code":
            last = entities[-1] if entities else None
            if (
                last is not None
                and last["type"] == "pre"
                and last["offset"] == offset
                and last["length"] == length
                and top.argument
            ):
                last["language"] = top.argument
            else:
                entities.append({"type": "code", "offset": offset, "length": length, "_language": top.argument})
        elif top.name == "blockquote":
            kind = "expandable_blockquote" if top.argument == "1" else "blockquote"
            entities.append({"type": kind, "offset": offset, "length": length})

    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    for entity in entities:
        entity.pop("_language", None)
    text = "".join(out)
    _check_unicode(text)
    return text, _sorted_entities(entities)


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


@dataclass
class _MdOpen:
    type: str
    argument: str
    offset: int
    byte_offset: int
    out_len: int

    @property
    def display(self) -> str:
        if self.type == "pre" and self.argument:
            return "PreCode"
        return _MDV2_NAMES[self.type]


@dataclass
class _Quote:
    offset: int
    line_len: int
    depth: int
    expandable: bool = False
    closing: bool = False


def _read_md_url(markup: str, i: int) -> tuple[str, int]:
    """Read a ``(url)`` body starting after ``(``; returns the url and the index of ``)``."""
    n = len(markup)
    begin = i
    url: list[str] = []
    while i < n and markup[i] != ")":
        if markup[i] == "\\" and 0 < ord(_at(markup, i + 1)) <= 126:
            url.append(markup[i + 1])
            i += 2
            continue
        url.append(markup[i])
        i += 1
    if i >= n:
        raise EntityParseError(f"Can't find end of a URL at byte offset {_byte_offset(markup, begin)}")
    return "".join(url), i


def _custom_emoji_id(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() != "tg" or parts.netloc.lower() != "emoji" or parts.path not in ("", "/"):
        return None
    values = parse_qs(parts.query).get("id")
    if not values or not values[0].isdigit() or values[0].startswith("0"):
        return None
    return values[0]


def _pre_language(markup: str, i: int) -> tuple[str, int]:
    """After an opening ```: the language (if any) and the index where the pre text starts."""
    n = len(markup)
    language = ""
    language_end = i
    while _at(markup, language_end) not in _SPACE and _at(markup, language_end) != "`":
        language_end += 1
    if i != language_end and language_end < n and markup[language_end] != "`":
        language = markup[i:language_end]
        i = language_end
    if _at(markup, i) in "\r\n" and i < n:
        if _at(markup, i + 1) in "\r\n" and i + 1 < n and markup[i] != markup[i + 1]:
            i += 2
        else:
            i += 1
    return language, i


def parse_markdown_v2(markup: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Bot API MarkdownV2 into ``(plain text, entities)``; raises :class:`EntityParseError`."""
    n = len(markup)
    out: list[str] = []
    u16 = 0
    stack: list[_MdOpen] = []
    entities: list[dict[str, Any]] = []
    quote: _Quote | None = None
    i = 0

    def in_code() -> bool:
        return bool(stack) and stack[-1].type in ("code", "pre")

    def finish_quote(current: _Quote) -> None:
        if len(stack) > current.depth:
            top = stack[-1]
            raise EntityParseError(f"Can't find end of {top.display} entity at byte offset {top.byte_offset}")
        length = u16 - current.offset
        if length > 0:
            kind = "expandable_blockquote" if current.expandable else "blockquote"
            entities.append({"type": kind, "offset": current.offset, "length": length})

    while i < n:
        c = markup[i]
        if not in_code():
            if quote is not None and len(out) > quote.line_len and out[-1] == "\n":
                if c == ">" and not quote.closing:
                    quote.line_len = len(out)
                    i += 1
                    continue
                finish_quote(quote)
                quote = None
            if quote is None and (not out or out[-1] in "\r\n") and (c == ">" or markup.startswith("**>", i)):
                i += 3 if c == "*" else 1
                quote = _Quote(offset=u16, line_len=len(out), depth=len(stack))
                continue

        if c == "\\" and 0 < ord(_at(markup, i + 1)) <= 126:
            out.append(markup[i + 1])
            u16 += 1
            i += 2
            continue

        reserved = "`" if in_code() else _MDV2_RESERVED
        if c not in reserved:
            out.append(c)
            u16 += _u16(c)
            i += 1
            continue

        top_type = stack[-1].type if stack else None
        if (
            c == "|"
            and _at(markup, i + 1) == "|"
            and quote is not None
            and top_type != "spoiler"
            and _at(markup, i + 2) in "\r\n\0"
        ):
            quote.expandable = True
            quote.closing = True
            i += 2
            continue

        nxt = _at(markup, i + 1)
        is_end = {
            "bold": c == "*",
            "italic": c == "_" and nxt != "_",
            "code": c == "`",
            "pre": c == "`" and nxt == "`" and _at(markup, i + 2) == "`",
            "text_link": c == "]",
            "custom_emoji": c == "]",
            "underline": c == "_" and nxt == "_",
            "strikethrough": c == "~",
            "spoiler": c == "|" and nxt == "|",
        }.get(top_type or "", False)

        if not is_end:
            begin = i
            argument = ""
            if c == "_":
                kind = "underline" if nxt == "_" else "italic"
                i += 2 if nxt == "_" else 1
            elif c == "*":
                kind = "bold"
                i += 1
            elif c == "~":
                kind = "strikethrough"
                i += 1
            elif c == "|" and nxt == "|":
                kind = "spoiler"
                i += 2
            elif c == "[":
                kind = "text_link"
                i += 1
            elif c == "`":
                if nxt == "`" and _at(markup, i + 2) == "`":
                    kind = "pre"
                    argument, i = _pre_language(markup, i + 3)
                else:
                    kind = "code"
                    i += 1
            elif c == "!" and nxt == "[":
                kind = "custom_emoji"
                i += 2
            else:
                raise EntityParseError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
            stack.append(_MdOpen(kind, argument, u16, _byte_offset(markup, begin), len(out)))
            continue

        top = stack.pop()
        skip = u16 == top.offset
        entity: dict[str, Any] | None = {"type": top.type, "offset": top.offset, "length": u16 - top.offset}
        if top.type in ("bold", "italic", "code", "strikethrough"):
            i += 1
        elif top.type in ("underline", "spoiler"):
            i += 2
        elif top.type == "pre":
            i += 3
            if top.argument:
                entity = {**entity, "language": top.argument}
        elif top.type == "text_link":
            i += 1
            if _at(markup, i) == "(" and i < n:
                url, i = _read_md_url(markup, i + 1)
                i += 1
            else:
                url = "".join(out[top.out_len :])
            entity = _link_entity(top.offset, u16 - top.offset, url)
        else:
            i += 1
            if _at(markup, i) != "(" or i >= n:
                raise EntityParseError("The entity must contain a tg://emoji or tg://time URL")
            url, i = _read_md_url(markup, i + 1)
            i += 1
            emoji_id = _custom_emoji_id(url)
            if emoji_id is None:
                raise EntityParseError("Invalid tg://emoji or tg://time URL specified")
            entity = {**entity, "custom_emoji_id": emoji_id}
        if not skip and entity is not None:
            entities.append(entity)

    if quote is not None:
        finish_quote(quote)
    if stack:
        top = stack[-1]
        raise EntityParseError(f"Can't find end of {top.display} entity at byte offset {top.byte_offset}")
    text = "".join(out)
    _check_unicode(text)
    return text, _sorted_entities(entities)


def parse_markdown(markup: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse legacy Bot API Markdown into ``(plain text, entities)``; raises :class:`EntityParseError`."""
    n = len(markup)
    out: list[str] = []
    u16 = 0
    entities: list[dict[str, Any]] = []
    i = 0
    while i < n:
        c = markup[i]
        if c == "\\" and _at(markup, i + 1) in "_*`[" and i + 1 < n:
            out.append(markup[i + 1])
            u16 += 1
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            u16 += _u16(c)
            i += 1
            continue
        begin = i
        end_char = "]" if c == "[" else c
        i += 1
        is_pre = False
        language = ""
        if c == "`" and _at(markup, i) == "`" and _at(markup, i + 1) == "`":
            is_pre = True
            language, i = _pre_language(markup, i + 2)
        start_len = len(out)
        start = u16
        while i < n and (
            markup[i] != end_char or (is_pre and not (_at(markup, i + 1) == "`" and _at(markup, i + 2) == "`"))
        ):
            out.append(markup[i])
            u16 += _u16(markup[i])
            i += 1
        if i >= n:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {_byte_offset(markup, begin)}"
            )
        length = u16 - start
        if length > 0:
            if c == "_":
                entities.append({"type": "italic", "offset": start, "length": length})
            elif c == "*":
                entities.append({"type": "bold", "offset": start, "length": length})
            elif c == "[":
                if _at(markup, i + 1) == "(":
                    i += 2
                    url_chars: list[str] = []
                    while i < n and markup[i] != ")":
                        url_chars.append(markup[i])
                        i += 1
                    url = "".join(url_chars)
                else:
                    url = "".join(out[start_len:])
                entity = _link_entity(start, length, url)
                if entity is not None:
                    entities.append(entity)
            elif is_pre:
                pre: dict[str, Any] = {"type": "pre", "offset": start, "length": length}
                if language:
                    pre["language"] = language
                entities.append(pre)
            else:
                entities.append({"type": "code", "offset": start, "length": length})
        if is_pre:
            i += 2
        i += 1
    text = "".join(out)
    _check_unicode(text)
    return text, _sorted_entities(entities)


_PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}


def parse_text(
    text: str, parse_mode: str | None, *, strict_html_ampersand: bool = True
) -> tuple[str, list[dict[str, Any]]]:
    """Parse ``text`` for ``parse_mode`` (None or "" leaves it as is); raises :class:`EntityParseError`
    for malformed markup and :class:`ValueError` for an unknown parse mode."""
    if not parse_mode:
        return text, []
    mode = _PARSE_MODES.get(parse_mode.lower())
    if mode == "HTML":
        return parse_html(text, strict_ampersand=strict_html_ampersand)
    if mode == "MarkdownV2":
        return parse_markdown_v2(text)
    if mode == "Markdown":
        return parse_markdown(text)
    raise ValueError(f"unsupported parse_mode {parse_mode!r}")


_TRIM_CHARS = " \t\n\r\v\f"


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    stripped = text.strip(_TRIM_CHARS)
    if not stripped:
        return "", []
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip(_TRIM_CHARS))])
    size = utf16_len(stripped)
    clipped: list[dict[str, Any]] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, size)
        if end > start:
            clipped.append({**entity, "offset": start, "length": end - start})
    return stripped, clipped


# ---------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            payload["parameters"] = dict(self.parameters)
        return payload


def _bad_request(description: str) -> _ApiError:
    return _ApiError(400, description)


@dataclass
class Fault:
    """An injected error answer; see :meth:`BotApiEmulator.fail`."""

    method: str | None
    status: int
    description: str
    retry_after: int | None = None
    times: int | None = 1
    chat_id: int | str | None = None
    delay: float = 0.0
    migrate_to_chat_id: int | None = None
    hits: int = 0

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is None:
            if method == "getUpdates":
                return False
        elif self.method.lower() != method.lower():
            return False
        return self.chat_id is None or params.get("chat_id") == self.chat_id

    def error(self) -> _ApiError:
        parameters: dict[str, Any] = {}
        if self.retry_after is not None:
            parameters["retry_after"] = self.retry_after
        if self.migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = self.migrate_to_chat_id
        return _ApiError(self.status, self.description, parameters or None)


@dataclass(frozen=True)
class ApiCall:
    """One request the server answered (or dropped).

    ``status`` is the HTTP status sent; 0 means no HTTP answer (connection reset while ``down``, or the
    client went away before the answer, e.g. a long poll cancelled by ``dp.stop_polling()``).
    ``response`` is the JSON body sent (None when status is 0).  Unpacks as ``(method, params, response)``.
    """

    index: int
    method: str
    params: dict[str, Any]
    status: int
    response: dict[str, Any] | None
    started_at: float
    at: float
    raw_params: dict[str, Any] = field(default_factory=dict, repr=False)
    fault: Fault | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result") if self.response else None

    @property
    def error_code(self) -> int | None:
        if self.response is None or self.response.get("ok"):
            return None
        return self.response.get("error_code")

    @property
    def description(self) -> str | None:
        if self.response is None:
            return self.note or None
        return self.response.get("description")

    @property
    def retry_after(self) -> int | None:
        if self.response is None:
            return None
        return (self.response.get("parameters") or {}).get("retry_after")

    def __iter__(self) -> Iterator[Any]:
        return iter((self.method, self.params, self.response))

    def summary(self) -> str:
        keys = (
            "chat_id",
            "message_id",
            "text",
            "callback_query_id",
            "offset",
            "timeout",
            "allowed_updates",
            "action",
        )
        shown = []
        for key in keys:
            if key in self.params:
                value = self.params[key]
                if isinstance(value, str) and len(value) > 60:
                    value = value[:57] + "..."
                shown.append(f"{key}={value!r}")
        markup = self.params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            data = [
                button.get("callback_data") or button.get("url") or button.get("text")
                for row in markup.get("inline_keyboard") or []
                if isinstance(row, list)
                for button in row
                if isinstance(button, dict)
            ]
            shown.append(f"buttons={data!r}")
        if self.status == 0:
            outcome = f"-> no answer ({self.note})"
        elif self.ok:
            result = self.result
            if isinstance(result, dict) and "message_id" in result:
                outcome = f"-> ok message_id={result['message_id']}"
            elif isinstance(result, list):
                outcome = f"-> ok {len(result)} item(s)"
            else:
                outcome = f"-> ok {result!r}"
        else:
            outcome = f"-> {self.status} {self.description}"
        if self.fault is not None:
            outcome += " [injected]"
        return f"#{self.index} {self.method}({', '.join(shown)}) {outcome}"


@dataclass(frozen=True)
class MessageVersion:
    """One state of a message: the original send or an edit."""

    method: str
    text: str
    entities: list[dict[str, Any]]
    raw_text: str
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    date: int
    at: float


@dataclass
class StoredMessage:
    """A message in the emulator's chat history (bot messages and, in group/private chats, user ones).

    ``text`` is the plain text after entity parsing, ``raw_text`` the markup as sent, ``history`` every
    version oldest first (``history[0]`` is the original send, ``history[-1]`` the current state).
    """

    chat: dict[str, Any]
    message_id: int
    sender: dict[str, Any]
    date: int
    text: str
    entities: list[dict[str, Any]]
    raw_text: str
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    params: dict[str, Any]
    sent_at: float
    reply_to: StoredMessage | None = None
    edit_date: int | None = None
    deleted: bool = False
    deleted_at: float | None = None
    history: list[MessageVersion] = field(default_factory=list)

    @property
    def chat_id(self) -> int:
        return self.chat["id"]

    @property
    def from_bot(self) -> bool:
        return bool(self.sender.get("is_bot"))

    @property
    def html(self) -> str | None:
        """The HTML source when the current version was sent with parse_mode HTML."""
        return self.raw_text if (self.parse_mode or "").lower() == "html" else None

    @property
    def inline_markup(self) -> dict[str, Any] | None:
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            return self.reply_markup
        return None

    @property
    def keyboard(self) -> list[list[dict[str, Any]]]:
        markup = self.inline_markup
        return [list(row) for row in markup["inline_keyboard"]] if markup else []

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [button for row in self.keyboard for button in row]

    @property
    def callback_data(self) -> list[str]:
        return [button["callback_data"] for button in self.buttons if "callback_data" in button]

    @property
    def button_texts(self) -> list[str]:
        return [button["text"] for button in self.buttons]

    @property
    def has_keyboard(self) -> bool:
        return bool(self.buttons)

    @property
    def edits(self) -> list[MessageVersion]:
        return self.history[1:]

    @property
    def edited(self) -> bool:
        return len(self.history) > 1

    def button(self, text: str | None = None, *, data: str | None = None) -> dict[str, Any]:
        """The first inline button whose text (or callback_data) equals the argument."""
        for candidate in self.buttons:
            if text is not None and candidate.get("text") != text:
                continue
            if data is not None and candidate.get("callback_data") != data:
                continue
            return candidate
        raise KeyError(f"no button text={text!r} data={data!r} in message {self.message_id}: {self.buttons}")

    def to_api(self, *, with_reply: bool = True) -> dict[str, Any]:
        """The Bot API Message object for the current state."""
        payload: dict[str, Any] = {
            "message_id": self.message_id,
            "from": dict(self.sender),
            "chat": dict(self.chat),
            "date": self.date,
        }
        if with_reply and self.reply_to is not None:
            payload["reply_to_message"] = self.reply_to.to_api(with_reply=False)
        if self.edit_date is not None:
            payload["edit_date"] = self.edit_date
        payload["text"] = self.text
        if self.entities:
            payload["entities"] = copy.deepcopy(self.entities)
        if self.inline_markup is not None:
            payload["reply_markup"] = copy.deepcopy(self.inline_markup)
        return payload

    def _snapshot(self, method: str, at: float) -> None:
        self.history.append(
            MessageVersion(
                method=method,
                text=self.text,
                entities=copy.deepcopy(self.entities),
                raw_text=self.raw_text,
                parse_mode=self.parse_mode,
                reply_markup=copy.deepcopy(self.reply_markup),
                date=self.edit_date or self.date,
                at=at,
            )
        )


@dataclass
class CallbackQueryRecord:
    id: str
    user: dict[str, Any]
    chat_id: int
    message_id: int
    data: str
    update_id: int
    created_at: float
    answer: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------------------


_Handler = Callable[[dict[str, Any]], Any]


class BotApiEmulator:
    """In-process Telegram Bot API server with a test-control API; see the module docstring."""

    FLOOD_PRIVATE_INTERVAL: ClassVar[float] = 1.0
    FLOOD_GROUP_PER_MINUTE: ClassVar[int] = 20
    FLOOD_GLOBAL_PER_SECOND: ClassVar[int] = 30

    def __init__(
        self,
        token: str = "123456:TEST",  # noqa: S107
        bot_username: str = "reconbot_test",
        bot_first_name: str = "ReconBot Test",
        *,
        strict_chats: bool = False,
        strict_html_ampersand: bool = True,
    ) -> None:
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise ValueError(f"token must look like '<digits>:<secret>', got {token!r}")
        self.token = token
        self.bot_id = int(match.group(1))
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.strict_chats = strict_chats
        self.strict_html_ampersand = strict_html_ampersand
        self.enforce_flood_limits = False
        self.down = False
        self.down_mode = "reset"
        self.callback_query_timeout: float | None = None
        self.base_url: str | None = None

        self.calls: list[ApiCall] = []
        self.updates_log: list[dict[str, Any]] = []
        self.dropped_updates: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []

        self._pending: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] = _DEFAULT_UPDATE_TYPES
        self._webhook_url = ""
        self._chats: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._messages: dict[int, dict[int, StoredMessage]] = {}
        self._next_message_id: dict[int, int] = {}
        self._callback_queries: dict[str, CallbackQueryRecord] = {}
        self._callback_ids = itertools.count(1)
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._faults: list[Fault] = []
        self._send_times: dict[int, list[float]] = {}
        self._all_send_times: list[float] = []

        self._poll_generation = 0
        self._active_polls = 0
        self._update_event = asyncio.Event()
        self._call_event = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

        self._methods: dict[str, tuple[str, _Handler]] = {
            name.lower(): (name, handler)
            for name, handler in (
                ("getMe", self._m_get_me),
                ("getUpdates", self._m_get_updates),
                ("deleteWebhook", self._m_delete_webhook),
                ("setWebhook", self._m_set_webhook),
                ("getWebhookInfo", self._m_get_webhook_info),
                ("setMyCommands", self._m_set_my_commands),
                ("getMyCommands", self._m_get_my_commands),
                ("deleteMyCommands", self._m_delete_my_commands),
                ("sendMessage", self._m_send_message),
                ("editMessageText", self._m_edit_message_text),
                ("editMessageReplyMarkup", self._m_edit_message_reply_markup),
                ("answerCallbackQuery", self._m_answer_callback_query),
                ("deleteMessage", self._m_delete_message),
                ("deleteMessages", self._m_delete_messages),
                ("sendChatAction", self._m_send_chat_action),
            )
        }

    # ----------------------------------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 picks a free port) and return the base URL ``http://host:port``."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown_path)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                bound_port = address[1]
                break
        shown_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Release held long polls (they answer an empty list) and shut the server down."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        self._wake_pollers()
        await runner.cleanup()

    async def __aenter__(self) -> BotApiEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def active_polls(self) -> int:
        """How many getUpdates requests are currently being held."""
        return self._active_polls

    def reset(self) -> None:
        """Forget calls, chats, messages, updates, faults, commands and rate records; keep the server up."""
        self.calls.clear()
        self.updates_log.clear()
        self.dropped_updates.clear()
        self.errors.clear()
        self._pending.clear()
        self._allowed_updates = _DEFAULT_UPDATE_TYPES
        self._webhook_url = ""
        self._chats.clear()
        self._users.clear()
        self._messages.clear()
        self._next_message_id.clear()
        self._callback_queries.clear()
        self._commands.clear()
        self._faults.clear()
        self._send_times.clear()
        self._all_send_times.clear()
        self.enforce_flood_limits = False
        self.down = False
        self.down_mode = "reset"
        self.callback_query_timeout = None

    # ------------------------------------------------------------------------------------- HTTP handling

    async def _handle_unknown_path(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(_ApiError(404, ERR_NOT_FOUND).body(), status=404)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if not request.body_exists:
            return params
        content_type = request.content_type
        if content_type == "application/json":
            raw = await request.read()
            try:
                body = json.loads(raw or b"{}")
            except ValueError as exc:
                raise _bad_request("Bad Request: can't parse JSON object") from exc
            if not isinstance(body, dict):
                raise _bad_request("Bad Request: can't parse JSON object")
            params.update(body)
        elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for key, value in form.items():
                params[key] = value if isinstance(value, str) else f"<file {getattr(value, 'filename', '')}>"
        else:
            await request.read()
        return params

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        token = request.match_info["token"]
        method_name = request.match_info["method"]
        known = self._methods.get(method_name.lower())
        method = known[0] if known else method_name
        raw: dict[str, Any] = {}
        params: dict[str, Any] = {}
        fault: Fault | None = None
        try:
            raw = await self._read_params(request)
            params = dict(raw)
            if self.down:
                return await self._refuse(request, method, raw, started)
            if token != self.token:
                raise _ApiError(401, ERR_UNAUTHORIZED)
            if known is None:
                raise _ApiError(404, ERR_NOT_FOUND)
            params = self._coerce(raw)
            fault = self._take_fault(method, params)
            if fault is not None:
                if fault.delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), fault.delay)
                raise fault.error()
            result = known[1](params)
            if inspect.isawaitable(result):
                result = await result
            body: dict[str, Any] = {"ok": True, "result": result}
            status = 200
        except _ApiError as exc:
            body = exc.body()
            status = exc.status
        except asyncio.CancelledError:
            self._record(method, params, raw, 0, None, started, fault, note="client disconnected")
            raise
        except Exception as exc:
            log.exception("emulator failure in %s", method)
            self.errors.append(exc)
            body = {
                "ok": False,
                "error_code": 500,
                "description": f"Internal Server Error: emulator failure: {type(exc).__name__}: {exc}",
            }
            status = 500
        self._record(method, params, raw, status, body, started, fault)
        return web.json_response(body, status=status)

    async def _refuse(
        self, request: web.Request, method: str, raw: dict[str, Any], started: float
    ) -> web.StreamResponse:
        if self.down_mode == "502":
            body = _ApiError(502, "Bad Gateway").body()
            self._record(method, raw, raw, 502, body, started, None, note="server down")
            return web.json_response(body, status=502)
        self._record(method, raw, raw, 0, None, started, None, note="connection reset (server down)")
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=502)

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        raw: dict[str, Any],
        status: int,
        response: dict[str, Any] | None,
        started: float,
        fault: Fault | None,
        *,
        note: str = "",
    ) -> ApiCall:
        call = ApiCall(
            index=len(self.calls),
            method=method,
            params=params,
            status=status,
            response=copy.deepcopy(response),
            started_at=started,
            at=time.monotonic(),
            raw_params=raw,
            fault=fault,
            note=note,
        )
        self.calls.append(call)
        self._state_changed()
        return call

    def _state_changed(self) -> None:
        event, self._call_event = self._call_event, asyncio.Event()
        event.set()

    def _coerce(self, raw: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, str):
                if key in _JSON_FIELDS:
                    try:
                        value = json.loads(value)
                    except ValueError as exc:
                        message = _JSON_ERRORS.get(key, f"Bad Request: can't parse {key} JSON object")
                        raise _bad_request(message) from exc
                elif key in _INT_FIELDS:
                    try:
                        value = int(value)
                    except ValueError as exc:
                        raise _bad_request(f"Bad Request: invalid {key} specified") from exc
                elif key in _BOOL_FIELDS:
                    value = value.strip().lower() in ("true", "1", "yes", "on")
                elif key == "chat_id":
                    with contextlib.suppress(ValueError):
                        value = int(value)
            params[key] = value
        return params

    def _take_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, params):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    # --------------------------------------------------------------------------------------- chat helpers

    def _chat_for(self, chat_id: Any, *, create: bool = True) -> dict[str, Any]:
        if chat_id is None or chat_id == "":
            raise _bad_request("Bad Request: chat_id is empty")
        if isinstance(chat_id, str):
            name = chat_id.lstrip("@").lower()
            for chat in self._chats.values():
                if str(chat.get("username", "")).lower() == name and chat_id.startswith("@"):
                    return chat
            raise _bad_request(ERR_CHAT_NOT_FOUND)
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            raise _bad_request(ERR_CHAT_NOT_FOUND)
        chat = self._chats.get(chat_id)
        if chat is None:
            if self.strict_chats or not create or chat_id == 0:
                raise _bad_request(ERR_CHAT_NOT_FOUND)
            if chat_id > 0:
                chat = self.add_chat(chat_id, "private")
            elif str(chat_id).startswith("-100"):
                chat = self.add_chat(chat_id, "supergroup")
            else:
                chat = self.add_chat(chat_id, "group")
        return chat

    def _user(self, user_id: int, username: str | None, first_name: str | None, **extra: Any) -> dict[str, Any]:
        user = self._users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": first_name or f"User{user_id}"}
            self._users[user_id] = user
        if first_name is not None:
            user["first_name"] = first_name
        if username is not None:
            user["username"] = username
        for key, value in extra.items():
            if value is not None:
                user[key] = value
        return user

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _lookup(self, chat_id: Any, message_id: Any) -> StoredMessage | None:
        if isinstance(chat_id, str) and not chat_id.startswith("@"):
            return None
        if isinstance(chat_id, str):
            try:
                chat_id = self._chat_for(chat_id, create=False)["id"]
            except _ApiError:
                return None
        if not isinstance(message_id, int):
            return None
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None or message.deleted:
            return None
        return message

    # --------------------------------------------------------------------------------------- validation

    def _prepare_text(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str, str | None]:
        raw = params.get("text")
        if raw is None or raw == "":
            raise _bad_request(ERR_TEXT_EMPTY)
        if not isinstance(raw, str):
            raw = json.dumps(raw) if isinstance(raw, (dict, list)) else str(raw)
        parse_mode = params.get("parse_mode") or None
        explicit = params.get("entities")
        if explicit:
            if not isinstance(explicit, list) or not all(
                isinstance(entity, dict)
                and isinstance(entity.get("type"), str)
                and isinstance(entity.get("offset"), int)
                and isinstance(entity.get("length"), int)
                for entity in explicit
            ):
                raise _bad_request("Bad Request: can't parse entities JSON object")
            text, entities = raw, _sorted_entities([dict(entity) for entity in explicit])
            parse_mode = None
        else:
            if parse_mode is not None and not isinstance(parse_mode, str):
                raise _bad_request("Bad Request: unsupported parse_mode")
            try:
                text, entities = parse_text(raw, parse_mode, strict_html_ampersand=self.strict_html_ampersand)
            except EntityParseError as exc:
                raise _bad_request(ERR_PARSE_ENTITIES + str(exc)) from exc
            except ValueError as exc:
                raise _bad_request("Bad Request: unsupported parse_mode") from exc
            if parse_mode is not None:
                parse_mode = _PARSE_MODES[parse_mode.lower()]
        text, entities = _trim(text, entities)
        if not text:
            raise _bad_request(ERR_TEXT_EMPTY)
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise _bad_request(ERR_TEXT_TOO_LONG)
        return text, entities, raw, parse_mode

    def _prepare_markup(self, markup: Any, *, inline_only: bool = False) -> dict[str, Any] | None:
        if markup is None or markup == "":
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError as exc:
                raise _bad_request(ERR_MARKUP_JSON) from exc
        if not isinstance(markup, dict):
            raise _bad_request(ERR_MARKUP_JSON)
        if "inline_keyboard" not in markup:
            if inline_only:
                raise _bad_request("Bad Request: inline keyboard expected")
            if not any(key in markup for key in ("keyboard", "remove_keyboard", "force_reply")):
                raise _bad_request(ERR_MARKUP_JSON)
            return copy.deepcopy(markup)
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        count = 0
        clean_rows: list[list[dict[str, Any]]] = []
        for row in rows:
            clean_row: list[dict[str, Any]] = []
            for button in row:
                if not isinstance(button, dict):
                    raise _bad_request(
                        "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must be an Object"
                    )
                text = button.get("text")
                if not isinstance(text, str):
                    raise _bad_request(
                        'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String'
                    )
                if not text.strip():
                    raise _bad_request("Bad Request: BUTTON_TEXT_INVALID")
                if not any(key in button for key in _INLINE_BUTTON_ACTIONS):
                    raise _bad_request(
                        "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the "
                        "inline keyboard"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                        raise _bad_request(ERR_BUTTON_DATA)
                if "url" in button:
                    url = button["url"]
                    if not isinstance(url, str) or (_check_link(url) is None and _link_user_id(url) is None):
                        raise _bad_request(ERR_BUTTON_URL)
                count += 1
                clean_row.append(copy.deepcopy(button))
            if clean_row:
                clean_rows.append(clean_row)
        if count > MAX_INLINE_BUTTONS:
            raise _bad_request("Bad Request: reply markup is too long")
        if not clean_rows:
            return None
        return {**copy.deepcopy(markup), "inline_keyboard": clean_rows}

    def _flood_retry_after(self, chat: dict[str, Any], now: float) -> int | None:
        times = self._send_times.get(chat["id"], [])
        if chat["type"] == "private":
            if times and now - times[-1] < self.FLOOD_PRIVATE_INTERVAL:
                return max(1, math.ceil(self.FLOOD_PRIVATE_INTERVAL - (now - times[-1])))
        else:
            window = [t for t in times if now - t < 60.0]
            if len(window) >= self.FLOOD_GROUP_PER_MINUTE:
                oldest = window[-self.FLOOD_GROUP_PER_MINUTE]
                return max(1, math.ceil(60.0 - (now - oldest)))
        recent = [t for t in self._all_send_times[-self.FLOOD_GLOBAL_PER_SECOND :] if now - t < 1.0]
        if len(recent) >= self.FLOOD_GLOBAL_PER_SECOND:
            return 1
        return None

    # ------------------------------------------------------------------------------------------ methods

    def _m_get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._webhook_url:
            raise _ApiError(409, ERR_CONFLICT_WEBHOOK)
        offset = params.get("offset")
        limit = params.get("limit") or 100
        limit = min(max(int(limit), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            if not isinstance(allowed, list) or not all(isinstance(kind, str) for kind in allowed):
                raise _bad_request("Bad Request: can't parse allowed_updates JSON array")
            self._allowed_updates = frozenset(allowed) if allowed else _DEFAULT_UPDATE_TYPES
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()
        self._confirm(offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._active_polls += 1
        self._state_changed()
        try:
            while True:
                batch = self._collect(limit)
                if batch:
                    return batch
                if generation != self._poll_generation:
                    raise _ApiError(409, ERR_CONFLICT_POLL)
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing.is_set():
                    return []
                event = self._update_event
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            self._active_polls -= 1

    def _confirm(self, offset: Any) -> None:
        if not isinstance(offset, int) or offset == 0:
            return
        if offset > 0:
            self._pending = [update for update in self._pending if update["update_id"] >= offset]
        else:
            self._pending = self._pending[offset:]

    def _collect(self, limit: int) -> list[dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        for update in self._pending:
            kind = next((key for key in update if key != "update_id"), "")
            if kind in self._allowed_updates:
                kept.append(update)
            else:
                self.dropped_updates.append(update)
        self._pending = kept
        return copy.deepcopy(kept[:limit])

    def _wake_pollers(self) -> None:
        event, self._update_event = self._update_event, asyncio.Event()
        event.set()

    def _m_delete_webhook(self, params: dict[str, Any]) -> bool:
        self._webhook_url = ""
        if params.get("drop_pending_updates"):
            self.dropped_updates.extend(self._pending)
            self._pending = []
        return True

    def _m_set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad_request("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self._webhook_url = str(url)
        if params.get("drop_pending_updates"):
            self.dropped_updates.extend(self._pending)
            self._pending = []
        self._wake_pollers()
        return True

    def _m_get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
            raise _bad_request("Bad Request: can't parse BotCommandScope JSON object")
        language = params.get("language_code") or ""
        return json.dumps(scope, sort_keys=True), str(language)

    def _m_set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if commands is None:
            raise _bad_request('Bad Request: parameter "commands" is required')
        if not isinstance(commands, list):
            raise _bad_request("Bad Request: can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("Bad Request: too many commands specified")
        stored: list[dict[str, Any]] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("Bad Request: can't parse BotCommand JSON object")
            name = command.get("command")
            description = command.get("description")
            if not isinstance(name, str) or not _COMMAND_RE.fullmatch(name):
                raise _bad_request("Bad Request: BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad_request("Bad Request: command description must be non-empty")
            stored.append({"command": name, "description": description})
        key = self._commands_key(params)
        if stored:
            self._commands[key] = stored
        else:
            self._commands.pop(key, None)
        return True

    def _m_get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    def _m_delete_my_commands(self, params: dict[str, Any]) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _reply_target(self, chat: dict[str, Any], params: dict[str, Any]) -> StoredMessage | None:
        reply = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        target_chat = chat["id"]
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = allow_missing or bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") is not None:
                target_chat = reply["chat_id"]
        else:
            message_id = params.get("reply_to_message_id")
        if message_id is None:
            return None
        target = self._lookup(target_chat, message_id)
        if target is None and not allow_missing:
            raise _bad_request(ERR_REPLY_NOT_FOUND)
        return target

    def _m_send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for(params.get("chat_id"))
        text, entities, raw, parse_mode = self._prepare_text(params)
        markup = self._prepare_markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat, params)
        now = time.monotonic()
        if self.enforce_flood_limits:
            retry_after = self._flood_retry_after(chat, now)
            if retry_after is not None:
                raise _ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        message = StoredMessage(
            chat=chat,
            message_id=self._new_message_id(chat["id"]),
            sender=dict(self.bot_user),
            date=int(time.time()),
            text=text,
            entities=entities,
            raw_text=raw,
            parse_mode=parse_mode,
            reply_markup=markup,
            params=dict(params),
            sent_at=now,
            reply_to=reply_to,
        )
        message._snapshot("sendMessage", now)
        self._messages.setdefault(chat["id"], {})[message.message_id] = message
        self._send_times.setdefault(chat["id"], []).append(now)
        self._all_send_times.append(now)
        return message.to_api()

    def _message_for_edit(self, params: dict[str, Any]) -> StoredMessage:
        if params.get("inline_message_id"):
            raise _bad_request(ERR_EDIT_NOT_FOUND)
        if params.get("chat_id") in (None, ""):
            raise _bad_request("Bad Request: chat_id is empty")
        if params.get("message_id") is None:
            raise _bad_request("Bad Request: message identifier is not specified")
        message = self._lookup(params["chat_id"], params["message_id"])
        if message is None:
            raise _bad_request(ERR_EDIT_NOT_FOUND)
        if not message.from_bot:
            raise _bad_request(ERR_CANT_EDIT)
        return message

    def _m_edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_for_edit(params)
        text, entities, raw, parse_mode = self._prepare_text(params)
        markup = self._prepare_markup(params.get("reply_markup"), inline_only=True)
        if text == message.text and entities == message.entities and markup == message.inline_markup:
            raise _bad_request(ERR_NOT_MODIFIED)
        now = time.monotonic()
        message.text, message.entities, message.raw_text, message.parse_mode = text, entities, raw, parse_mode
        message.reply_markup = markup
        message.edit_date = int(time.time())
        message._snapshot("editMessageText", now)
        return message.to_api()

    def _m_edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_for_edit(params)
        markup = self._prepare_markup(params.get("reply_markup"), inline_only=True)
        if markup == message.inline_markup:
            raise _bad_request(ERR_NOT_MODIFIED)
        message.reply_markup = markup
        message.edit_date = int(time.time())
        message._snapshot("editMessageReplyMarkup", time.monotonic())
        return message.to_api()

    def _m_answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = params.get("callback_query_id")
        if query_id in (None, ""):
            raise _bad_request("Bad Request: callback_query_id is empty")
        record = self._callback_queries.get(str(query_id))
        if record is None or record.answer is not None:
            raise _bad_request(ERR_QUERY_INVALID)
        timeout = self.callback_query_timeout
        if timeout is not None and time.monotonic() - record.created_at > timeout:
            raise _bad_request(ERR_QUERY_INVALID)
        text = params.get("text")
        if isinstance(text, str) and len(text) > MAX_CALLBACK_ANSWER_TEXT:
            raise _bad_request("Bad Request: MESSAGE_TOO_LONG")
        record.answer = dict(params)
        return True

    def _delete(self, chat_id: Any, message_id: Any) -> bool:
        message = self._lookup(chat_id, message_id)
        if message is None:
            return False
        message.deleted = True
        message.deleted_at = time.monotonic()
        return True

    def _m_delete_message(self, params: dict[str, Any]) -> bool:
        if params.get("message_id") is None:
            raise _bad_request("Bad Request: message identifier is not specified")
        if not self._delete(params.get("chat_id"), params.get("message_id")):
            raise _bad_request(ERR_DELETE_NOT_FOUND)
        return True

    def _m_delete_messages(self, params: dict[str, Any]) -> bool:
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not ids or len(ids) > 100:
            raise _bad_request("Bad Request: message_ids must be a non-empty array of at most 100 items")
        deleted = [self._delete(params.get("chat_id"), message_id) for message_id in ids]
        if not any(deleted):
            raise _bad_request(ERR_DELETE_NOT_FOUND)
        return True

    def _m_send_chat_action(self, params: dict[str, Any]) -> bool:
        self._chat_for(params.get("chat_id"))
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("Bad Request: wrong parameter action in request")
        return True

    # ------------------------------------------------------------------------------------ test controls

    def add_chat(
        self,
        chat_id: int,
        chat_type: str = "private",
        *,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> dict[str, Any]:
        """Register (or update) a chat the bot knows; returns the Bot API Chat object."""
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(f"unknown chat type {chat_type!r}")
        if chat_type == "private" and chat_id <= 0:
            raise ValueError("a private chat id is the user's (positive) id")
        if chat_type != "private" and chat_id >= 0:
            raise ValueError(f"a {chat_type} chat id must be negative, got {chat_id}")
        chat = self._chats.get(chat_id)
        if chat is None or chat["type"] != chat_type:
            chat = {"id": chat_id, "type": chat_type}
            self._chats[chat_id] = chat
        if chat_type == "private":
            user = self._users.get(chat_id)
            chat["first_name"] = (
                first_name or (user or {}).get("first_name") or chat.get("first_name") or (f"User{chat_id}")
            )
            name = username or (user or {}).get("username")
            if name:
                chat["username"] = name
        else:
            chat["title"] = title or chat.get("title") or f"Test {chat_type} {chat_id}"
            if username:
                chat["username"] = username
        return chat

    def add_update(self, payload: dict[str, Any]) -> int:
        """Queue a raw update (e.g. ``{"my_chat_member": {...}}``); the update_id is assigned here."""
        update_id = self._next_update_id
        self._next_update_id += 1
        update = {"update_id": update_id, **copy.deepcopy(payload)}
        self._pending.append(update)
        self.updates_log.append(update)
        self._wake_pollers()
        return update_id

    def user_sends(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        first_name: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = None,
        chat_title: str | None = None,
        reply_to: StoredMessage | int | None = None,
    ) -> int:
        """Queue a ``message`` update from a user; returns its update_id.

        Private chats use ``chat_id = user_id``; group and supergroup chats need a negative ``chat_id``.
        A leading ``/command`` (optionally ``@botname``) gets a ``bot_command`` entity as Telegram adds.
        """
        if chat_type == "private":
            if chat_id is not None and chat_id != user_id:
                raise ValueError("a private chat's id equals the user's id")
            chat_id = user_id
        elif chat_id is None:
            raise ValueError(f"a {chat_type} chat needs an explicit negative chat_id")
        user = self._user(user_id, username, first_name, last_name=last_name, language_code=language_code)
        chat = self.add_chat(
            chat_id,
            chat_type,
            title=chat_title,
            username=username if chat_type == "private" else None,
            first_name=user["first_name"] if chat_type == "private" else None,
        )
        if chat_type == "private" and last_name:
            chat["last_name"] = last_name
        entities: list[dict[str, Any]] = []
        command = _BOT_COMMAND_IN_TEXT_RE.match(text)
        if command is not None:
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))})
        target: StoredMessage | None = None
        if isinstance(reply_to, StoredMessage):
            target = reply_to
        elif reply_to is not None:
            target = self.message(chat_id, reply_to)
        now = time.monotonic()
        message = StoredMessage(
            chat=chat,
            message_id=self._new_message_id(chat_id),
            sender=dict(user),
            date=int(time.time()),
            text=text,
            entities=entities,
            raw_text=text,
            parse_mode=None,
            reply_markup=None,
            params={},
            sent_at=now,
            reply_to=target,
        )
        message._snapshot("user", now)
        self._messages.setdefault(chat_id, {})[message.message_id] = message
        return self.add_update({"message": message.to_api()})

    def user_presses(
        self,
        user_id: int,
        message: StoredMessage | tuple[int, int],
        data: str,
        *,
        username: str | None = None,
        first_name: str | None = None,
        check_button: bool = True,
    ) -> str:
        """Queue a ``callback_query`` update for a button of a stored bot message; returns the query id.

        With ``check_button`` (default) the message's current inline keyboard must hold a button with
        this callback_data, as a real client can only press buttons it shows.
        """
        if isinstance(message, StoredMessage):
            chat_id, message_id = message.chat_id, message.message_id
        else:
            chat_id, message_id = message
        stored = self.message(chat_id, message_id)
        if stored.deleted:
            raise ValueError(f"message {chat_id}/{message_id} was deleted")
        if check_button and data not in stored.callback_data:
            raise ValueError(
                f"message {chat_id}/{message_id} has no button with callback_data {data!r}; "
                f"current buttons: {stored.callback_data} (pass check_button=False to press anyway)"
            )
        user = self._user(user_id, username, first_name)
        query_id = str(4_000_000_000_000_000 + next(self._callback_ids))
        update_id = self._next_update_id
        record = CallbackQueryRecord(
            id=query_id,
            user=dict(user),
            chat_id=chat_id,
            message_id=message_id,
            data=data,
            update_id=update_id,
            created_at=time.monotonic(),
        )
        self._callback_queries[query_id] = record
        self.add_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": dict(user),
                    "message": stored.to_api(),
                    "chat_instance": str(abs(chat_id) * 7919 + 17),
                    "data": data,
                }
            }
        )
        return query_id

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by the bot (delivered or not)."""
        return copy.deepcopy(self._pending)

    def messages(
        self, chat_id: int, *, include_deleted: bool = False, include_user: bool = False
    ) -> list[StoredMessage]:
        """Messages of a chat in order; by default only the bot's, not deleted."""
        return [
            message
            for message in self._messages.get(chat_id, {}).values()
            if (include_deleted or not message.deleted) and (include_user or message.from_bot)
        ]

    def message(self, chat_id: int, message_id: int) -> StoredMessage:
        """A stored message (deleted ones included); KeyError when unknown."""
        try:
            return self._messages[chat_id][message_id]
        except KeyError:
            known = sorted(self._messages.get(chat_id, {}))
            raise KeyError(f"no message {message_id} in chat {chat_id}; known ids: {known}") from None

    def last_message(self, chat_id: int) -> StoredMessage:
        """The latest non-deleted bot message of a chat."""
        found = self.messages(chat_id)
        if not found:
            raise KeyError(f"the bot has no message in chat {chat_id}")
        return found[-1]

    def chat(self, chat_id: int) -> dict[str, Any]:
        return dict(self._chats[chat_id])

    def callback_answers(self, cq_id: str) -> list[dict[str, Any]]:
        """Params of every answerCallbackQuery request naming this query, in order (accepted or not)."""
        return [
            dict(call.params)
            for call in self.calls
            if call.method == "answerCallbackQuery" and str(call.params.get("callback_query_id")) == str(cq_id)
        ]

    def callback_answer(self, cq_id: str) -> dict[str, Any] | None:
        """Params of the accepted answer of this query, or None while unanswered."""
        record = self._callback_queries.get(str(cq_id))
        if record is None:
            raise KeyError(f"unknown callback query {cq_id!r}")
        return dict(record.answer) if record.answer is not None else None

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, Any]]:
        """The command list stored by setMyCommands for a scope (default scope when None)."""
        key = self._commands_key({"scope": scope, "language_code": language_code})
        return copy.deepcopy(self._commands.get(key, []))

    def fail(
        self,
        method: str | None = None,
        status: int = 500,
        *,
        times: int | None = 1,
        retry_after: int | None = None,
        description: str | None = None,
        chat_id: int | str | None = None,
        delay: float = 0.0,
        migrate_to_chat_id: int | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching calls with an error (``times=None``: until cleared).

        ``method=None`` matches every method except getUpdates.  429 defaults to ``retry_after=1`` and
        the description "Too Many Requests: retry after N"; ``chat_id`` narrows the fault to one chat;
        ``delay`` holds the answer that many seconds first (to exercise client timeouts).
        """
        if status < 400:
            raise ValueError("a fault status must be an HTTP error status (>= 400)")
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            else:
                description = _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}")
        fault = Fault(
            method=method,
            status=status,
            description=description,
            retry_after=retry_after,
            times=times,
            chat_id=chat_id,
            delay=delay,
            migrate_to_chat_id=migrate_to_chat_id,
        )
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        return [fault for fault in self._faults if fault.times is None or fault.times > 0]

    def send_times(self, chat_id: int | None = None) -> list[float]:
        """``time.monotonic()`` of every accepted sendMessage, for one chat or all chats."""
        if chat_id is None:
            return list(self._all_send_times)
        return list(self._send_times.get(chat_id, []))

    def max_sends_in_window(self, window: float, chat_id: int | None = None) -> int:
        """The largest number of accepted sendMessage calls within any ``window`` seconds."""
        times = self.send_times(chat_id)
        best = 0
        start = 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    # ----------------------------------------------------------------------------------------- waiting

    async def wait_for(
        self,
        predicate: Callable[[ApiCall], bool] | str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        since: int = 0,
    ) -> ApiCall:
        """Return the first recorded call at index >= ``since`` matching ``predicate`` (a callable, or a
        method name), waiting up to ``timeout`` seconds for it.  Predicates raising LookupError,
        TypeError or AttributeError count as not matching.  Raises TimeoutError with a dump of the calls.
        """
        if isinstance(predicate, str):
            wanted = predicate.lower()

            def matches(call: ApiCall) -> bool:
                return call.method.lower() == wanted
        else:
            matches = predicate
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            while index < len(self.calls):
                call = self.calls[index]
                index += 1
                try:
                    if matches(call):
                        return call
                except (LookupError, TypeError, AttributeError):
                    continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no matching Bot API call within {timeout}s (since #{since})\n" + self.describe(since)
                )
            event = self._call_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def wait_until(
        self,
        condition: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        since: int = 0,
    ) -> None:
        """Wait until ``condition()`` is true; it is re-evaluated after every recorded call, whenever a
        long poll starts, and at least every 0.25 s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition still false after {timeout}s\n" + self.describe(since))
            event = self._call_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))

    def describe(self, since: int = 0, *, limit: int = 60) -> str:
        """A readable dump of the calls since ``since`` and of the update queue, for failure messages."""
        lines: list[str] = []
        empty_polls = 0

        def flush() -> None:
            nonlocal empty_polls
            if empty_polls:
                lines.append(f"   ... {empty_polls} getUpdates poll(s) returning no update")
                empty_polls = 0

        calls = self.calls[since:]
        if len(calls) > limit:
            lines.append(f"   ... {len(calls) - limit} earlier call(s) omitted")
            calls = calls[-limit:]
        for call in calls:
            if call.method == "getUpdates" and call.ok and not call.result:
                empty_polls += 1
                continue
            flush()
            lines.append("   " + call.summary())
        flush()
        if not lines:
            lines.append("   (no calls)")
        state = [
            f"pending updates: {[u['update_id'] for u in self._pending]}",
            "allowed_updates: "
            + (
                "default (all but chat_member, message_reaction, message_reaction_count)"
                if self._allowed_updates == _DEFAULT_UPDATE_TYPES
                else str(sorted(self._allowed_updates))
            ),
            f"long polls held: {self._active_polls}",
        ]
        if self.dropped_updates:
            dropped = [(u["update_id"], next((k for k in u if k != "update_id"), "?")) for u in self.dropped_updates]
            state.append(f"dropped updates (type not allowed / drop_pending_updates): {dropped}")
        if self.down:
            state.append(f"server is DOWN (mode {self.down_mode})")
        if self.faults:
            state.append(
                "active faults: "
                + ", ".join(
                    f"{f.method or '*'}->{f.status} x{f.times if f.times is not None else 'inf'}" for f in self.faults
                )
            )
        if self.errors:
            state.append(f"emulator errors: {self.errors!r}")
        return "calls:\n" + "\n".join(lines) + "\n" + "\n".join(state)
