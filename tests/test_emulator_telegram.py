"""End-to-end tests of the Bot API emulator driven by a real aiogram Bot and Dispatcher."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BotCommandScopeChatAdministrators,
    BotCommandScopeChatMember,
    BotCommandScopeDefault,
    CallbackQuery,
    CopyTextButton,
    EphemeralMessageParameters,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
)
from aiogram.utils.backoff import BackoffConfig
from aiogram.utils.keyboard import InlineKeyboardBuilder

from emulator.telegram import BotApiEmulator, EntityParseError, FloodLimits, parse_html, utf16_len

session_loop = pytest.mark.asyncio(loop_scope="session")

TOKEN = "123456:TEST"
ALICE = 111
FAST_BACKOFF = BackoffConfig(min_delay=0.05, max_delay=0.2, factor=1.5, jitter=0.01)


class AlertAction(CallbackData, prefix="fx"):
    action: str
    alert_id: int


def make_router() -> Router:
    router = Router(name="emulator-test")

    @router.message(Command("status"))
    async def status(message: Message) -> None:
        keyboard = InlineKeyboardBuilder()
        keyboard.button(text="Close #42", callback_data=AlertAction(action="close", alert_id=42))
        keyboard.button(text="Runbook", url="https://example.com/runbook")
        await message.answer("<b>Status</b>: 1 alert &amp; 0 errors", reply_markup=keyboard.as_markup())

    @router.callback_query(AlertAction.filter(F.action == "close"))
    async def close(query: CallbackQuery, callback_data: AlertAction) -> None:
        await query.answer(f"closed {callback_data.alert_id}")
        assert isinstance(query.message, Message)
        await query.message.edit_text(f"Alert {callback_data.alert_id} <i>closed</i>")

    @router.callback_query()
    async def stale(query: CallbackQuery) -> None:
        await query.answer("This button is not valid (any more).", show_alert=True)

    return router


def make_bot(base_url: str, token: str = TOKEN) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(base_url), timeout=10)
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_tg():
    emulator = BotApiEmulator(token=TOKEN, bot_username="reconbot_test")
    await emulator.start(host="127.0.0.1", port=0)
    yield emulator
    await emulator.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bot(shared_tg: BotApiEmulator):
    client = make_bot(shared_tg.base_url)
    yield client
    await client.session.close()


@pytest_asyncio.fixture(loop_scope="session")
async def tg(shared_tg: BotApiEmulator):
    shared_tg.reset()
    yield shared_tg
    assert shared_tg.errors == []


@pytest_asyncio.fixture(loop_scope="session")
async def polling(tg: BotApiEmulator, bot: Bot):
    dp = Dispatcher()
    dp.include_router(make_router())
    task = asyncio.create_task(
        dp.start_polling(
            bot,
            handle_signals=False,
            close_bot_session=False,
            polling_timeout=1,
            backoff_config=FAST_BACKOFF,
        )
    )
    await tg.wait_until(lambda: tg.active_polls > 0, timeout=5)
    yield dp
    await dp.stop_polling()
    await asyncio.wait_for(task, 5)


def keyboard_with(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="b", callback_data=data)]])


# ------------------------------------------------------------------------------------------ basic methods


@session_loop
async def test_get_me(tg: BotApiEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "reconbot_test", True)
    method, params, response = tg.calls[-1]
    assert method == "getMe" and params == {} and response["ok"] is True


@session_loop
async def test_unknown_token_and_unknown_method(tg: BotApiEmulator) -> None:
    intruder = make_bot(tg.base_url, token="999:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await intruder.get_me()
    finally:
        await intruder.session.close()
    assert tg.calls[-1].status == 401 and tg.calls[-1].description == "Unauthorized"

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{tg.base_url}/bot{TOKEN}/frobnicate") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.get(f"{tg.base_url}/bot{TOKEN}/getme") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["result"]["username"] == "reconbot_test"
        payload = {"chat_id": ALICE, "text": "json body", "reply_markup": {"inline_keyboard": []}}
        async with http.post(f"{tg.base_url}/bot{TOKEN}/sendMessage", json=payload) as resp:
            body = await resp.json()
            assert body["ok"] is True and body["result"]["text"] == "json body"
            assert "reply_markup" not in body["result"]


@session_loop
async def test_send_message_shape_and_ids(tg: BotApiEmulator, bot: Bot) -> None:
    first = await bot.send_message(ALICE, "one")
    tg.user_sends(ALICE, "hello", username="alice", first_name="Alice")
    second = await bot.send_message(ALICE, "two", reply_to_message_id=first.message_id)
    group = await bot.send_message(-1001234567890, "<u>group</u> msg")

    assert first.message_id == 1 and second.message_id == 3
    assert first.from_user is not None and first.from_user.id == 123456
    assert first.chat.type == "private" and first.chat.id == ALICE
    assert second.reply_to_message is not None and second.reply_to_message.message_id == 1
    assert group.message_id == 1 and group.chat.type == "supergroup"
    assert group.text == "group msg" and group.entities[0].type == "underline"

    assert [m.text for m in tg.messages(ALICE)] == ["one", "two"]
    assert [m.text for m in tg.messages(ALICE, include_user=True)] == ["one", "hello", "two"]
    stored = tg.message(-1001234567890, 1)
    assert stored.raw_text == "<u>group</u> msg" and stored.html == "<u>group</u> msg"
    assert stored.parse_mode == "HTML" and stored.entities == [{"type": "underline", "offset": 0, "length": 5}]


@session_loop
async def test_set_and_get_my_commands(tg: BotApiEmulator, bot: Bot) -> None:
    commands = [BotCommand(command="status", description="Show status"), BotCommand(command="help", description="Help")]
    assert await bot.set_my_commands(commands) is True
    assert [c.command for c in await bot.get_my_commands()] == ["status", "help"]
    scope = BotCommandScopeChat(chat_id=ALICE)
    assert await bot.get_my_commands(scope=scope) == []
    await bot.set_my_commands([BotCommand(command="admin", description="Admin")], scope=scope)
    assert [c.command for c in await bot.get_my_commands(scope=scope)] == ["admin"]
    assert tg.commands() == [
        {"command": "status", "description": "Show status"},
        {"command": "help", "description": "Help"},
    ]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])


# ---------------------------------------------------------------------------------------- full bot flow


@session_loop
async def test_command_reply_and_button_press_end_to_end(tg: BotApiEmulator, polling: Dispatcher) -> None:
    tg.user_sends(user_id=ALICE, text="/status", username="alice", first_name="Alice")
    sent = await tg.wait_for(lambda call: call.method == "sendMessage" and call.ok)

    alert = tg.last_message(ALICE)
    assert alert.text == "Status: 1 alert & 0 errors"
    assert alert.raw_text == "<b>Status</b>: 1 alert &amp; 0 errors"
    assert alert.entities == [{"type": "bold", "offset": 0, "length": 6}]
    assert alert.callback_data == ["fx:close:42"]
    assert alert.button("Runbook")["url"] == "https://example.com/runbook"
    assert sent.result["reply_markup"] == alert.inline_markup

    cq_id = tg.user_presses(user_id=ALICE, message=alert, data="fx:close:42")
    await tg.wait_for(lambda call: call.method == "editMessageText" and call.ok, since=sent.index)

    assert tg.callback_answer(cq_id)["text"] == "closed 42"
    assert [answer["text"] for answer in tg.callback_answers(cq_id)] == ["closed 42"]
    edited = tg.message(ALICE, alert.message_id)
    assert edited.text == "Alert 42 closed"
    assert edited.entities == [{"type": "italic", "offset": 9, "length": 6}]
    assert not edited.has_keyboard and "reply_markup" not in edited.to_api()
    assert [v.method for v in edited.history] == ["sendMessage", "editMessageText"]
    assert edited.history[0].reply_markup is not None and edited.history[-1].reply_markup is None
    await tg.wait_until(lambda: not tg.pending_updates)
    assert tg.unanswered_callback_queries() == []


@session_loop
async def test_polling_survives_send_outage(tg: BotApiEmulator, polling: Dispatcher) -> None:
    tg.fail(method=None, status=500, times=None)
    start = len(tg.calls)
    tg.user_sends(ALICE, "/status")
    failed = await tg.wait_for(lambda call: call.method == "sendMessage", since=start)
    assert failed.status == 500 and failed.fault is not None
    tg.user_sends(ALICE, "/status")
    again = await tg.wait_for(lambda call: call.method == "sendMessage", since=failed.index + 1)
    assert again.status == 500

    tg.clear_faults()
    tg.user_sends(ALICE, "/status")
    ok = await tg.wait_for(lambda call: call.method == "sendMessage" and call.ok, since=again.index)
    assert ok.params["chat_id"] == ALICE
    assert len(tg.messages(ALICE)) == 1
    assert all(call.ok for call in tg.calls[start:] if call.method == "getUpdates")


@session_loop
async def test_user_presses_checks_the_button_exists(tg: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "no buttons")
    with pytest.raises(ValueError, match="no button with callback_data"):
        tg.user_presses(ALICE, (ALICE, sent.message_id), "fx:close:1")
    cq_id = tg.user_presses(ALICE, (ALICE, sent.message_id), "fx:close:1", check_button=False)
    update = tg.pending_updates[-1]
    assert update["callback_query"]["id"] == cq_id
    assert update["callback_query"]["message"]["message_id"] == sent.message_id


# ----------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("line<br>break", 'Unsupported start tag "br" at byte offset 4'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("</b>", "Unexpected end tag at byte offset 0"),
        ("P&L report", 'Character "&" must be escaped as "&amp;" at byte offset 1'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
    ],
)
@session_loop
async def test_bad_html_is_rejected(tg: BotApiEmulator, bot: Bot, text: str, reason: str) -> None:
    with pytest.raises(TelegramBadRequest) as excinfo:
        await bot.send_message(ALICE, text)
    assert "can't parse entities: " + reason in excinfo.value.message
    assert tg.calls[-1].status == 400 and tg.messages(ALICE) == []


@session_loop
async def test_html_entities_and_nesting(bot: Bot) -> None:
    msg = await bot.send_message(
        ALICE,
        '&lt;pos&gt; <b>BTC <i>&quot;long&quot;</i></b> 😀 <a href="https://x.io/?a=1&amp;b=2">link</a>'
        '<pre><code class="language-sql">select 1</code></pre>',
    )
    assert msg.text == '<pos> BTC "long" 😀 linkselect 1'
    kinds = [(e.type, e.offset, e.length) for e in msg.entities]
    assert kinds == [("bold", 6, 10), ("italic", 10, 6), ("text_link", 20, 4), ("pre", 24, 8)]
    assert msg.entities[2].url == "https://x.io/?a=1&b=2" and msg.entities[3].language == "sql"


@session_loop
async def test_text_length_and_emptiness(tg: BotApiEmulator, bot: Bot) -> None:
    await bot.send_message(ALICE, "x" * 4096)
    await bot.send_message(ALICE, "<b>" + "x" * 4096 + "</b>")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(ALICE, "x" * 4097)
    emoji = "😀" * 2049
    assert len(emoji) == 2049 and utf16_len(emoji) == 4098
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(ALICE, emoji)
    for empty in ("", "   \n", "<b></b>"):
        with pytest.raises(TelegramBadRequest, match="message text is empty"):
            await bot.send_message(ALICE, empty)
    trimmed = await bot.send_message(ALICE, "\n<b>hi</b> \n")
    assert trimmed.text == "hi" and trimmed.entities[0].offset == 0
    assert len(tg.messages(ALICE)) == 3


@session_loop
async def test_callback_data_limit(bot: Bot) -> None:
    await bot.send_message(ALICE, "ok", reply_markup=keyboard_with("x" * 64))
    for data in ("x" * 65, "é" * 33, ""):
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(ALICE, "bad", reply_markup=keyboard_with(data))
    text_only = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="t")]])
    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed"):
        await bot.send_message(ALICE, "bad", reply_markup=text_only)


@pytest.mark.parametrize("mode", ["MarkdownV2", "Markdown", "markdownv2"])
@session_loop
async def test_markdown_is_not_emulated(tg: BotApiEmulator, bot: Bot, mode: str) -> None:
    with pytest.raises(TelegramBadRequest, match=f"parse_mode {mode} is not emulated: the emulator supports HTML only"):
        await bot.send_message(ALICE, "*PnL* 1\\.5%", parse_mode=mode)
    sent = await bot.send_message(ALICE, "plain", parse_mode=None)
    with pytest.raises(TelegramBadRequest, match="supports HTML only"):
        await bot.edit_message_text("*x*", chat_id=ALICE, message_id=sent.message_id, parse_mode=mode)
    with pytest.raises(TelegramBadRequest, match="unsupported parse_mode"):
        await bot.send_message(ALICE, "x", parse_mode="BBCode")
    assert [m.text for m in tg.messages(ALICE)] == ["plain"] and tg.message(ALICE, 1).parse_mode is None


@session_loop
async def test_edit_errors_and_markup_removal(tg: BotApiEmulator, bot: Bot) -> None:
    msg = await bot.send_message(ALICE, "alert", reply_markup=keyboard_with("fx:close:1"))
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=999)
    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new message content"):
        await bot.edit_message_text(
            "alert", chat_id=ALICE, message_id=msg.message_id, reply_markup=keyboard_with("fx:close:1")
        )
    await bot.edit_message_reply_markup(chat_id=ALICE, message_id=msg.message_id)
    assert not tg.message(ALICE, msg.message_id).has_keyboard
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=ALICE, message_id=msg.message_id)
    edited = await bot.edit_message_text("<b>alert</b>", chat_id=ALICE, message_id=msg.message_id)
    assert isinstance(edited, Message) and edited.edit_date is not None
    assert len(tg.message(ALICE, msg.message_id).edits) == 2

    assert await bot.delete_message(ALICE, msg.message_id) is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ALICE, msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("again", chat_id=ALICE, message_id=msg.message_id)
    assert tg.messages(ALICE) == [] and tg.messages(ALICE, include_deleted=True)[0].deleted


@session_loop
async def test_answer_callback_query_rules(tg: BotApiEmulator, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="query is too old and response timeout expired"):
        await bot.answer_callback_query("nope")
    msg = await bot.send_message(ALICE, "alert", reply_markup=keyboard_with("fx:close:7"))
    cq_id = tg.user_presses(ALICE, tg.last_message(ALICE), "fx:close:7")
    assert tg.last_message(ALICE).message_id == msg.message_id
    assert await bot.answer_callback_query(cq_id, text="done") is True
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(cq_id)
    assert [a.get("text") for a in tg.callback_answers(cq_id)] == ["done", None]
    assert tg.callback_answer(cq_id) == {"callback_query_id": cq_id, "text": "done"}


# ------------------------------------------------------------------------------- topics and notifications

FORUM = -100900


@session_loop
async def test_silent_messages_and_forum_topics(tg: BotApiEmulator, bot: Bot) -> None:
    tg.add_chat(FORUM, "supergroup", title="Ops", is_forum=True)
    alerts = tg.add_topic(FORUM, "Alerts")
    assert alerts == 2 and tg.add_topic(FORUM, "Chatter") == 3 and tg.chat(FORUM)["is_forum"] is True

    sent = await bot.send_message(FORUM, "<b>gap</b>", message_thread_id=alerts, disable_notification=True)
    assert sent.message_thread_id == alerts and sent.is_topic_message is True and sent.message_id == 4
    loud = await bot.send_message(FORUM, "general")
    assert loud.message_thread_id is None and not loud.is_topic_message
    reply = await bot.send_message(FORUM, "follow-up", reply_to_message_id=sent.message_id)
    assert reply.message_thread_id == alerts

    stored = tg.message(FORUM, sent.message_id)
    assert (stored.silent, stored.thread_id) == (True, alerts)
    assert (tg.message(FORUM, loud.message_id).silent, tg.message(FORUM, loud.message_id).thread_id) == (False, None)
    assert stored.to_api()["is_topic_message"] is True

    for chat_id, thread_id in ((FORUM, 99), (FORUM, 1), (-100901, alerts), (ALICE, alerts)):
        with pytest.raises(TelegramBadRequest, match="message thread not found"):
            await bot.send_message(chat_id, "lost", message_thread_id=thread_id)
    assert tg.calls[-1].description == "Bad Request: message thread not found"
    assert [m.text for m in tg.messages(FORUM)] == ["gap", "general", "follow-up"]
    with pytest.raises(ValueError, match="not a forum"):
        tg.add_topic(-100901, "x")


@session_loop
async def test_user_writes_in_a_topic_and_the_bot_answers_there(tg: BotApiEmulator, polling: Dispatcher) -> None:
    tg.add_chat(FORUM, "supergroup", is_forum=True)
    update_id = tg.user_sends(ALICE, "/status", chat_id=FORUM, chat_type="supergroup", thread_id=7)
    message = next(u for u in tg.pending_updates if u["update_id"] == update_id)["message"]
    assert (message["message_thread_id"], message["is_topic_message"]) == (7, True)
    await tg.wait_for(lambda call: call.method == "sendMessage" and call.ok)

    answer = tg.last_message(FORUM)
    assert answer.thread_id == 7 and answer.params["message_thread_id"] == 7 and answer.silent is False
    assert answer.message_id == 9  # topic 7 is the id of the topic's creation message
    with pytest.raises(ValueError, match="not a forum"):
        tg.user_sends(ALICE, "hi", chat_id=-100901, chat_type="supergroup", thread_id=7)


# ------------------------------------------------------------------------------------------ bot commands


def names(commands: list) -> list[str]:
    return [c["command"] if isinstance(c, dict) else c.command for c in commands]


@session_loop
async def test_command_scopes_and_languages(tg: BotApiEmulator, bot: Bot) -> None:
    group, admin, member = -100600, 501, 502
    tg.add_chat(group, "supergroup", admins=[admin])
    scopes = {
        "default": BotCommandScopeDefault(),
        "private": BotCommandScopeAllPrivateChats(),
        "groups": BotCommandScopeAllGroupChats(),
        "admins": BotCommandScopeAllChatAdministrators(),
        "alice": BotCommandScopeChat(chat_id=ALICE),
        "group": BotCommandScopeChat(chat_id=group),
        "group_admins": BotCommandScopeChatAdministrators(chat_id=group),
        "member": BotCommandScopeChatMember(chat_id=group, user_id=member),
    }
    for name, scope in scopes.items():
        await bot.set_my_commands([BotCommand(command=name, description=f"{name} list")], scope=scope)
    await bot.set_my_commands([BotCommand(command="hilfe", description="Hilfe")], language_code="de")
    for name, scope in scopes.items():
        assert names(await bot.get_my_commands(scope=scope)) == [name]
    assert names(await bot.get_my_commands(language_code="de")) == ["hilfe"]
    assert await bot.get_my_commands(scope=scopes["groups"], language_code="de") == []
    assert names(tg.commands({"type": "chat_member", "chat_id": group, "user_id": member})) == ["member"]

    assert names(tg.commands_for(ALICE, ALICE)) == ["alice"]
    assert names(tg.commands_for(333, 333)) == ["private"]
    assert names(tg.commands_for(member, group)) == ["member"]
    assert names(tg.commands_for(admin, group)) == ["group_admins"]
    assert names(tg.commands_for(503, group)) == ["group"]
    assert names(tg.commands_for(503, -100601)) == ["groups"]
    assert names(tg.commands_for(503, -100601, is_admin=True)) == ["admins"]

    await bot.delete_my_commands(scope=scopes["group_admins"])
    assert names(tg.commands_for(admin, group)) == ["group"]
    await bot.delete_my_commands(scope=scopes["group"])
    assert names(tg.commands_for(admin, group)) == ["admins"]
    assert names(tg.commands_for(503, group)) == ["groups"]
    await bot.set_my_commands([], scope=scopes["private"])  # an empty list unsets the scope
    assert names(tg.commands_for(333, 333)) == ["default"]
    assert names(tg.commands_for(333, 333, language_code="de-AT")) == ["hilfe"]
    tg.user_sends(444, "hallo", language_code="de")
    assert names(tg.commands_for(444, 444)) == ["hilfe"]
    await bot.set_my_commands(
        [BotCommand(command="gruppe", description="x")], scope=scopes["groups"], language_code="de"
    )
    assert names(tg.commands_for(444, -100601)) == ["gruppe"]
    assert names(tg.commands_for(333, -100601)) == ["groups"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"scope": BotCommandScopeChatAdministrators(chat_id=ALICE)}, "can't use specified scope in private chats"),
        ({"scope": BotCommandScopeChatMember(chat_id=ALICE, user_id=ALICE)}, "can't use specified scope in private"),
        ({"scope": BotCommandScopeChat(chat_id=-100700)}, "can't change commands in channel chats"),
        ({"scope": BotCommandScopeChatMember(chat_id=-100600, user_id=0)}, "BotCommandScope: Invalid user_id"),
        ({"language_code": "english"}, "invalid language code specified"),
        ({"language_code": "EN"}, "invalid language code specified"),
    ],
)
@session_loop
async def test_command_scope_errors(tg: BotApiEmulator, bot: Bot, kwargs: dict, error: str) -> None:
    tg.add_chat(-100700, "channel")
    with pytest.raises(TelegramBadRequest, match=error):
        await bot.set_my_commands([BotCommand(command="x", description="x")], **kwargs)
    with pytest.raises(TelegramBadRequest, match=error):
        await bot.get_my_commands(**kwargs)


@session_loop
async def test_command_scope_json_errors(tg: BotApiEmulator) -> None:
    cases = [
        ('"chat"', "can't parse BotCommandScope: BotCommandScope must be an Object"),
        ('{"type": "everyone"}', "can't parse BotCommandScope: Unsupported type specified"),
        ('{"type": "chat"}', "can't parse BotCommandScope: Can't find field \"chat_id\""),
        ("{", "can't parse BotCommandScope JSON object"),
    ]
    async with aiohttp.ClientSession() as http:
        for scope, error in cases:
            async with http.post(f"{tg.base_url}/bot{TOKEN}/getMyCommands", data={"scope": scope}) as resp:
                assert (resp.status, (await resp.json())["description"]) == (400, "Bad Request: " + error)
    with pytest.raises(ValueError, match="Unsupported type"):
        tg.commands({"type": "everyone"})


# -------------------------------------------------------------------------------------- callback queries


@session_loop
async def test_callback_answers_are_recorded_per_query(tg: BotApiEmulator, bot: Bot) -> None:
    msg = await bot.send_message(ALICE, "pick", reply_markup=keyboard_with("a"))
    once, twice, never = (tg.user_presses(ALICE, (ALICE, msg.message_id), "a") for _ in range(3))
    await bot.answer_callback_query(once, text="Done", show_alert=True)
    await bot.answer_callback_query(twice)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(twice, text="again")

    record = tg.callback_query(once)
    assert (record.text, record.show_alert, record.answered_once) == ("Done", True, True)
    assert (record.data, record.chat_id, record.message_id, record.user["id"]) == ("a", ALICE, msg.message_id, ALICE)
    assert (tg.callback_query(twice).text, tg.callback_query(twice).show_alert) == (None, False)
    assert [a.get("text") for a in tg.callback_answers(twice)] == [None, "again"]
    assert [r.id for r in tg.unanswered_callback_queries()] == [twice, never]
    assert tg.callback_answer(never) is None and tg.callback_answers(never) == []
    with pytest.raises(KeyError, match="unknown callback query"):
        tg.callback_query("nope")


@session_loop
async def test_press_with_arbitrary_data_reaches_the_bot(tg: BotApiEmulator, polling: Dispatcher) -> None:
    tg.user_sends(ALICE, "/status")
    await tg.wait_for(lambda call: call.method == "sendMessage" and call.ok)
    alert = tg.last_message(ALICE)
    forged = "z" * 60 + "é" * 2
    assert len(forged.encode()) == 64
    cq_id = tg.user_presses(ALICE, alert, forged, check_button=False)
    await tg.wait_for(lambda call: call.method == "answerCallbackQuery" and call.ok)
    assert tg.callback_query(cq_id).show_alert and "not valid" in tg.callback_query(cq_id).text
    assert tg.unanswered_callback_queries() == []
    for bad in ("", "z" * 65, "é" * 33):
        with pytest.raises(ValueError, match="callback data must be 1-64 bytes"):
            tg.user_presses(ALICE, alert, bad, check_button=False)


# ------------------------------------------------------------------------------------------- deletion


@session_loop
async def test_delete_and_edit_of_missing_messages(tg: BotApiEmulator, bot: Bot) -> None:
    group = -100800
    own = await bot.send_message(ALICE, "mine")
    assert await bot.delete_message(ALICE, own.message_id) is True
    with pytest.raises(TelegramBadRequest) as excinfo:
        await bot.delete_message(ALICE, own.message_id)
    assert excinfo.value.message == "Bad Request: message to delete not found"
    with pytest.raises(TelegramBadRequest) as excinfo:
        await bot.edit_message_text("changed", chat_id=ALICE, message_id=own.message_id)
    assert excinfo.value.message == "Bad Request: message to edit not found"
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_reply_markup(chat_id=ALICE, message_id=own.message_id, reply_markup=keyboard_with("x"))
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ALICE, 999)

    tg.user_sends(ALICE, "incoming")
    assert await bot.delete_message(ALICE, 2) is True  # a bot may delete what it received in private

    tg.user_sends(ALICE, "in a group", chat_id=group, chat_type="supergroup")
    with pytest.raises(TelegramBadRequest) as excinfo:
        await bot.delete_message(group, 1)
    assert excinfo.value.message == "Bad Request: message can't be deleted"
    old = await bot.send_message(ALICE, "old")
    tg.message(ALICE, old.message_id).date -= 49 * 3600
    with pytest.raises(TelegramBadRequest, match="message can't be deleted"):
        await bot.delete_message(ALICE, old.message_id)

    tg.add_chat(group, "supergroup", admins=[tg.bot_id])
    tg.message(group, 1).date -= 49 * 3600
    assert await bot.delete_message(group, 1) is True
    assert tg.message(group, 1).deleted and not tg.message(ALICE, old.message_id).deleted


# -------------------------------------------------------------------------------------- fault injection


@session_loop
async def test_injected_faults(tg: BotApiEmulator, bot: Bot) -> None:
    tg.fail(method="sendMessage", status=429, retry_after=3, times=1)
    with pytest.raises(TelegramRetryAfter) as excinfo:
        await bot.send_message(ALICE, "x")
    assert excinfo.value.retry_after == 3
    assert tg.calls[-1].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }

    tg.fail(method=None, status=500, times=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.send_message(ALICE, "x")
    tg.fail(method="sendMessage", status=400, description="Bad Request: chat not found", times=1)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(ALICE, "x")
    await bot.send_message(ALICE, "finally")
    assert [m.text for m in tg.messages(ALICE)] == ["finally"]

    tg.fail(method=None, status=500, times=None)
    assert await bot.get_updates(timeout=0) == []
    tg.fail(method="getUpdates", status=502, times=1)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_updates(timeout=0)
    tg.clear_faults()
    assert (await bot.get_me()).id == 123456


@session_loop
async def test_down_server(tg: BotApiEmulator, bot: Bot) -> None:
    tg.down = True
    with pytest.raises(TelegramNetworkError, match="Server disconnected"):
        await bot.send_message(ALICE, "lost")
    assert tg.calls[-1].status == 0 and tg.calls[-1].method == "sendMessage"
    tg.down_mode = "502"
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_me()
    tg.down = False
    assert (await bot.send_message(ALICE, "back")).message_id == 1


@session_loop
async def test_flood_limits(tg: BotApiEmulator, bot: Bot) -> None:
    for text in "abc":
        await bot.send_message(ALICE, text)
    assert tg.max_sends_in_window(1.0, ALICE) == 3

    tg.enforce_flood_limits = True
    with pytest.raises(TelegramRetryAfter) as excinfo:
        await bot.send_message(ALICE, "a burst of 3 is the default allowance")
    assert excinfo.value.retry_after == 1
    assert tg.calls[-1].response["parameters"] == {"retry_after": 1}
    assert len(tg.send_times(ALICE)) == 3

    group = -100777
    for n in range(20):
        await bot.send_message(group, f"g{n}")
    with pytest.raises(TelegramRetryAfter) as excinfo:
        await bot.send_message(group, "one too many")
    assert 55 <= excinfo.value.retry_after <= 60
    assert len(tg.send_times(group)) == 20 and len(tg.send_times()) == 23
    assert tg.max_sends_in_window(60.0, group) == 20


@session_loop
async def test_flood_limits_refill_and_are_configurable(tg: BotApiEmulator, bot: Bot) -> None:
    tg.enforce_flood_limits = True
    tg.flood_limits = FloodLimits(private_per_second=5, private_burst=2, global_per_second=4)
    await bot.send_message(ALICE, "1")
    await bot.send_message(ALICE, "2")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(ALICE, "3")
    await asyncio.sleep(0.25)
    await bot.send_message(ALICE, "refilled")
    await bot.send_message(222, "fourth accepted send within a second")
    with pytest.raises(TelegramRetryAfter) as excinfo:
        await bot.send_message(333, "fifth, in any chat")
    assert excinfo.value.retry_after == 1
    assert [m.text for m in tg.messages(ALICE)] == ["1", "2", "refilled"] and tg.messages(333) == []

    tg.reset()
    assert tg.flood_limits == FloodLimits() and tg.enforce_flood_limits is False


# ------------------------------------------------------------------------------------------ long polling


@session_loop
async def test_long_poll_semantics(tg: BotApiEmulator, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5, allowed_updates=["message"]))
    await tg.wait_until(lambda: tg.active_polls == 1)
    started = time.monotonic()
    first = tg.user_sends(ALICE, "/status")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1.0
    assert [u.update_id for u in updates] == [first]
    assert updates[0].message.entities[0].type == "bot_command"

    second = tg.user_sends(ALICE, "again")
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [first, second]
    assert [u.update_id for u in await bot.get_updates(offset=first + 1, timeout=0)] == [second]
    assert await bot.get_updates(offset=second + 1, timeout=0) == []

    msg = await bot.send_message(ALICE, "pick", reply_markup=keyboard_with("d"))
    tg.user_presses(ALICE, (ALICE, msg.message_id), "d")
    assert await bot.get_updates(timeout=0) == []
    assert "callback_query" in tg.dropped_updates[-1]

    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 2.0


@session_loop
async def test_second_poller_conflicts(tg: BotApiEmulator, bot: Bot) -> None:
    older = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_until(lambda: tg.active_polls == 1)
    newer = asyncio.create_task(bot.get_updates(timeout=5))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(older, 2)
    update_id = tg.user_sends(ALICE, "hi")
    assert [u.update_id for u in await asyncio.wait_for(newer, 2)] == [update_id]


@session_loop
async def test_stop_returns_promptly_while_long_poll_held() -> None:
    emulator = BotApiEmulator(token=TOKEN)
    client = make_bot(await emulator.start())
    try:
        poll = asyncio.create_task(client.get_updates(timeout=30))
        await emulator.wait_until(lambda: emulator.active_polls == 1)
        started = time.monotonic()
        await emulator.stop()
        assert time.monotonic() - started < 1.0
        assert await asyncio.wait_for(poll, 2) == []
        with pytest.raises(TelegramNetworkError):
            await client.get_me()
    finally:
        await client.session.close()


@session_loop
async def test_wait_for_timeout_explains(tg: BotApiEmulator, bot: Bot) -> None:
    await bot.get_me()
    with pytest.raises(TimeoutError, match=r"(?s)no matching Bot API call.*#0 getMe\(\) -> ok"):
        await tg.wait_for("sendMessage", timeout=0.05)


# ---------------------------------------------------------------------------------------- parser tables


@pytest.mark.parametrize(
    ("markup", "text", "entities"),
    [
        ("🏟 🏟<i>🏟 &gt;<b aba   =   caba>&lt🏟</b></i>", "🏟 🏟🏟 ><🏟", [("italic", 5, 7), ("bold", 9, 3)]),
        ("<code><i><b> </b></i></code>", " ", [("code", 0, 1), ("bold", 0, 1), ("italic", 0, 1)]),
        ('<pre><code class="language-fift">a</code></pre>', "a", [("pre", 0, 1)]),
        ("<a>telegram.org</a>", "telegram.org", [("text_link", 0, 12)]),
        ("<a> </a>", " ", []),
        ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1)]),
        ("&ge;&#x41;&#65;&lt", "&ge;AA<", []),
    ],
)
def test_parse_html_table(markup: str, text: str, entities: list[tuple[str, int, int]]) -> None:
    got_text, got_entities = parse_html(markup)
    assert got_text == text
    assert [(e["type"], e["offset"], e["length"]) for e in got_entities] == entities


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("🏟 🏟&lt;<i>a</em   >", 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"'),
        ("🏟 🏟&lt;<i    aba  =  190azAz-.,", "Unexpected end of name token at byte offset 27"),
        ("&#57311;", "Text contains invalid Unicode characters"),
    ],
)
def test_parse_html_errors(markup: str, error: str) -> None:
    with pytest.raises(EntityParseError, match=error.replace("(", r"\(")):
        parse_html(markup)


# ------------------------------------------------------------ today's Bot API: styles, copy text, times, ephemeral

GROUP = -100700


def button_with(**fields: object) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="b", **fields)]])


@session_loop
async def test_button_styles_as_the_bot_api_server_reads_them(tg: BotApiEmulator, bot: Bot) -> None:
    row = [
        InlineKeyboardButton(text="Close", callback_data="x", style="danger"),
        InlineKeyboardButton(text="Adopt", callback_data="y", style="SUCCESS"),
        InlineKeyboardButton(text="Open", callback_data="z", style="primary"),
        InlineKeyboardButton(text="Plain", callback_data="w", style="default"),
    ]
    sent = await bot.send_message(ALICE, "styled", reply_markup=InlineKeyboardMarkup(inline_keyboard=[row]))
    assert [b.style for b in sent.reply_markup.inline_keyboard[0]] == ["danger", "success", "primary", None]
    assert [b.get("style") for b in tg.last_message(ALICE).buttons] == ["danger", "success", "primary", None]
    with pytest.raises(TelegramBadRequest, match="invalid button style specified"):
        await bot.send_message(ALICE, "red", reply_markup=button_with(callback_data="x", style="red"))
    assert tg.calls[-1].description == "Bad Request: can't parse inline keyboard button: invalid button style specified"


@session_loop
async def test_copy_text_buttons_copy_one_to_256_characters(tg: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "order", reply_markup=button_with(copy_text=CopyTextButton(text="12345")))
    assert sent.reply_markup.inline_keyboard[0][0].copy_text.text == "12345"
    assert tg.last_message(ALICE).callback_data == [], "a copy button sends nothing to the bot"
    for text in ("", "x" * 257):
        with pytest.raises(TelegramBadRequest, match="copied text must be 1-256 characters"):
            await bot.send_message(ALICE, "bad", reply_markup=button_with(copy_text=CopyTextButton(text=text)))
    await bot.send_message(ALICE, "limit", reply_markup=button_with(copy_text=CopyTextButton(text="x" * 256)))
    async with aiohttp.ClientSession() as http:
        payload = {
            "chat_id": ALICE,
            "text": "t",
            "reply_markup": {"inline_keyboard": [[{"text": "c", "copy_text": {}}]]},
        }
        async with http.post(f"{tg.base_url}/bot{TOKEN}/sendMessage", json=payload) as resp:
            body = await resp.json()
    assert body["description"] == "Bad Request: can't parse inline keyboard button: Can't find field \"text\""


@session_loop
async def test_date_time_entities_from_tg_time_and_from_json(tg: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(
        ALICE, 'Detected <tg-time unix="1700000000" format="tdw">2023-11-14 22:13 UTC</tg-time>'
    )
    [entity] = sent.entities
    assert (entity.type, entity.offset, entity.length) == ("date_time", 9, 20)
    assert (entity.unix_time, entity.date_time_format) == (1700000000, "wdt"), "in the server's own order"
    assert sent.text == "Detected 2023-11-14 22:13 UTC", "the text inside is what an old client shows"
    plain = await bot.send_message(ALICE, '<tg-time unix="1700000000">then</tg-time>')
    assert plain.entities[0].date_time_format == ""
    dropped = await bot.send_message(ALICE, '<tg-time unix="soon">then</tg-time>')
    assert dropped.entities is None, "a time that is no number makes no entity"
    with pytest.raises(TelegramBadRequest, match="can't parse entities: Invalid date format used"):
        await bot.send_message(ALICE, '<tg-time unix="1700000000" format="x">then</tg-time>')
    by_json = await bot.send_message(
        ALICE, "then", entities=[MessageEntity(type="date_time", offset=0, length=4, unix_time=1700000000)]
    )
    assert (by_json.entities[0].unix_time, by_json.entities[0].date_time_format) == (1700000000, "")
    with pytest.raises(TelegramBadRequest, match="can't parse MessageEntity: Invalid date-time format specified"):
        await bot.send_message(
            ALICE,
            "then",
            entities=[MessageEntity(type="date_time", offset=0, length=4, unix_time=1, date_time_format="q")],
        )


@session_loop
async def test_ephemeral_messages_answer_a_press_for_the_presser_only(tg: BotApiEmulator, bot: Bot) -> None:
    tg.add_chat(GROUP, "supergroup")
    alert = await bot.send_message(GROUP, "alert", reply_markup=keyboard_with("fx:details:1"))
    press = tg.user_presses(ALICE, tg.message(GROUP, alert.message_id), "fx:details:1")
    shown = await bot.send_message(
        GROUP,
        "alert <b>with details</b>",
        reply_markup=keyboard_with("fx:hide:1"),
        disable_notification=True,
        ephemeral_message_parameters=EphemeralMessageParameters(
            receiver_user_id=ALICE, callback_query_id=press, replace_callback_query_message=True
        ),
    )
    assert (shown.message_id, shown.ephemeral_message_id, shown.receiver_user.id) == (0, 1, ALICE)
    assert [m.text for m in tg.messages(GROUP)] == ["alert"], "the others see nothing new"
    [mine] = tg.ephemeral_messages(GROUP, ALICE)
    assert (mine.text, mine.replaces, mine.silent) == ("alert with details", alert.message_id, True)
    assert tg.ephemeral_messages(GROUP, 222) == []

    hide = tg.user_presses(ALICE, mine, "fx:hide:1")
    pressed = tg.pending_updates[-1]["callback_query"]["message"]
    assert (pressed["message_id"], pressed["ephemeral_message_id"]) == (0, 1)
    assert tg.callback_query(hide).message_id == 0
    assert await bot.delete_ephemeral_message(GROUP, receiver_user_id=ALICE, ephemeral_message_id=1) is True
    assert tg.ephemeral_messages(GROUP, ALICE) == []
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_ephemeral_message(GROUP, receiver_user_id=ALICE, ephemeral_message_id=1)


@session_loop
async def test_ephemeral_messages_need_a_fresh_press_of_the_receiver_or_an_admin_bot(
    tg: BotApiEmulator, bot: Bot
) -> None:
    tg.add_chat(GROUP, "supergroup")
    alert = await bot.send_message(GROUP, "alert", reply_markup=keyboard_with("fx:details:1"))
    press = tg.user_presses(ALICE, tg.message(GROUP, alert.message_id), "fx:details:1")

    def to(receiver: int, query: str | None = None, **extra: object) -> EphemeralMessageParameters:
        return EphemeralMessageParameters(receiver_user_id=receiver, callback_query_id=query, **extra)

    mine = await bot.send_message(ALICE, "p", reply_markup=keyboard_with("k"))
    private = tg.user_presses(ALICE, (ALICE, mine.message_id), "k")
    refusals = [
        (ALICE, "hi", to(ALICE, private), "ephemeral messages can be sent only in groups and supergroups"),
        (GROUP, "hi", to(333, press), "query is too old and response timeout expired or query ID is invalid"),
        (GROUP, "hi", to(ALICE), "not enough rights to send ephemeral messages"),
        (GROUP, "hi", to(ALICE, None, replace_callback_query_message=True), "needs a callback_query_id"),
    ]
    for chat, text, parameters, reason in refusals:
        with pytest.raises(TelegramBadRequest, match=reason):
            await bot.send_message(chat, text, ephemeral_message_parameters=parameters)
    tg.callback_query(press).created_at -= 16
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.send_message(GROUP, "late", ephemeral_message_parameters=to(ALICE, press))

    tg.add_chat(GROUP, "supergroup", admins=[tg.bot_id])
    sent = await bot.send_message(GROUP, "any time", ephemeral_message_parameters=to(ALICE))
    assert sent.ephemeral_message_id == 1 and tg.ephemeral_messages(GROUP, ALICE)[0].replaces is None
    assert tg.messages(GROUP) == [tg.message(GROUP, alert.message_id)]
