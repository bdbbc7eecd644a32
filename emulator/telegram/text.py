"""Bot API text rules: UTF-16 lengths, TDLib's HTML entity parser, link checks and trimming."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_TEXT_LENGTH = 4096


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
# Tags that stand for one entity type each; "a", "tg-emoji", "pre", "code" and "blockquote" take arguments.
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_HTML_TAGS = frozenset(_SIMPLE_TAGS) | {"a", "tg-emoji", "tg-time", "pre", "code", "blockquote"}
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
    "date_time": 30,
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


def sorted_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities in TDLib's order: by offset, longer first, then by type priority."""
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


def link_user_id(url: str) -> int | None:
    """The user id of a ``tg://user?id=N`` link, else None."""
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


def check_link(url: str) -> str | None:
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
    user_id = link_user_id(url)
    if user_id is not None:
        return {
            "type": "text_mention",
            "offset": offset,
            "length": length,
            "user": {"id": user_id, "is_bot": False, "first_name": ""},
        }
    normalized = check_link(url)
    if normalized is None:
        return None
    return {"type": "text_link", "offset": offset, "length": length, "url": normalized}


def date_time_format(value: str) -> str | None:
    """A ``date_time`` entity's format as the Bot API server returns it, or None when it is invalid: ``r``
    (relative) alone, else any of ``w``/``W`` (day of week), ``d``/``D`` (short / long date) and ``t``/``T``
    (short / long time), given in any order and returned as ``w``, date, time (TDLib's FormattedDate; the
    short form wins when both are given)."""
    if value in ("r", "R"):
        return "r"
    if any(ch not in "wWdDtT" for ch in value):
        return None
    week = "w" if any(ch in "wW" for ch in value) else ""
    day = "d" if "d" in value else "D" if "D" in value else ""
    time = "t" if "t" in value else "T" if "T" in value else ""
    return week + day + time


def _leading_int(value: str) -> int:
    """TDLib's ``to_integer<int32>``: the leading digits (after an optional minus), 0 when there are none."""
    match = re.match(r"-?\d+", value.strip())
    return int(match.group(0)) if match else 0


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
    date: int = 0  # a tg-time's unix attribute


def parse_html(markup: str, *, strict_ampersand: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Parse Bot API HTML into ``(plain text, entities)``; raises :class:`EntityParseError`.

    Follows TDLib's ``parse_html``: supported tags are b/strong, i/em, u/ins, s/strike/del,
    span class="tg-spoiler", tg-spoiler, a href, tg-emoji emoji-id, code (class="language-x"), pre,
    blockquote (expandable), tg-time unix format (a ``date_time`` entity: a format that is not
    :func:`date_time_format`'s is an error, a unix time that is no positive number makes no entity);
    entities ``&lt; &gt; &amp; &quot;`` and numeric references.
    ``strict_ampersand`` rejects a bare ``&`` in text content.
    """
    n = len(markup)
    out: list[str] = []
    u16 = 0
    stack: list[_HtmlOpen] = []
    entities: list[dict[str, Any]] = []
    i = 0

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
                raise EntityParseError(
                    f'Character "&" must be escaped as "&amp;" at byte offset {_byte_offset(markup, i)}'
                )
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
                raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(markup, begin)}")
            name = markup[begin + 1 : i].lower()
            if name not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {_byte_offset(markup, begin)}')
            argument = ""
            date = 0
            while _at(markup, i) != ">":
                i = skip_spaces(i)
                if i >= n:
                    raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(markup, begin)}")
                if markup[i] == ">":
                    break
                attribute_begin = i
                while i < n and markup[i] not in _SPACE and markup[i] not in "=>":
                    i += 1
                attribute = markup[attribute_begin:i].lower()
                if not attribute:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{name}" at byte offset {_byte_offset(markup, begin)}'
                    )
                i = skip_spaces(i)
                if _at(markup, i) != "=":
                    if name == "blockquote" and attribute == "expandable":
                        argument = "1"
                    continue
                i = skip_spaces(i + 1)
                if i >= n:
                    raise EntityParseError(f'Unclosed start tag "{name}" at byte offset {_byte_offset(markup, begin)}')
                if markup[i] not in "'\"":
                    token_begin = i
                    while i < n and ((markup[i].isascii() and markup[i].isalnum()) or markup[i] in ".-"):
                        i += 1
                    value = markup[token_begin:i].lower()
                    if i < n and markup[i] not in _SPACE and markup[i] != ">":
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {_byte_offset(markup, token_begin)}"
                        )
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
                    raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(markup, begin)}")
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
                elif name == "tg-time" and attribute == "unix":
                    date = _leading_int(value)
                elif name == "tg-time" and attribute == "format":
                    argument = value
            if name == "span" and argument != "spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(markup, begin)}'
                )
            stack.append(_HtmlOpen(name, argument, u16, len(out), date))
            i += 1
            continue

        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {_byte_offset(markup, begin)}")
        while _at(markup, i) not in _SPACE and _at(markup, i) != ">":
            i += 1
        end_name = markup[begin + 2 : i].lower()
        i = skip_spaces(i)
        if _at(markup, i) != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {_byte_offset(markup, begin)}")
        i += 1
        top = stack.pop()
        if end_name and end_name != top.name:
            raise EntityParseError(
                f"Unmatched end tag at byte offset {_byte_offset(markup, begin)}, "
                f'expected "</{top.name}>", found "</{end_name}>"'
            )
        length = u16 - top.offset
        if length <= 0:
            continue
        offset = top.offset
        if top.name in _SIMPLE_TAGS:
            entities.append({"type": _SIMPLE_TAGS[top.name], "offset": offset, "length": length})
        elif top.name == "tg-emoji":
            if not top.argument.isdigit() or int(top.argument) == 0:
                raise EntityParseError("Invalid custom emoji identifier specified")
            entities.append(
                {"type": "custom_emoji", "offset": offset, "length": length, "custom_emoji_id": top.argument}
            )
        elif top.name == "tg-time":
            form = date_time_format(top.argument)
            if form is None:
                raise EntityParseError("Invalid date format used")
            if top.date > 0:
                entities.append(
                    {"type": "date_time", "offset": offset, "length": length, "unix_time": top.date,
                     "date_time_format": form}
                )  # fmt: skip
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
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    for entity in entities:
        entity.pop("_language", None)
    text = "".join(out)
    _check_unicode(text)
    return text, sorted_entities(entities)


_TRIM_CHARS = " \t\n\r\v\f"


def trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Strip leading and trailing whitespace as Telegram does, clipping the entities to the result."""
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
