"""Text from outside (a trading bot's DB row, a venue's answer) is shown, never obeyed: a control character in it
cannot start a line of its own, reorder what follows or pass for reconbot's words — on the console, in the
logs, on Telegram or by e-mail. And a notice names the side that failed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket

import pytest

from services.notices import Notice, NoticeKind
from tests.chatops import ALERT_CHAT, telegram_settings
from tests.helpers import insert_positions, position_row, running, until

FORGED = "2026-12-07 INFO 🟢 All clear"
EVIL = f"BTCUSDT\n{FORGED}"
SHOWN = "BTCUSDT\\n2026-12-07 INFO 🟢 All clear"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("BTCUSDT", "BTCUSDT"),
        ("ETH/USDT:USDT 🟢 ü", "ETH/USDT:USDT 🟢 ü"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("bell\x07 esc\x1b[31m del\x7f", "bell\\x07 esc\\x1b[31m del\\x7f"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("\u202eevil\u202c \u2066iso\u2069", "\\u202eevil\\u202c \\u2066iso\\u2069"),
        ("\u202a\u202b\u202d", "\\u202a\\u202b\\u202d"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_controls_are_shown_as_visible_escapes(raw, shown):
    from services.text_safety import escape_controls

    assert escape_controls(raw) == shown
    assert escape_controls(shown) == shown, "escaping twice changes nothing"


def checking_every_second(database_url, account, telegram, **alerts):
    scan = {"orphan_interval_s": 1, "reconcile_interval_s": 1, "jitter_s": 0}
    return telegram_settings(database_url, [account], telegram, scan=scan, alerts=alerts)


def one_line_each(text: str) -> None:
    """The forged line never stands on its own and the symbol is shown escaped."""
    assert SHOWN in text, text
    assert not any(line.startswith(FORGED) for line in text.splitlines()), text


async def test_a_db_symbol_cannot_forge_a_line(database_url, new_account, telegram, capsys):
    """Written as the seed bot would (its positions table): console, Telegram and e-mail show it on one line."""
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.original_content)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    binance = new_account("binance")
    email_to = {"host": "127.0.0.1", "port": port, "starttls": False, "recipients": ["desk@example.com"]}
    settings = checking_every_second(database_url, binance, telegram, console=True, email=email_to)
    try:
        async with running(settings):
            await insert_positions(database_url, [position_row(binance, EVIL, "long", "1")])
            await until(lambda: len(received) >= 2, timeout=30)  # watching started; the alert
            await asyncio.sleep(0.2)
    finally:
        controller.stop()

    console = capsys.readouterr().out
    assert "NEW ALERT" in console
    one_line_each(console)

    [alert] = [m for m in telegram.messages(ALERT_CHAT) if "BTCUSDT" in m.text]
    one_line_each(alert.text)

    message = email.message_from_bytes(received[1], policy=email.policy.default)
    assert message["Subject"] == f"[reconbot] Unknown symbol {SHOWN} LONG on {binance.name}"
    one_line_each(message.get_body().get_content())


def test_log_lines_show_outside_text_on_one_line(caplog):
    """Every log record (the journal's lines) escapes what its arguments carried, reconbot's own or a library's."""
    from main import configure_logging

    previous = logging.getLogRecordFactory()
    configure_logging(False)
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("services.monitor").info("%s: confirming read failed: %s", "binance-main", EVIL)
            logging.getLogger("aiogram.event").warning(f"update failed: {EVIL}")
            logging.getLogger("services.monitor").info("check account=%s findings=%d", "a", 3)
        forged, library, plain = caplog.records
        assert forged.getMessage() == f"binance-main: confirming read failed: {SHOWN}"
        assert library.getMessage() == f"update failed: {SHOWN}"
        assert plain.getMessage() == "check account=a findings=3"
        untouched = logging.getLogRecordFactory()("services.monitor", logging.INFO, __file__, 1, "n=%d", (3,), None)
        assert untouched.args == (3,), "a record without a control character keeps its arguments"
        assert all("\n" not in line for line in caplog.text.splitlines(keepends=False)), caplog.text
        assert FORGED not in [line.split(": ", 1)[-1] for line in caplog.text.splitlines()]
    finally:
        logging.setLogRecordFactory(previous)


def test_notices_escape_the_venues_words_and_name_the_failing_side():
    from datetime import UTC, datetime

    from bot.texts import notice_message
    from services.model import FailedSide
    from services.plain_text import notice_text

    since = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    venue = Notice(
        NoticeKind.UNREACHABLE, account="bybit-main", since=since, failures=3, error=f"rate limited\n{FORGED}"
    )
    assert notice_text(venue) == (
        f"bybit-main: exchange not reachable since 09:30 UTC (3 checks in a row): rate limited\\n{FORGED}"
    )
    assert "\n" not in notice_message(venue)
    db = Notice(
        NoticeKind.UNREACHABLE,
        account="bybit-main",
        since=since,
        failures=3,
        error="DB row #17 cannot be read: quantity 'abc' is not a number",
        failed=FailedSide.DB,
    )
    assert notice_text(db) == (
        "bybit-main: not checked since 09:30 UTC (3 checks in a row): DB row #17 cannot be read: "
        "quantity 'abc' is not a number"
    )
    assert Notice.from_body(db.to_body()) == db, "kept in the outbox as it was"


async def test_an_unreadable_row_is_announced_as_the_db_row(database_url, new_account, telegram):
    """Through the whole path: the row's problem, not the exchange, in the notice Telegram receives."""
    binance = new_account("binance")
    settings = checking_every_second(database_url, binance, telegram, unchecked_after=2, console=False)
    async with running(settings):
        [row_id] = await insert_positions(database_url, [position_row(binance, "BTCUSDT", f"long\n{FORGED}", "1")])
        await until(lambda: any("not checked since" in m.text for m in telegram.messages(ALERT_CHAT)), timeout=30)
    [notice] = [m.text for m in telegram.messages(ALERT_CHAT) if "not checked since" in m.text]
    assert notice.startswith(f"{binance.name}: not checked since "), notice
    assert f"DB row #{row_id} cannot be read: side " in notice and "exchange" not in notice
    assert "\n" not in notice
