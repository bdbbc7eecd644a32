"""What the emulator records: API calls, stored messages and their versions, button presses, faults, limits."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """A Bot API error answer: HTTP status, description and optional ``parameters``."""

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


def bad_request(description: str) -> ApiError:
    return ApiError(400, description)


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

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is None:
            if method == "getUpdates":
                return False
        elif self.method.lower() != method.lower():
            return False
        return self.chat_id is None or params.get("chat_id") == self.chat_id

    def error(self) -> ApiError:
        parameters = {"retry_after": self.retry_after} if self.retry_after is not None else None
        return ApiError(self.status, self.description, parameters)


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
            "message_thread_id",
            "text",
            "callback_query_id",
            "offset",
            "timeout",
            "allowed_updates",
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
    ``silent`` is the ``disable_notification`` it was sent with; ``thread_id`` the forum topic it is in
    (None outside topics).
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
    silent: bool = False
    thread_id: int | None = None
    edit_date: int | None = None
    deleted: bool = False
    deleted_at: float | None = None
    history: list[MessageVersion] = field(default_factory=list)
    # An ephemeral message: who alone sees it, its id among the chat's ephemeral messages, and the message it
    # stands in place of in that user's view (replace_callback_query_message).
    receiver: dict[str, Any] | None = None
    ephemeral_message_id: int | None = None
    replaces: int | None = None

    @property
    def ephemeral(self) -> bool:
        return self.ephemeral_message_id is not None

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
        payload: dict[str, Any] = {"message_id": 0 if self.ephemeral else self.message_id}
        if self.thread_id is not None:
            payload["message_thread_id"] = self.thread_id
        payload.update({"from": dict(self.sender), "chat": dict(self.chat), "date": self.date})
        if with_reply and self.reply_to is not None:
            payload["reply_to_message"] = self.reply_to.to_api(with_reply=False)
        if self.edit_date is not None:
            payload["edit_date"] = self.edit_date
        payload["text"] = self.text
        if self.entities:
            payload["entities"] = copy.deepcopy(self.entities)
        if self.inline_markup is not None:
            payload["reply_markup"] = copy.deepcopy(self.inline_markup)
        if self.thread_id is not None:
            payload["is_topic_message"] = True
        if self.ephemeral:
            payload["receiver_user"] = dict(self.receiver or {})
            payload["ephemeral_message_id"] = self.ephemeral_message_id
        return payload

    def snapshot(self, method: str, at: float) -> None:
        """Append the current state to ``history``."""
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
    """A button press queued by :meth:`BotApiEmulator.user_presses` and the bot's answers to it.

    ``answers`` holds the params of every answerCallbackQuery that reached the query (rejected ones
    included: Telegram accepts one answer per query), ``answer`` the accepted one.
    """

    id: str
    user: dict[str, Any]
    chat_id: int
    message_id: int
    data: str
    update_id: int
    created_at: float
    answer: dict[str, Any] | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answered_once(self) -> bool:
        return self.answer is not None and len(self.answers) == 1

    @property
    def text(self) -> str | None:
        """The accepted answer's notification text (None when unanswered or answered without text)."""
        return (self.answer or {}).get("text")

    @property
    def show_alert(self) -> bool:
        return bool((self.answer or {}).get("show_alert"))


@dataclass(frozen=True)
class FloodLimits:
    """sendMessage rate limits as Telegram applies them, enforced while ``enforce_flood_limits`` is on.

    Private chats: a token bucket refilled at ``private_per_second`` holding ``private_burst`` messages
    (one message a second, short bursts allowed).  Groups, supergroups and channels: at most
    ``group_per_minute`` messages in any 60 s.  All chats together: at most ``global_per_second``
    messages in any second.  A send over a limit answers 429 with ``retry_after``.
    """

    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: int = 20
    global_per_second: int = 30
