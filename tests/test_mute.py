"""/mute never swallows anything, through the real bot and the loopback Bot API: while a chat is muted new
findings still arrive (critical ones ring, or arrive silent when the setting says so; everything else arrives
silent), and when the mute ends — by /mute off or by itself — one quiet catch-up lists what arrived meanwhile."""

from __future__ import annotations

import re
from decimal import Decimal

import asyncpg

from services.model import SCAN_KINDS
from tests.chatops import ALERT_CHAT, OPERATOR, VIEWER, Harness
from tests.test_telegram_alerts import chatops


def critical_orphan(account) -> None:
    """19,800 USDT: critical (from 10,000 USD)."""
    account.set_position("BTCUSDT", "long", Decimal("0.3"), mark_price=Decimal("66000"))


def warning_orphan(account) -> None:
    """3,000 USDT: a warning, and orphans are a loud kind: it rings when the chat is not muted."""
    account.set_position("SOLUSDT", "long", Decimal("20"), mark_price=Decimal("150"))


def info_orphan(account) -> None:
    """528.30 USDT: info-level."""
    account.set_position("XRPUSDT", "long", Decimal("300"), mark_price=Decimal("1.761"))


def unmuted_and_catch_up(messages: list) -> tuple:
    """The answer to /mute off and the catch-up, whichever of the two the chat got first."""
    [unmuted] = [m for m in messages if m.text.startswith("🔔 This chat")]
    [catch_up] = [m for m in messages if m.text.startswith("🔔 Mute over")]
    return unmuted, catch_up


def catch_ups(h: Harness) -> list:
    return [m for m in h.alerts() if m.text.startswith("🔔 Mute over")]


async def mute_row(database_url: str) -> dict | None:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT until, scope, muted_by FROM reconbot.chat_mutes WHERE chat_id = $1", ALERT_CHAT
        )
        return dict(row) if row else None
    finally:
        await conn.close()


async def test_a_muted_group_still_gets_a_new_critical_orphan_and_it_rings(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        [muted] = await h.say(OPERATOR, "/mute 30m", chat_id=ALERT_CHAT)
        assert muted.text.startswith("🔕 This chat is muted until ")
        assert "critical ones still ring" in muted.text
        critical_orphan(binance)
        warning_orphan(binance)
        await h.reconciler.check(SCAN_KINDS)
        critical = await h.message_where(ALERT_CHAT, lambda m: "BTCUSDT LONG" in m.text)
        warning = await h.message_where(ALERT_CHAT, lambda m: "SOLUSDT LONG" in m.text)
    assert critical.text.startswith("🔴 Orphan position · 19,800.00 USDT")
    assert critical.silent is False, "a mute never silences new critical risk"
    assert critical.has_keyboard, "the alert arrives whole, with its buttons"
    assert warning.text.startswith("🟠 Orphan position · 3,000.00 USDT")
    assert warning.silent is True, "below critical, a muted chat's alerts arrive silently"
    assert warning.has_keyboard


async def test_critical_alerts_arrive_silent_in_a_muted_chat_when_the_setting_says_so(
    database_url, new_account, telegram
):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance], telegram={"mute_critical": "silent"}) as h:
        [muted] = await h.say(OPERATOR, "/mute 2h", chat_id=ALERT_CHAT)
        assert "critical ones arrive silently too" in muted.text
        critical_orphan(binance)
        await h.reconciler.check(SCAN_KINDS)
        alert = await h.message_where(ALERT_CHAT, lambda m: "BTCUSDT LONG" in m.text)
    assert alert.text.startswith("🔴 Orphan position · 19,800.00 USDT") and alert.silent is True


