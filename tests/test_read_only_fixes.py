"""A trading bot whose table reconbot may not write (freqtrade keeps its trades in memory): no fix is offered that
would be refused. The alert shows freqtrade's own remedy as a copy-text button, /closeghost and the CLI refuse
before anyone is asked to confirm. freqtrade's own table (tests/schemas), the real bot through the loopback Bot
API, the CLI in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

from services.model import RECONCILIATION
from tests.chatops import ALERT_CHAT, OPERATOR, VIEWER, Harness, running_chatops, telegram_settings
from tests.helpers import cli, fetch_audit
from tests.test_reach import freqtrade_postgres, freqtrade_trade, write

GHOST_TRADE = 2  # ETH/USDT:USDT SHORT in tests.test_reach.FREQTRADE_ROWS: open in freqtrade, not on the exchange
REMEDY = f"/reload_trade {GHOST_TRADE}"


@contextlib.asynccontextmanager
async def freqtrade_chatops(
    database_url, telegram, binance, chats: tuple[int, ...] = (ALERT_CHAT,), **positions
) -> AsyncIterator[Harness]:
    await freqtrade_postgres(database_url)
    settings = telegram_settings(
        database_url,
        [binance],
        telegram,
        positions={"preset": "freqtrade", **positions},
        telegram={"alert_chat_ids": list(chats)},
    )
    async with running_chatops(settings, telegram, migrate=False) as h:
        yield h


def copy_texts(message) -> list[str]:
    return [button["copy_text"]["text"] for button in message.buttons if "copy_text" in button]


async def test_a_read_only_ghost_alert_offers_freqtrades_remedy_not_mark_closed(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("0.01"))
    async with freqtrade_chatops(database_url, telegram, binance) as h:
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
        assert "Ghost position" in alert.text and "ETHUSDT SHORT" in alert.text
        assert "Mark closed" not in alert.button_texts, "a fix the store would refuse is never offered"
        assert copy_texts(alert) == [REMEDY]
        assert alert.button_texts == [f"📋 {REMEDY}", "Snooze 1h", "Acknowledge", "Details"]
        [remedy] = [b for b in alert.buttons if "copy_text" in b]
        assert "callback_data" not in remedy, "copying needs no round trip to reconbot"

        [finding] = await h.runtime.findings.live()
        pressed = await h.press(OPERATOR, alert, data=f"f:markclosed:{finding.id}")  # an alert from before
        assert pressed.ok
        answer = await h.message_where(ALERT_CHAT, lambda m: m.message_id > alert.message_id)
        assert not answer.has_keyboard, "no Confirm: it would only be refused"
        assert REMEDY in answer.text and "written to the DB" not in answer.text
    assert (await freqtrade_trade("postgresql", None, database_url, GHOST_TRADE))["is_open"] is True
    assert [a["outcome"] for a in await fetch_audit(database_url)] == ["refused"]


async def test_each_readers_copy_of_a_read_only_ghost_and_its_opened_details(database_url, new_account, telegram):
    """The remedy stands in for a fix, so only an operator's copy has it; opened details offer no /closeghost to
    copy, as it would only be refused."""
    binance = new_account("binance")
    async with freqtrade_chatops(database_url, telegram, binance, chats=(OPERATOR, VIEWER)) as h:
        await h.reconciler.check(RECONCILIATION)
        await h.telegram.wait_until(lambda: all(h.telegram.messages(chat) for chat in (OPERATOR, VIEWER)))
        [viewers] = h.telegram.messages(VIEWER)
        assert viewers.button_texts == ["Details"] and copy_texts(viewers) == []
        [alert] = h.telegram.messages(OPERATOR)
        assert alert.button_texts == [f"📋 {REMEDY}", "Snooze 1h", "Acknowledge", "Details"]
        await h.press(OPERATOR, alert, "Details")
        opened = await h.edited_to(alert, "DB row #")
        assert opened.button_texts == [f"📋 {REMEDY}", "Snooze 1h", "Acknowledge", "Hide details"]
        assert copy_texts(opened) == [REMEDY], "no /closeghost: it would only be refused"


async def test_closeghost_on_a_read_only_table_refuses_before_asking(database_url, new_account, telegram):
    binance = new_account("binance")
    async with freqtrade_chatops(database_url, telegram, binance) as h:
        [answer] = await h.say(OPERATOR, f"/closeghost {GHOST_TRADE}")
    assert answer.text.startswith("Nothing changed: freqtrade keeps open trades in memory")
    assert REMEDY in answer.text and not answer.has_keyboard
    assert binance.request_count("positions") == 0, "refused before reading anything"
    assert [a["outcome"] for a in await fetch_audit(database_url)] == ["refused"]


async def test_a_writable_freqtrade_table_still_offers_mark_closed(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("0.01"))
    async with freqtrade_chatops(database_url, telegram, binance, writable=True) as h:
        await h.reconciler.check(RECONCILIATION)
        [alert] = await h.wait_alerts(1)
    assert alert.button_texts == ["Mark closed", "Snooze 1h", "Acknowledge", "Details"]
    assert copy_texts(alert) == []


# -- the command line ------------------------------------------------------------------------------------------


async def test_the_cli_refuses_a_read_only_closeghost_before_it_asks(tmp_path, database_url, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("0.01"))
    await freqtrade_postgres(database_url)
    config = write(tmp_path, database_url, [binance], {"preset": "freqtrade"})
    code, out, err = await cli(capsys, "closeghost", GHOST_TRADE, "--config", config)
    assert "[y/N]" not in out + err, "nobody is asked to confirm a fix that will be refused"
    assert code == 1
    assert out.startswith("not changed: freqtrade keeps open trades in memory") and REMEDY in out
    assert (await freqtrade_trade("postgresql", tmp_path, database_url, GHOST_TRADE))["is_open"] is True


async def test_reconcile_fix_on_a_read_only_table_refuses_before_it_asks(tmp_path, database_url, new_account, capsys):
    binance = new_account("binance")
    binance.set_position("BTCUSDT", "long", Decimal("0.01"))
    await freqtrade_postgres(database_url)
    config = write(tmp_path, database_url, [binance], {"preset": "freqtrade"})
    code, out, err = await cli(capsys, "reconcile", "--config", config, "--fix")
    assert "[y/N]" not in out + err
    assert code == 1
    assert "not changed: freqtrade keeps open trades in memory" in out and REMEDY in out
    assert (await freqtrade_trade("postgresql", tmp_path, database_url, GHOST_TRADE))["is_open"] is True
    assert [a["outcome"] for a in await fetch_audit(database_url)] == ["refused"]
