"""The emulator itself: an aiohttp Bot API server plus the test-control methods; see the package docstring."""

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
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from aiohttp import web

from emulator.telegram.records import (
    ApiCall,
    ApiError,
    CallbackQueryRecord,
    Fault,
    FloodLimits,
    StoredMessage,
    bad_request,
)
from emulator.telegram.text import (
    MAX_TEXT_LENGTH,
    EntityParseError,
    check_link,
    date_time_format,
    link_user_id,
    parse_html,
    sorted_entities,
    trim,
    utf16_len,
)

log = logging.getLogger(__name__)

MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_TEXT = 200
MAX_INLINE_BUTTONS = 100
MAX_COPY_TEXT = 256
BUTTON_STYLES = ("primary", "danger", "success")
MAX_DELETE_AGE = 48 * 3600  # seconds
EPHEMERAL_REPLY_WINDOW = 15.0  # seconds after a press in which any bot may answer it with an ephemeral message

ERR_UNAUTHORIZED = "Unauthorized"
ERR_NOT_FOUND = "Not Found"
ERR_TEXT_EMPTY = "Bad Request: message text is empty"
ERR_TEXT_TOO_LONG = "Bad Request: message is too long"
ERR_CHAT_NOT_FOUND = "Bad Request: chat not found"
ERR_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
ERR_DELETE_NOT_FOUND = "Bad Request: message to delete not found"
ERR_CANT_DELETE = "Bad Request: message can't be deleted"
ERR_REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
ERR_THREAD_NOT_FOUND = "Bad Request: message thread not found"
ERR_CANT_EDIT = "Bad Request: message can't be edited"
ERR_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
ERR_BUTTON_DATA = "Bad Request: BUTTON_DATA_INVALID"
ERR_BUTTON_URL = "Bad Request: BUTTON_URL_INVALID"
ERR_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
ERR_PARSE_ENTITIES = "Bad Request: can't parse entities: "
ERR_ENTITY = "Bad Request: can't parse MessageEntity: "
ERR_BUTTON = "Bad Request: can't parse inline keyboard button: "
ERR_EPHEMERAL_PARAMETERS = "Bad Request: can't parse EphemeralMessageParameters: "
ERR_PARSE_MODE = "Bad Request: unsupported parse_mode"
ERR_MARKDOWN = "Bad Request: parse_mode {mode} is not emulated: the emulator supports HTML only"
ERR_MARKUP_JSON = "Bad Request: can't parse reply keyboard markup JSON object"
ERR_SCOPE = "Bad Request: can't parse BotCommandScope: "
ERR_SCOPE_PRIVATE = "Bad Request: can't use specified scope in private chats"
ERR_SCOPE_CHANNEL = "Bad Request: can't change commands in channel chats"
ERR_LANGUAGE_CODE = "Bad Request: invalid language code specified"
ERR_CONFLICT_POLL = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"

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

# Update types getUpdates leaves out unless allowed_updates names them.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

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
        "allowed_updates",
        "commands",
        "scope",
        "reply_parameters",
        "link_preview_options",
        "ephemeral_message_parameters",
    }
)
_INT_FIELDS = frozenset(
    {
        "message_id",
        "ephemeral_message_id",
        "receiver_user_id",
        "offset",
        "limit",
        "timeout",
        "message_thread_id",
        "reply_to_message_id",
        "cache_time",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "allow_paid_broadcast",
    }
)
_JSON_ERRORS = {
    "reply_markup": ERR_MARKUP_JSON,
    "commands": "Bad Request: can't parse commands JSON object",
    "scope": "Bad Request: can't parse BotCommandScope JSON object",
    "entities": "Bad Request: can't parse entities JSON object",
    "allowed_updates": "Bad Request: can't parse allowed_updates JSON array",
}

_GLOBAL_SCOPES = frozenset({"default", "all_private_chats", "all_group_chats", "all_chat_administrators"})
_CHAT_SCOPES = frozenset({"chat", "chat_administrators", "chat_member"})
# A stored command list's scope: (BotCommandScope type, chat id, user id).
_ScopeKey = tuple[str, int | None, int | None]

_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_BOT_COMMAND_IN_TEXT_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_TOKEN_RE = re.compile(r"(\d+):[A-Za-z0-9_-]+")


_Handler = Callable[[dict[str, Any]], Any]


class _Content(NamedTuple):
    """A send's text as checked: the plain text, its entities, the markup as sent, and the buttons."""

    text: str
    entities: list[dict[str, Any]]
    raw: str
    parse_mode: str | None
    markup: dict[str, Any] | None