async def test_mute_off_posts_one_catch_up_of_what_arrived_meanwhile(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        await h.say(OPERATOR, "/mute 30m", chat_id=ALERT_CHAT)
        critical_orphan(binance)
        info_orphan(binance)
        warning_orphan(binance)
        await h.reconciler.check(SCAN_KINDS)
        small = await h.message_where(ALERT_CHAT, lambda m: "SOLUSDT LONG" in m.text)
        await h.press(OPERATOR, small, "Snooze 1h")
        await h.message_where(ALERT_CHAT, lambda m: "XRPUSDT LONG" in m.text)
        await h.settled()
        assert catch_ups(h) == [], "nothing is summed up while the mute lasts"

        unmuted, catch_up = unmuted_and_catch_up(await h.say(OPERATOR, "/mute off", chat_id=ALERT_CHAT, replies=2))
        assert unmuted.text.startswith("🔔 This chat is no longer muted: alerts ring again.")
        assert "3 alerts arrived while it was muted" in unmuted.text
        lines = catch_up.text.splitlines()
        assert lines[0].startswith("🔔 Mute over · 3 alerts arrived since ")
        listed = [line for line in lines if re.match(r"^\d+\. ", line)]
        assert listed == [
            f"1. 🔴 19,800.00 USDT · Orphan BTCUSDT LONG · {binance.name} · still open",
            f"2. 🟠 3,000.00 USDT · Orphan SOLUSDT LONG · {binance.name} · snoozed",
            f"3. 🔵 528.30 USDT · Orphan XRPUSDT LONG · {binance.name} · still open",
        ], "biggest first, money first, with what became of each"
        assert catch_up.silent is True and not catch_up.has_keyboard
        assert await mute_row(database_url) is None

        [again] = await h.say(OPERATOR, "/mute off", chat_id=ALERT_CHAT)
        assert again.text == "This chat was not muted."
        binance.set_position("ETHUSDT", "long", Decimal("1"), mark_price=Decimal("3500"))
        await h.reconciler.check(SCAN_KINDS)
        alert = await h.message_where(ALERT_CHAT, lambda m: "ETHUSDT LONG" in m.text)
        assert alert.silent is False, "unmuted: a warning orphan rings again"
        await h.settled()
        assert len(catch_ups(h)) == 1, "one catch-up, once"


async def test_a_mute_that_ends_by_itself_posts_the_catch_up_too(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        h.chatops.mute_ends.poll_s = 0.2
        await h.say(OPERATOR, "/mute 1m", chat_id=ALERT_CHAT)
        critical_orphan(binance)
        await h.reconciler.check(SCAN_KINDS)
        await h.message_where(ALERT_CHAT, lambda m: "BTCUSDT LONG" in m.text)
        binance.remove_position("BTCUSDT", "long")
        await h.reconciler.check(SCAN_KINDS)
        conn = await asyncpg.connect(database_url)
        try:  # the minute is over a few seconds from now, without any command
            await conn.execute("UPDATE reconbot.chat_mutes SET until = now() + interval '1 second'")
        finally:
            await conn.close()
        catch_up = await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("🔔 Mute over"), timeout=10)
    assert f"1. 🔴 19,800.00 USDT · Orphan BTCUSDT LONG · {binance.name} · resolved" in catch_up.text
    assert catch_up.silent is True
    assert await mute_row(database_url) is None


async def test_a_mute_scoped_to_info_leaves_warnings_ringing(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        [muted] = await h.say(OPERATOR, "/mute 1h info", chat_id=ALERT_CHAT)
        assert "for info-level alerts" in muted.text
        assert (await mute_row(database_url))["scope"] == "info"
        warning_orphan(binance)
        info_orphan(binance)
        await h.reconciler.check(SCAN_KINDS)
        warning = await h.message_where(ALERT_CHAT, lambda m: "SOLUSDT LONG" in m.text)
        info = await h.message_where(ALERT_CHAT, lambda m: "XRPUSDT LONG" in m.text)
        assert warning.silent is False, "a warning is outside an info-only mute: it rings as usual"
        assert info.silent is True
        _unmuted, catch_up = unmuted_and_catch_up(await h.say(OPERATOR, "/mute off", chat_id=ALERT_CHAT, replies=2))
    assert "2 alerts arrived since" in catch_up.text


async def test_bad_mute_arguments_are_refused_and_change_nothing(database_url, new_account, telegram):
    binance = new_account("binance")
    async with chatops(database_url, telegram, [binance]) as h:
        [refused] = await h.say(VIEWER, "/mute", chat_id=ALERT_CHAT)
        assert "operators" in refused.text.lower()
        assert await mute_row(database_url) is None
        await h.say(OPERATOR, "/mute 2h info", chat_id=ALERT_CHAT)
        before = await mute_row(database_url)
        for bad, says in [
            ("/mute 9y", "“9y” is not a duration"),
            ("/mute 8d", "“8d” is longer than 7d"),
            ("/mute 0m", "“0m” is not a duration"),
            ("/mute 1h loud", "“loud” is not a level (info or warning)"),
            ("/mute 1h info warning", "too many words"),
            ("/mute off now", "too many words"),
        ]:
            [answer] = await h.say(OPERATOR, bad, chat_id=ALERT_CHAT)
            assert answer.text.startswith(f"Nothing changed: {says}."), (bad, answer.text)
            assert "Usage: /mute [duration] [info|warning]" in answer.text
            assert await mute_row(database_url) == before, f"{bad} changed the mute"


async def test_a_digest_in_a_muted_chat_rings_only_for_critical_risk(database_url, new_account, telegram):
    binance = new_account("binance", hedge_mode=True)
    async with chatops(database_url, telegram, [binance]) as h:
        await h.say(OPERATOR, "/mute 1h", chat_id=ALERT_CHAT)
        for market in ("SOLUSDT", "BNBUSDT", "ETHUSDT"):  # six warnings: one digest
            binance.set_position(market, "long", Decimal("1"), mark_price=Decimal("1500"))
            binance.set_position(market, "short", Decimal("1"), mark_price=Decimal("1500"))
        await h.reconciler.check(SCAN_KINDS)
        quiet = await h.message_where(ALERT_CHAT, lambda m: "6 new findings" in m.text)
        assert quiet.silent is True, "six warning orphans would ring; muted, their digest arrives silently"
        critical_orphan(binance)  # six more, one of them critical
        for market in ("XRPUSDT", "DOGEUSDT"):
            binance.set_position(market, "long", Decimal("100"))
            binance.set_position(market, "short", Decimal("100"))
        binance.set_position("1000PEPEUSDT", "long", Decimal("1000"))
        await h.reconciler.check(SCAN_KINDS)
        loud = await h.message_where(ALERT_CHAT, lambda m: "6 new findings" in m.text and m is not quiet)
        assert loud.silent is False, "a digest holding new critical risk rings through the mute"
        _unmuted, catch_up = unmuted_and_catch_up(await h.say(OPERATOR, "/mute off", chat_id=ALERT_CHAT, replies=2))
    assert catch_up.text.startswith("🔔 Mute over · 12 alerts arrived since ")
