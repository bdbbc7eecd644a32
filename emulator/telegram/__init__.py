"""A loopback Telegram Bot API server for end-to-end tests of aiogram bots.

The emulator speaks the HTTP side of the Bot API (``{base}/bot{token}/{method}``) closely enough for a
real :class:`aiogram.Bot` to run against it unchanged::

    tg = BotApiEmulator(token="123456:TEST", bot_username="reconbot_test")
    base = await tg.start()                          # "http://127.0.0.1:PORT"
    session = AiohttpSession(api=TelegramAPIServer.from_base(base))
    bot = Bot("123456:TEST", session=session)

It emulates only what reconbot uses; any other method answers ``404 Not Found``.

Methods:

* ``getMe``; ``getUpdates`` with long polling, ``offset`` confirmation, ``limit``, ``allowed_updates``
  (default: all but chat_member and the reaction updates) and 409 Conflict for a second poller.
* ``sendMessage``: text, ``parse_mode`` HTML (or none), ``entities``, ``reply_markup``, replies
  (``reply_parameters`` / ``reply_to_message_id``), ``disable_notification`` (kept as
  :attr:`StoredMessage.silent`) and ``message_thread_id`` (forum topics, :attr:`StoredMessage.thread_id`).
* Inline buttons: ``callback_data`` (1-64 bytes), ``url``, ``copy_text`` (a CopyTextButton of 1-256
  characters) and the other kinds Telegram accepts; ``style`` ``primary``, ``danger`` or ``success`` (read
  case-blind; ``default`` is left out, as the Bot API server does; anything else answers ``invalid button
  style specified``).
* Ephemeral messages (``sendMessage`` with ``ephemeral_message_parameters``): in groups and supergroups only,
  to the receiver of a press within 15 seconds (``callback_query_id``, optionally
  ``replace_callback_query_message``) or to any non-bot member when the bot is an administrator; kept apart
  from the chat (:meth:`BotApiEmulator.ephemeral_messages`, :attr:`StoredMessage.replaces`), answered with
  ``message_id`` 0 and an ``ephemeral_message_id``; their buttons can be pressed by their receiver;
  ``deleteEphemeralMessage``.
* ``editMessageText`` and ``editMessageReplyMarkup`` of the bot's own messages (kept as versions in
  :attr:`StoredMessage.history`); ``deleteMessage``.
* ``answerCallbackQuery`` for presses queued with :meth:`BotApiEmulator.user_presses`, one accepted answer
  per query (see :class:`CallbackQueryRecord`, :meth:`BotApiEmulator.unanswered_callback_queries`).
* ``setMyCommands`` / ``getMyCommands`` / ``deleteMyCommands`` for all seven ``BotCommandScope`` types and
  ``language_code``, stored per (scope, language); :meth:`BotApiEmulator.commands_for` resolves the list a
  user sees in a chat with Telegram's scope precedence.

Requests may be ``application/x-www-form-urlencoded`` (what aiogram sends when no file is attached),
``multipart/form-data``, ``application/json`` or a query string; complex fields are JSON strings as aiogram
encodes them.  Answers have the Bot API shape ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error_code": N, "description": "...", "parameters": {...}}`` with HTTP status ``error_code``, so aiogram
raises its usual exceptions.  Error descriptions are Telegram's own texts, except where the Bot API states a
rule without the server's words for breaking it (a copy_text's length, the ephemeral message rules): there
they are the emulator's, saying which rule.

Text rules, as Telegram applies them:

* ``parse_mode`` HTML is parsed with TDLib's rules (``<tg-time unix=… format=…>`` included: a ``date_time``
  entity, its format returned in the server's order); the stored and returned ``text`` is the plain text,
  with ``entities`` whose offsets and lengths count UTF-16 code units.  The markup as sent is kept as
  :attr:`StoredMessage.raw_text`.  Parse failures answer ``400 Bad Request: can't parse entities: <reason>``.
  Explicit ``entities`` are checked as the server reads them (a ``date_time`` needs its ``unix_time`` and a
  valid ``date_time_format``).
* ``MarkdownV2`` and ``Markdown`` are not emulated: they answer 400 saying the emulator supports HTML
  only, so a change that starts sending Markdown fails loudly.  Other modes: ``unsupported parse_mode``.
* Stricter than Telegram on purpose: a bare ``&`` in HTML text (not ``&lt; &gt; &amp; &quot;`` or a
  numeric reference) is rejected, since it means the bot forgot to escape user data
  (``BotApiEmulator(strict_html_ampersand=False)`` accepts it, as Telegram does).
* Leading and trailing whitespace is trimmed and entities clipped; an empty result answers ``message text
  is empty``.  The 4096 limit is checked after parsing and trimming, in UTF-16 code units.
* Automatic entities (urls, mentions, hashtags) are not detected in bot messages.

Chats, topics and permissions:

* Unknown chat ids are created on first use (positive: private, ``-100...``: supergroup, other negative:
  group) unless ``strict_chats=True``.  :meth:`BotApiEmulator.add_chat` sets a chat's type, title,
  ``is_forum`` and administrators.
* ``message_thread_id`` must name a topic opened with :meth:`BotApiEmulator.add_topic` (or by
  ``user_sends(thread_id=...)``) in a forum; anything else answers ``message thread not found`` (Telegram
  itself now ignores the field in supergroups that are not forums; the emulator rejects it there too).  A
  reply without it goes to the replied message's topic.
* ``deleteMessage``: a missing or already deleted message answers ``message to delete not found``; one the
  bot may not delete answers ``message can't be deleted`` (someone else's message in a group where the bot
  is not an administrator, or anything older than 48 hours unless the bot is one).  Editing a missing or
  deleted message answers ``message to edit not found``.

Flood limits (off until ``tg.enforce_flood_limits = True``; tune with :class:`FloodLimits`): one message a
second per private chat with short bursts allowed, 20 a minute per group, 30 a second overall; a send over a
limit answers ``429 Too Many Requests: retry after N`` with ``parameters.retry_after``.

Fault injection: :meth:`BotApiEmulator.fail` queues error answers; faults never touch ``getUpdates`` unless
that method is named, so polling keeps running through a ``sendMessage`` outage.  ``tg.down = True`` drops
every request: ``down_mode = "reset"`` (default) aborts the connection (aiogram: ``TelegramNetworkError``),
``down_mode = "502"`` answers ``502 Bad Gateway`` (``TelegramServerError``).

Everything answered is recorded in :attr:`BotApiEmulator.calls` (:class:`ApiCall`); chats keep their
messages (:class:`StoredMessage`).  The test-control methods are synchronous and must be called from the
event loop thread that runs the server.
"""

from emulator.telegram.records import (
    ApiCall,
    CallbackQueryRecord,
    Fault,
    FloodLimits,
    MessageVersion,
    StoredMessage,
)
from emulator.telegram.server import BotApiEmulator
from emulator.telegram.text import EntityParseError, parse_html, utf16_len

__all__ = [
    "ApiCall",
    "BotApiEmulator",
    "CallbackQueryRecord",
    "EntityParseError",
    "Fault",
    "FloodLimits",
    "MessageVersion",
    "StoredMessage",
    "parse_html",
    "utf16_len",
]