def _styled(button: dict[str, Any]) -> dict[str, Any]:
    """A button as the Bot API server keeps it: ``style`` read case-blind, one of primary, danger and success,
    and left out when it is the app's own (absent, empty or ``default``)."""
    kept = copy.deepcopy(button)
    style = kept.pop("style", None)
    if style is None:
        return kept
    style = str(style).lower()
    if style not in ("", "default", *BUTTON_STYLES):
        raise bad_request(ERR_BUTTON + "invalid button style specified")
    return {**kept, "style": style} if style in BUTTON_STYLES else kept


def _check_copy_text(value: Any) -> None:
    """A copy_text button holds a CopyTextButton whose text is 1-256 characters (the Bot API documents the
    limit, not the server's words for breaking it: the description here is the emulator's)."""
    if not isinstance(value, dict):
        raise bad_request(ERR_BUTTON + 'Field "copy_text" must be of type Object')
    text = value.get("text")
    if not isinstance(text, str):
        raise bad_request(ERR_BUTTON + 'Can\'t find field "text"')
    if not 1 <= utf16_len(text) <= MAX_COPY_TEXT:
        raise bad_request(f"Bad Request: copied text must be 1-{MAX_COPY_TEXT} characters")


def _entity(entity: dict[str, Any]) -> dict[str, Any]:
    """A MessageEntity as the Bot API server reads it; a ``date_time`` entity needs its ``unix_time`` and keeps its
    format in the server's own order (:func:`date_time_format`)."""
    if entity["type"] != "date_time":
        return dict(entity)
    unix_time = entity.get("unix_time")
    if isinstance(unix_time, bool) or not isinstance(unix_time, int):
        raise bad_request(ERR_ENTITY + 'Can\'t find field "unix_time"')
    form = date_time_format(str(entity.get("date_time_format") or ""))
    if form is None:
        raise bad_request(ERR_ENTITY + "Invalid date-time format specified")
    return {**entity, "date_time_format": form}


