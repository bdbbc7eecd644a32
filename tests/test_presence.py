"""The chat knows whether anyone is watching: one quiet "watching N accounts" when `run` starts, one when it
stops gracefully, and a loud notice when the accounts a replica holds have gone a whole interval without a check
(and a quiet one when checks resume). Real `run` processes and start_service, the loopback Bot API and venues."""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal

from tests.chatops import ALERT_CHAT, PRESENCE, telegram_settings
from tests.helpers import prepare_database, running, until
from tests.test_service import fast, read_until, run_config, start_run

WATCHING, STOPPED = PRESENCE


def texts(telegram) -> list[str]:
    return [m.text for m in telegram.messages(ALERT_CHAT)]


async def test_start_and_graceful_stop_are_said_quietly(database_url, new_account, telegram):
    bybit, binance = new_account("bybit"), new_account("binance")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    settings = telegram_settings(database_url, [bybit, binance], telegram, scan=fast(), alerts={"console": False})
    async with running(settings):
        await until(lambda: any("Orphan position" in t for t in texts(telegram)))
        first = telegram.messages(ALERT_CHAT)[0]
        assert first.text == f"{WATCHING}2 accounts: {bybit.name}, {binance.name}."
        assert first.silent is True
    last = telegram.messages(ALERT_CHAT)[-1]
    assert last.text == f"{STOPPED}: restart reconbot to resume.", texts(telegram)
    assert last.silent is True
    assert [t for t in texts(telegram) if t.startswith((WATCHING, STOPPED))] == [first.text, last.text]


async def test_sigterm_says_watching_stopped_before_the_process_ends(tmp_path, database_url, new_account, telegram):
    bybit = new_account("bybit")
    await prepare_database(database_url)
    config = run_config(tmp_path, database_url, [bybit], telegram, orphan_interval_s=60, reconcile_interval_s=60)
    process = await start_run(config)
    try:
        await read_until(process, "reconbot running")
        await until(lambda: any(t.startswith(WATCHING) for t in texts(telegram)))
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, output
    assert texts(telegram) == [f"{WATCHING}1 account: {bybit.name}.", f"{STOPPED}: restart reconbot to resume."]
    assert all(m.silent for m in telegram.messages(ALERT_CHAT))


async def test_checks_that_stop_raise_a_loud_notice_and_one_when_they_resume(database_url, new_account, telegram):
    bybit = new_account("bybit")
    settings = telegram_settings(database_url, [bybit], telegram, scan=fast(stall_after_s=2), alerts={"console": False})
    async with running(settings) as service:
        await until(lambda: service.scheduler.runs >= 2)
        await asyncio.sleep(2.5)
        assert not [t for t in texts(telegram) if "No check" in t], "checks every second: no stall"
        service.scheduler.scheduler.pause()  # the scheduler runs no more checks
        stalled = await until(
            lambda: next((m for m in telegram.messages(ALERT_CHAT) if "No check" in m.text), None), timeout=10
        )
        assert stalled.text.startswith(f"⚠️ No check on {bybit.name} for ")
        assert "checks are due every 1 s" in stalled.text
        assert stalled.silent is False, "nobody watching the accounts rings"
        service.scheduler.scheduler.resume()
        resumed = await until(
            lambda: next((m for m in telegram.messages(ALERT_CHAT) if "Checks resumed" in m.text), None), timeout=10
        )
        assert resumed.text == f"✅ Checks resumed on {bybit.name}."
        assert resumed.silent is True
        await asyncio.sleep(1.5)
    assert len([t for t in texts(telegram) if "No check" in t]) == 1, "one notice per stall"