class BotApiEmulator:
    """In-process Telegram Bot API server with a test-control API; see the package docstring."""

    def __init__(
        self,
        token: str = "123456:TEST",  # noqa: S107
        bot_username: str = "reconbot_test",
        bot_first_name: str = "ReconBot Test",
        *,
        strict_chats: bool = False,
        strict_html_ampersand: bool = True,
        flood_limits: FloodLimits | None = None,
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
        self._default_flood_limits = flood_limits or FloodLimits()
        self.flood_limits = self._default_flood_limits
        self.enforce_flood_limits = False
        self.down = False
        self.down_mode = "reset"
        self.callback_query_timeout: float | None = None
        self.base_url: str | None = None

        self.calls: list[ApiCall] = []
        self.dropped_updates: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []

        self._pending: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] | None = None
        self._chats: dict[int, dict[str, Any]] = {}
        self._admins: dict[int, set[int]] = {}
        self._topics: dict[int, dict[int, str]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._messages: dict[int, dict[int, StoredMessage]] = {}
        self._next_message_id: dict[int, int] = {}
        self._ephemeral: dict[int, dict[int, StoredMessage]] = {}
        self._callback_queries: dict[str, CallbackQueryRecord] = {}
        self._callback_ids = itertools.count(1)
        self._commands: dict[tuple[_ScopeKey, str], list[dict[str, Any]]] = {}
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
                ("setMyCommands", self._m_set_my_commands),
                ("getMyCommands", self._m_get_my_commands),
                ("deleteMyCommands", self._m_delete_my_commands),
                ("sendMessage", self._m_send_message),
                ("editMessageText", self._m_edit_message_text),
                ("editMessageReplyMarkup", self._m_edit_message_reply_markup),
                ("answerCallbackQuery", self._m_answer_callback_query),
                ("deleteMessage", self._m_delete_message),
                ("deleteEphemeralMessage", self._m_delete_ephemeral_message),
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
    def active_polls(self) -> int:
        """How many getUpdates requests are currently being held."""
        return self._active_polls

    def reset(self) -> None:
        """Forget calls, chats, topics, messages, updates, faults, commands and rate records; restore the
        default switches (flood limits, ``down``, callback timeout); keep the server up."""
        self.calls.clear()
        self.dropped_updates.clear()
        self.errors.clear()
        self._pending.clear()
        self._allowed_updates = None
        self._chats.clear()
        self._admins.clear()
        self._topics.clear()
        self._users.clear()
        self._messages.clear()
        self._next_message_id.clear()
        self._ephemeral.clear()
        self._callback_queries.clear()
        self._commands.clear()
        self._faults.clear()
        self._send_times.clear()
        self._all_send_times.clear()
        self.flood_limits = self._default_flood_limits
        self.enforce_flood_limits = False
        self.down = False
        self.down_mode = "reset"
        self.callback_query_timeout = None

    # ------------------------------------------------------------------------------------- HTTP handling

    async def _handle_unknown_path(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(ApiError(404, ERR_NOT_FOUND).body(), status=404)

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
                raise bad_request("Bad Request: can't parse JSON object") from exc
            if not isinstance(body, dict):
                raise bad_request("Bad Request: can't parse JSON object")
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
        params: dict[str, Any] = {}
        fault: Fault | None = None
        try:
            raw = await self._read_params(request)
            params = dict(raw)
            if self.down:
                return await self._refuse(request, method, params, started)
            if token != self.token:
                raise ApiError(401, ERR_UNAUTHORIZED)
            if known is None:
                raise ApiError(404, ERR_NOT_FOUND)
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
        except ApiError as exc:
            body = exc.body()
            status = exc.status
        except asyncio.CancelledError:
            self._record(method, params, 0, None, started, fault, note="client disconnected")
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
        self._record(method, params, status, body, started, fault)
        return web.json_response(body, status=status)

    async def _refuse(
        self, request: web.Request, method: str, params: dict[str, Any], started: float
    ) -> web.StreamResponse:
        if self.down_mode == "502":
            body = ApiError(502, "Bad Gateway").body()
            self._record(method, params, 502, body, started, None, note="server down")
            return web.json_response(body, status=502)
        self._record(method, params, 0, None, started, None, note="connection reset (server down)")
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=502)

    def _record(
        self,
        method: str,
        params: dict[str, Any],
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
                        raise bad_request(message) from exc
                elif key in _INT_FIELDS:
                    try:
                        value = int(value)
                    except ValueError as exc:
                        raise bad_request(f"Bad Request: invalid {key} specified") from exc
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
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    # --------------------------------------------------------------------------------------- chat helpers

    def _chat_for(self, chat_id: Any, *, create: bool = True) -> dict[str, Any]:
        if chat_id is None or chat_id == "":
            raise bad_request("Bad Request: chat_id is empty")
        if isinstance(chat_id, str):
            name = chat_id.lstrip("@").lower()
            for chat in self._chats.values():
                if str(chat.get("username", "")).lower() == name and chat_id.startswith("@"):
                    return chat
            raise bad_request(ERR_CHAT_NOT_FOUND)
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            raise bad_request(ERR_CHAT_NOT_FOUND)
        chat = self._chats.get(chat_id)
        if chat is None:
            if self.strict_chats or not create or chat_id == 0:
                raise bad_request(ERR_CHAT_NOT_FOUND)
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
            except ApiError:
                return None
        if not isinstance(message_id, int):
            return None
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None or message.deleted:
            return None
        return message

    # --------------------------------------------------------------------------------------- validation

    def _prepare_text(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str, str | None]:
        """``(text, entities, markup as sent, parse_mode)`` of a send or edit, checked as Telegram does."""
        raw = params.get("text")
        if raw is None or raw == "":
            raise bad_request(ERR_TEXT_EMPTY)
        if not isinstance(raw, str):
            raw = json.dumps(raw) if isinstance(raw, (dict, list)) else str(raw)
        parse_mode = params.get("parse_mode") or None
        if parse_mode is not None:
            mode = str(parse_mode).lower()
            if mode in ("markdown", "markdownv2"):
                raise bad_request(ERR_MARKDOWN.format(mode=parse_mode))
            if mode != "html":
                raise bad_request(ERR_PARSE_MODE)
            parse_mode = "HTML"
        explicit = params.get("entities")
        if explicit:
            if not isinstance(explicit, list) or not all(
                isinstance(entity, dict)
                and isinstance(entity.get("type"), str)
                and isinstance(entity.get("offset"), int)
                and isinstance(entity.get("length"), int)
                for entity in explicit
            ):
                raise bad_request("Bad Request: can't parse entities JSON object")
            text, entities = raw, sorted_entities([_entity(entity) for entity in explicit])
            parse_mode = None
        elif parse_mode is not None:
            try:
                text, entities = parse_html(raw, strict_ampersand=self.strict_html_ampersand)
            except EntityParseError as exc:
                raise bad_request(ERR_PARSE_ENTITIES + str(exc)) from exc
        else:
            text, entities = raw, []
        text, entities = trim(text, entities)
        if not text:
            raise bad_request(ERR_TEXT_EMPTY)
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise bad_request(ERR_TEXT_TOO_LONG)
        return text, entities, raw, parse_mode

    def _prepare_markup(self, markup: Any, *, inline_only: bool = False) -> dict[str, Any] | None:
        if markup is None or markup == "":
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError as exc:
                raise bad_request(ERR_MARKUP_JSON) from exc
        if not isinstance(markup, dict):
            raise bad_request(ERR_MARKUP_JSON)
        if "inline_keyboard" not in markup:
            if inline_only:
                raise bad_request("Bad Request: inline keyboard expected")
            if not any(key in markup for key in ("keyboard", "remove_keyboard", "force_reply")):
                raise bad_request(ERR_MARKUP_JSON)
            return copy.deepcopy(markup)
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        count = 0
        clean_rows: list[list[dict[str, Any]]] = []
        for row in rows:
            clean_row: list[dict[str, Any]] = []
            for button in row:
                if not isinstance(button, dict):
                    raise bad_request(
                        "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must be an Object"
                    )
                text = button.get("text")
                if not isinstance(text, str):
                    raise bad_request(
                        'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String'
                    )
                if not text.strip():
                    raise bad_request("Bad Request: BUTTON_TEXT_INVALID")
                if not any(key in button for key in _INLINE_BUTTON_ACTIONS):
                    raise bad_request(
                        "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the "
                        "inline keyboard"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                        raise bad_request(ERR_BUTTON_DATA)
                if "url" in button:
                    url = button["url"]
                    if not isinstance(url, str) or (check_link(url) is None and link_user_id(url) is None):
                        raise bad_request(ERR_BUTTON_URL)
                if "copy_text" in button:
                    _check_copy_text(button["copy_text"])
                count += 1
                clean_row.append(_styled(button))
            if clean_row:
                clean_rows.append(clean_row)
        if count > MAX_INLINE_BUTTONS:
            raise bad_request("Bad Request: reply markup is too long")
        if not clean_rows:
            return None
        return {**copy.deepcopy(markup), "inline_keyboard": clean_rows}

    def _flood_retry_after(self, chat: dict[str, Any], now: float) -> int | None:
        """Seconds to wait before a sendMessage to ``chat`` is within :attr:`flood_limits`; None when it is."""
        limits = self.flood_limits
        times = self._send_times.get(chat["id"], [])
        wait = 0.0
        if chat["type"] == "private":
            burst, rate = float(limits.private_burst), limits.private_per_second
            tokens, last = burst, None
            for moment in times:
                if last is not None:
                    tokens = min(burst, tokens + (moment - last) * rate)
                tokens -= 1
                last = moment
            if last is not None:
                tokens = min(burst, tokens + (now - last) * rate)
            if tokens < 1:
                wait = (1 - tokens) / rate
        else:
            window = [moment for moment in times if now - moment < 60.0]
            if len(window) >= limits.group_per_minute:
                wait = 60.0 - (now - window[-limits.group_per_minute])
        recent = [moment for moment in self._all_send_times[-limits.global_per_second :] if now - moment < 1.0]
        if len(recent) >= limits.global_per_second:
            wait = max(wait, 1.0 - (now - recent[0]))
        return max(1, math.ceil(wait)) if wait > 0 else None

    def _thread_for(self, chat: dict[str, Any], thread_id: Any, reply_to: StoredMessage | None) -> int | None:
        """The forum topic of a new bot message: ``message_thread_id`` if given, else the replied message's."""
        if not isinstance(thread_id, int) or thread_id <= 0:
            return reply_to.thread_id if reply_to is not None and reply_to.chat_id == chat["id"] else None
        if not chat.get("is_forum") or thread_id not in self._topics.get(chat["id"], {}):
            raise bad_request(ERR_THREAD_NOT_FOUND)
        return thread_id

    def _scope_key(self, scope: Any, *, create: bool = True) -> _ScopeKey:
        """Check a BotCommandScope as the Bot API server does; returns ``(type, chat_id, user_id)``."""
        if scope is None or scope == "":
            return "default", None, None
        if not isinstance(scope, dict):
            raise bad_request(ERR_SCOPE + "BotCommandScope must be an Object")
        kind = scope.get("type")
        if not isinstance(kind, str):
            raise bad_request(ERR_SCOPE + 'Can\'t find field "type"')
        if kind in _GLOBAL_SCOPES:
            return kind, None, None
        if kind not in _CHAT_SCOPES:
            raise bad_request(ERR_SCOPE + "Unsupported type specified")
        chat_id = scope.get("chat_id")
        if chat_id is None:
            raise bad_request(ERR_SCOPE + 'Can\'t find field "chat_id"')
        if chat_id == "":
            raise bad_request(ERR_SCOPE + "Empty chat_id specified")
        user_id = None
        if kind == "chat_member":
            user_id = scope.get("user_id")
            if user_id is None:
                raise bad_request(ERR_SCOPE + 'Can\'t find field "user_id"')
            if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
                raise bad_request(ERR_SCOPE + "Invalid user_id specified")
        if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
            chat_id = int(chat_id)
        chat = self._chat_for(chat_id, create=create)
        if chat["type"] == "private" and kind != "chat":
            raise bad_request(ERR_SCOPE_PRIVATE)
        if chat["type"] == "channel":
            raise bad_request(ERR_SCOPE_CHANNEL)
        return kind, chat["id"], user_id

    @staticmethod
    def _language_code(params: dict[str, Any]) -> str:
        code = str(params.get("language_code") or "")
        if code and not re.fullmatch(r"[a-z]{2}", code):
            raise bad_request(ERR_LANGUAGE_CODE)
        return code

    def _can_delete(self, message: StoredMessage) -> bool:
        """The Bot API's deleteMessage rules: an administrator bot (``add_chat(admins=[bot_id])``) deletes
        anything in its group or channel; otherwise only messages younger than 48 hours that it sent, or
        that it received in a private chat."""
        if message.chat["type"] != "private" and self.bot_id in self._admins.get(message.chat_id, ()):
            return True
        if time.time() - message.date >= MAX_DELETE_AGE:
            return False
        return message.from_bot or message.chat["type"] == "private"

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
        offset = params.get("offset")
        limit = params.get("limit") or 100
        limit = min(max(int(limit), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            if not isinstance(allowed, list) or not all(isinstance(kind, str) for kind in allowed):
                raise bad_request("Bad Request: can't parse allowed_updates JSON array")
            self._allowed_updates = frozenset(allowed) or None
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
                    raise ApiError(409, ERR_CONFLICT_POLL)
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
            allowed = kind not in _OPT_IN_UPDATES if self._allowed_updates is None else kind in self._allowed_updates
            (kept if allowed else self.dropped_updates).append(update)
        self._pending = kept
        return copy.deepcopy(kept[:limit])

    def _wake_pollers(self) -> None:
        event, self._update_event = self._update_event, asyncio.Event()
        event.set()

    def _m_set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands") or []
        if not isinstance(commands, list):
            raise bad_request("Bad Request: can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("Bad Request: too many commands specified")
        stored: list[dict[str, Any]] = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("Bad Request: can't parse BotCommand JSON object")
            name = command.get("command")
            description = command.get("description")
            if not isinstance(name, str) or not _COMMAND_RE.fullmatch(name):
                raise bad_request("Bad Request: BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise bad_request("Bad Request: command description must be non-empty")
            stored.append({"command": name, "description": description})
        key = self._scope_key(params.get("scope")), self._language_code(params)
        if stored:
            self._commands[key] = stored
        else:
            self._commands.pop(key, None)
        return True

    def _m_get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        key = self._scope_key(params.get("scope")), self._language_code(params)
        return copy.deepcopy(self._commands.get(key, []))

    def _m_delete_my_commands(self, params: dict[str, Any]) -> bool:
        self._commands.pop((self._scope_key(params.get("scope")), self._language_code(params)), None)
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
            raise bad_request(ERR_REPLY_NOT_FOUND)
        return target

    def _m_send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for(params.get("chat_id"))
        text, entities, raw, parse_mode = self._prepare_text(params)
        markup = self._prepare_markup(params.get("reply_markup"))
        content = _Content(text, entities, raw, parse_mode, markup)
        if params.get("ephemeral_message_parameters") is not None:
            return self._send_ephemeral(chat, params, content)
        reply_to = self._reply_target(chat, params)
        thread_id = self._thread_for(chat, params.get("message_thread_id"), reply_to)
        now = time.monotonic()
        if self.enforce_flood_limits:
            retry_after = self._flood_retry_after(chat, now)
            if retry_after is not None:
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        message_id = self._new_message_id(chat["id"])
        message = self._sent(chat, message_id, params, content, now, reply_to=reply_to, thread_id=thread_id)
        self._messages.setdefault(chat["id"], {})[message.message_id] = message
        self._send_times.setdefault(chat["id"], []).append(now)
        self._all_send_times.append(now)
        return message.to_api()

    def _ephemeral_receiver(self, chat: dict[str, Any], parameters: Any) -> tuple[dict[str, Any], int | None]:
        """Check an EphemeralMessageParameters as "Ephemeral Messages and Commands" states the rules: groups and
        supergroups only; within 15 seconds of the receiver's own press in this chat (``callback_query_id``),
        or at any time to any non-bot member when the bot is an administrator there. Returns the receiver and
        the message the ephemeral one replaces in their view. The descriptions of these refusals are the
        emulator's (the Bot API states the rules, not the server's words), except an unknown or late query's."""
        if not isinstance(parameters, dict):
            raise bad_request(ERR_EPHEMERAL_PARAMETERS + "EphemeralMessageParameters must be an Object")
        receiver_id = parameters.get("receiver_user_id")
        if isinstance(receiver_id, bool) or not isinstance(receiver_id, int):
            raise bad_request(ERR_EPHEMERAL_PARAMETERS + 'Can\'t find field "receiver_user_id"')
        if chat["type"] not in ("group", "supergroup"):
            raise bad_request("Bad Request: ephemeral messages can be sent only in groups and supergroups")
        query_id = parameters.get("callback_query_id")
        replace = bool(parameters.get("replace_callback_query_message"))
        if replace and not query_id:
            raise bad_request("Bad Request: replace_callback_query_message needs a callback_query_id")
        receiver = self._users.get(receiver_id) or {"id": receiver_id, "is_bot": False, "first_name": ""}
        if receiver.get("is_bot"):
            raise bad_request("Bad Request: ephemeral messages can't be sent to bots")
        if not query_id:
            if self.bot_id not in self._admins.get(chat["id"], ()):
                raise bad_request("Bad Request: not enough rights to send ephemeral messages")
            return dict(receiver), None
        record = self._callback_queries.get(str(query_id))
        if (
            record is None
            or record.user["id"] != receiver_id
            or record.chat_id != chat["id"]
            or time.monotonic() - record.created_at > EPHEMERAL_REPLY_WINDOW
        ):
            raise bad_request(ERR_QUERY_INVALID)
        if replace and record.message_id == 0:
            raise bad_request("Bad Request: a press on an ephemeral message is answered by editing that message")
        return dict(receiver), record.message_id if replace else None

    def _sent(
        self,
        chat: dict[str, Any],
        message_id: int,
        params: dict[str, Any],
        content: _Content,
        now: float,
        **extra: Any,
    ) -> StoredMessage:
        """The bot's new message as sent, its first version recorded."""
        message = StoredMessage(
            chat=chat,
            message_id=message_id,
            sender=dict(self.bot_user),
            date=int(time.time()),
            text=content.text,
            entities=content.entities,
            raw_text=content.raw,
            parse_mode=content.parse_mode,
            reply_markup=content.markup,
            params=dict(params),
            sent_at=now,
            silent=bool(params.get("disable_notification")),
            **extra,
        )
        message.snapshot("sendMessage", now)
        return message

    def _send_ephemeral(self, chat: dict[str, Any], params: dict[str, Any], content: _Content) -> dict[str, Any]:
        """A message only ``receiver_user_id`` sees: kept apart from the chat's messages
        (:meth:`ephemeral_messages`), answered with ``message_id`` 0 and its ``ephemeral_message_id``."""
        receiver, replaces = self._ephemeral_receiver(chat, params["ephemeral_message_parameters"])
        kept = self._ephemeral.setdefault(chat["id"], {})
        number = max(kept, default=0) + 1
        ephemeral = {"receiver": receiver, "ephemeral_message_id": number, "replaces": replaces}
        kept[number] = self._sent(chat, 0, params, content, time.monotonic(), **ephemeral)
        return kept[number].to_api()

    def _m_delete_ephemeral_message(self, params: dict[str, Any]) -> bool:
        kept = self._ephemeral.get(self._chat_for(params.get("chat_id"), create=False)["id"], {})
        message = kept.get(params.get("ephemeral_message_id"))  # type: ignore[arg-type]
        if message is None or message.deleted or (message.receiver or {}).get("id") != params.get("receiver_user_id"):
            raise bad_request(ERR_DELETE_NOT_FOUND)
        message.deleted = True
        message.deleted_at = time.monotonic()
        return True

    def _message_for_edit(self, params: dict[str, Any]) -> StoredMessage:
        if params.get("inline_message_id"):
            raise bad_request(ERR_EDIT_NOT_FOUND)
        if params.get("chat_id") in (None, ""):
            raise bad_request("Bad Request: chat_id is empty")
        if params.get("message_id") is None:
            raise bad_request("Bad Request: message identifier is not specified")
        message = self._lookup(params["chat_id"], params["message_id"])
        if message is None:
            raise bad_request(ERR_EDIT_NOT_FOUND)
        if not message.from_bot:
            raise bad_request(ERR_CANT_EDIT)
        return message

    def _m_edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_for_edit(params)
        text, entities, raw, parse_mode = self._prepare_text(params)
        markup = self._prepare_markup(params.get("reply_markup"), inline_only=True)
        if text == message.text and entities == message.entities and markup == message.inline_markup:
            raise bad_request(ERR_NOT_MODIFIED)
        now = time.monotonic()
        message.text, message.entities, message.raw_text, message.parse_mode = text, entities, raw, parse_mode
        message.reply_markup = markup
        message.edit_date = int(time.time())
        message.snapshot("editMessageText", now)
        return message.to_api()

    def _m_edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_for_edit(params)
        markup = self._prepare_markup(params.get("reply_markup"), inline_only=True)
        if markup == message.inline_markup:
            raise bad_request(ERR_NOT_MODIFIED)
        message.reply_markup = markup
        message.edit_date = int(time.time())
        message.snapshot("editMessageReplyMarkup", time.monotonic())
        return message.to_api()

    def _m_answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = params.get("callback_query_id")
        if query_id in (None, ""):
            raise bad_request("Bad Request: callback_query_id is empty")
        record = self._callback_queries.get(str(query_id))
        if record is None:
            raise bad_request(ERR_QUERY_INVALID)
        record.answers.append(dict(params))
        if record.answer is not None:
            raise bad_request(ERR_QUERY_INVALID)
        timeout = self.callback_query_timeout
        if timeout is not None and time.monotonic() - record.created_at > timeout:
            raise bad_request(ERR_QUERY_INVALID)
        text = params.get("text")
        if isinstance(text, str) and len(text) > MAX_CALLBACK_ANSWER_TEXT:
            raise bad_request("Bad Request: MESSAGE_TOO_LONG")
        record.answer = dict(params)
        return True

    def _m_delete_message(self, params: dict[str, Any]) -> bool:
        if params.get("chat_id") in (None, ""):
            raise bad_request("Bad Request: chat identifier is not specified")
        if not params.get("message_id"):
            raise bad_request("Bad Request: message identifier is not specified")
        message = self._lookup(params["chat_id"], params["message_id"])
        if message is None:
            raise bad_request(ERR_DELETE_NOT_FOUND)
        if not self._can_delete(message):
            raise bad_request(ERR_CANT_DELETE)
        message.deleted = True
        message.deleted_at = time.monotonic()
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
        is_forum: bool | None = None,
        admins: Iterable[int] | None = None,
    ) -> dict[str, Any]:
        """Register (or update) a chat the bot knows; returns the Bot API Chat object.

        ``is_forum=True`` makes a supergroup a forum (see :meth:`add_topic`); ``admins`` sets the chat's
        administrators (user ids; include ``bot_id`` to make the bot one).  None leaves either unchanged.
        """
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(f"unknown chat type {chat_type!r}")
        if chat_type == "private" and chat_id <= 0:
            raise ValueError("a private chat id is the user's (positive) id")
        if chat_type != "private" and chat_id >= 0:
            raise ValueError(f"a {chat_type} chat id must be negative, got {chat_id}")
        if is_forum and chat_type != "supergroup":
            raise ValueError("only a supergroup can be a forum")
        if admins is not None and chat_type == "private":
            raise ValueError("a private chat has no administrators")
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
        if is_forum:
            chat["is_forum"] = True
        elif is_forum is not None:
            chat.pop("is_forum", None)
        if admins is not None:
            self._admins[chat_id] = set(admins)
        return chat

    def add_topic(self, chat_id: int, name: str = "", *, thread_id: int | None = None) -> int:
        """Open a topic in a forum supergroup; returns its ``message_thread_id``.

        As in Telegram the id is that of the topic's creation message (not stored): the chat's next
        message id, or ``thread_id`` when given.  The General topic has no thread id and cannot be added.
        """
        chat = self._chats.get(chat_id)
        if chat is None or not chat.get("is_forum"):
            raise ValueError(f"chat {chat_id} is not a forum; call add_chat(..., 'supergroup', is_forum=True)")
        next_id = max(self._next_message_id.get(chat_id, 1), 2)
        thread_id = next_id if thread_id is None else thread_id
        if thread_id < 2:
            raise ValueError("forum topic ids start at 2 (the General topic has no message_thread_id)")
        self._next_message_id[chat_id] = max(next_id, thread_id + 1)
        self._topics.setdefault(chat_id, {})[thread_id] = name or f"Topic {thread_id}"
        return thread_id

    def add_update(self, payload: dict[str, Any]) -> int:
        """Queue a raw update (e.g. ``{"my_chat_member": {...}}``); the update_id is assigned here."""
        update_id = self._next_update_id
        self._next_update_id += 1
        update = {"update_id": update_id, **copy.deepcopy(payload)}
        self._pending.append(update)
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
        thread_id: int | None = None,
    ) -> int:
        """Queue a ``message`` update from a user; returns its update_id.

        Private chats use ``chat_id = user_id``; group and supergroup chats need a negative ``chat_id``.
        A leading ``/command`` (optionally ``@botname``) gets a ``bot_command`` entity as Telegram adds.
        ``thread_id`` posts in that topic of a forum (the topic is opened if unknown); a reply without
        it lands in the replied message's topic.
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
        if thread_id is not None and thread_id not in self._topics.get(chat_id, {}):
            self.add_topic(chat_id, thread_id=thread_id)
        elif thread_id is None and target is not None and target.chat_id == chat_id:
            thread_id = target.thread_id
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
            thread_id=thread_id,
        )
        message.snapshot("user", now)
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
        this callback_data, as a real client can only press buttons it shows.  ``check_button=False``
        delivers any data of 1-64 bytes (a stale or forged press).
        """
        if not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
            raise ValueError(f"callback data must be 1-{MAX_CALLBACK_DATA_BYTES} bytes in UTF-8, got {data!r}")
        if isinstance(message, StoredMessage):
            chat_id, message_id = message.chat_id, message.message_id
        else:
            chat_id, message_id = message
        if isinstance(message, StoredMessage) and message.ephemeral:
            stored = message
            if (stored.receiver or {}).get("id") != user_id:
                raise ValueError(f"only its receiver sees ephemeral message {stored.ephemeral_message_id}")
        else:
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
        self._callback_queries[query_id] = CallbackQueryRecord(
            id=query_id,
            user=dict(user),
            chat_id=chat_id,
            message_id=message_id,
            data=data,
            update_id=self._next_update_id,
            created_at=time.monotonic(),
        )
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

    def ephemeral_messages(
        self, chat_id: int, user_id: int | None = None, *, include_deleted: bool = False
    ) -> list[StoredMessage]:
        """The ephemeral messages of a chat (those one user sees, when given), in order; not deleted ones."""
        return [
            message
            for message in self._ephemeral.get(chat_id, {}).values()
            if (include_deleted or not message.deleted)
            and (user_id is None or (message.receiver or {}).get("id") == user_id)
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

    def callback_query(self, cq_id: str) -> CallbackQueryRecord:
        """The record of a press made with :meth:`user_presses`; KeyError when unknown."""
        try:
            return self._callback_queries[str(cq_id)]
        except KeyError:
            raise KeyError(f"unknown callback query {cq_id!r}") from None

    def callback_answers(self, cq_id: str) -> list[dict[str, Any]]:
        """Params of every answerCallbackQuery that reached this query, in order (accepted or not)."""
        return [dict(answer) for answer in self.callback_query(cq_id).answers]

    def callback_answer(self, cq_id: str) -> dict[str, Any] | None:
        """Params of the accepted answer of this query, or None while unanswered."""
        answer = self.callback_query(cq_id).answer
        return dict(answer) if answer is not None else None

    def unanswered_callback_queries(self) -> list[CallbackQueryRecord]:
        """Presses that did not get exactly one answer: none accepted, or more than one attempted.

        ``assert tg.unanswered_callback_queries() == []`` once the handlers have settled checks that
        every press stopped the client's spinner exactly once.
        """
        return [record for record in self._callback_queries.values() if not record.answered_once]

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, Any]]:
        """The list setMyCommands stored for exactly this scope and language (default scope when None)."""
        try:
            key = self._scope_key(scope, create=False), self._language_code({"language_code": language_code})
        except ApiError as exc:
            raise ValueError(exc.description) from None
        return copy.deepcopy(self._commands.get(key, []))

    def commands_for(
        self,
        user_id: int,
        chat_id: int,
        chat_type: str | None = None,
        *,
        language_code: str | None = None,
        is_admin: bool | None = None,
    ) -> list[dict[str, Any]]:
        """The command list Telegram would show ``user_id`` in ``chat_id``'s menu.

        Follows the Bot API's "Determining list of commands": the first list set, from the narrowest scope
        to ``default``, each tried with the user's language and then without; administrator scopes count
        only for administrators.  Defaults: ``chat_type`` is the known chat's (else private for a positive
        id, supergroup for a negative one), ``language_code`` the user's from :meth:`user_sends` (its
        first two letters), ``is_admin`` whether :meth:`add_chat` listed the user in ``admins``.
        """
        if chat_type is None:
            known = self._chats.get(chat_id)
            chat_type = known["type"] if known else ("private" if chat_id > 0 else "supergroup")
        if language_code is None:
            language_code = str(self._users.get(user_id, {}).get("language_code") or "")
        if is_admin is None:
            is_admin = user_id in self._admins.get(chat_id, ())
        scopes: list[_ScopeKey]
        if chat_type == "private":
            scopes = [("chat", chat_id, None), ("all_private_chats", None, None)]
        elif chat_type in ("group", "supergroup"):
            scopes = [("chat_member", chat_id, user_id)]
            scopes += [("chat_administrators", chat_id, None)] if is_admin else []
            scopes += [("chat", chat_id, None)]
            scopes += [("all_chat_administrators", None, None)] if is_admin else []
            scopes += [("all_group_chats", None, None)]
        else:
            raise ValueError(f"Telegram shows no bot command menu in a {chat_type} chat")
        scopes.append(("default", None, None))
        for scope in scopes:
            for language in dict.fromkeys((language_code[:2].lower(), "")):
                found = self._commands.get((scope, language))
                if found:
                    return copy.deepcopy(found)
        return []

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
                if self._allowed_updates is None
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
