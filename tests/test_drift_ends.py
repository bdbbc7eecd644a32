"""Drift ends the way it starts: confirmed by a second read. One venue answer that left out a position (or one DB
read that left out a row) neither resolves a live finding — no "Resolved" edit, no second alert for the same
drift at the next check, no lost snooze — nor counts once the finding is seen again; a finding resolves when two
reads of its account both no longer see it: the read that first misses it and the confirming read the same
check makes ``verify_delay_s`` later (or the next check, when that read failed), or the stream's size-0 event and
the read it triggered.

Through the loopback venues (REST and private streams in their own JSON), real ccxt and ccxt.pro, real
PostgreSQL and the loopback Bot API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.model import SCAN_KINDS, FindingKind, FindingState, PositionKey, Side, Sighting
from tests.chatops import ALERT_CHAT, running_chatops, telegram_settings, without_presence
from tests.helpers import insert_positions, prepare_database, running, until
from tests.helpers import position_row as row
from tests.test_stream_sightings import POSITIONS_PATH, omit_once, position_reads
from tests.test_streams import settled, streaming


def orphan_on(account) -> None:
    """BTCUSDT LONG 1 on the exchange and nothing in the DB: an orphan."""
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("62000"))


async def alerted_orphan(service, telegram):
    """The start-up check's orphan and its one alert."""
    [alert] = await until(lambda: without_presence(telegram.messages(ALERT_CHAT)))
    [orphan] = await service.runtime.findings.live()
    assert orphan.kind is FindingKind.ORPHAN
    return orphan, alert


async def live_ids(runtime) -> list[int]:
    return [f.id for f in await runtime.findings.live()]


async def first_read_missed(runtime, finding_id: int) -> None:
    """Wait until a running check's first read has marked the finding as no longer seen."""

    async def marked() -> bool:
        finding = await runtime.findings.get(finding_id)
        return finding is not None and finding.details.missed_at is not None

    await until(marked, timeout=10)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_one_read_that_left_out_an_orphan_neither_resolves_it_nor_alerts_it_again(
    database_url, new_account, telegram, venue
):
    account = new_account(venue)
    orphan_on(account)
    await prepare_database(database_url)
    async with running(streaming(database_url, [account], telegram)) as service:
        await settled(service, account.name)
        orphan, alert = await alerted_orphan(service, telegram)
        glitch = omit_once(venue, "BTCUSDT")
        account.tamper(POSITIONS_PATH[venue], glitch)
        since = time.time()

        filed = await service.reconciler.scheduled_check(SCAN_KINDS)  # the orphan scan falls due
        assert glitch.left_out, "a read left the position out"
        assert filed.resolved == () and filed.new == () and [f.id for f in filed.live] == [orphan.id]
        assert filed.missed == (), "the confirming read saw it again"
        assert position_reads(account, since) >= 2
        again = await service.reconciler.scheduled_check(SCAN_KINDS)  # and so does the next scan
        assert again.new == () and [f.id for f in again.live] == [orphan.id]
        [same] = await service.runtime.findings.live()
        assert same.id == orphan.id and same.state is FindingState.OPEN and same.details.missed_at is None
        assert same.first_seen == orphan.first_seen
        await asyncio.sleep(0.5)  # time for an edit or an alert to reach the Bot API
        assert without_presence(telegram.messages(ALERT_CHAT)) == [alert], "no second alert for the same drift"
        assert not telegram.message(ALERT_CHAT, alert.message_id).edited, "the alert was never edited"


async def test_a_snoozed_orphan_stays_snoozed_through_a_glitch(database_url, new_account, telegram):
    binance = new_account("binance")
    orphan_on(binance)
    await prepare_database(database_url)
    async with running(streaming(database_url, [binance], telegram)) as service:
        await settled(service, binance.name)
        orphan, alert = await alerted_orphan(service, telegram)
        until_at = datetime.now(UTC) + timedelta(hours=1)
        await service.runtime.findings.set_state(
            orphan.id, "snoozed", by="tester", destinations=service.reconciler.destinations, snoozed_until=until_at
        )
        service.reconciler.wake()
        await until(lambda: "Snoozed by tester" in telegram.message(ALERT_CHAT, alert.message_id).text)
        versions = len(telegram.message(ALERT_CHAT, alert.message_id).history)

        binance.tamper(POSITIONS_PATH["binance"], glitch := omit_once("binance", "BTCUSDT"))
        await service.reconciler.scheduled_check(SCAN_KINDS)
        assert glitch.left_out
        await service.reconciler.scheduled_check(SCAN_KINDS)

        [same] = await service.runtime.findings.live()
        assert (same.id, same.state, same.snoozed_until) == (orphan.id, FindingState.SNOOZED, until_at)
        await asyncio.sleep(0.5)
        assert without_presence(telegram.messages(ALERT_CHAT)) == [alert], "nothing rang"
        shown = telegram.message(ALERT_CHAT, alert.message_id)
        assert len(shown.history) == versions and "Snoozed by tester" in shown.text


async def test_a_position_closed_without_an_event_resolves_at_the_confirming_read(database_url, new_account, telegram):
    """Polled (no stream): the scan's first read that no longer sees the orphan only marks it, silently; the
    confirming read ``verify_delay_s`` later, within the same scan, resolves it and the alert is edited."""
    binance = new_account("binance")
    orphan_on(binance)
    await prepare_database(database_url)
    scan = {"verify_delay_s": 1}
    async with running(streaming(database_url, [binance], telegram, scan=scan, ws=False)) as service:
        orphan, alert = await alerted_orphan(service, telegram)
        await service.reconciler.wait_idle(10)
        binance.remove_position("BTCUSDT", "long")
        started, since = time.monotonic(), time.time()
        scan_task = asyncio.create_task(service.reconciler.scheduled_check(SCAN_KINDS))
        await first_read_missed(service.runtime, orphan.id)
        assert await live_ids(service.runtime) == [orphan.id]
        assert not telegram.message(ALERT_CHAT, alert.message_id).edited, "a first miss says nothing"

        filed = await scan_task
        elapsed = time.monotonic() - started
        assert [f.id for f in filed.resolved] == [orphan.id] and filed.live == () and filed.missed == ()
        assert 1 <= elapsed < 6, f"{elapsed:.2f}s: verify_delay_s after the first miss, not at the next scan (1 h)"
        assert position_reads(binance, since) == 2
        await until(lambda: "Resolved" in telegram.message(ALERT_CHAT, alert.message_id).text)
        assert "drift no longer seen" in telegram.message(ALERT_CHAT, alert.message_id).text
        assert len(without_presence(telegram.messages(ALERT_CHAT))) == 1


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_a_close_the_stream_announces_resolves_with_one_read(database_url, new_account, telegram, venue):
    """The size-0 event says the position is gone and the REST read it triggered agrees: two reads, so the
    alert says Resolved within a second or two, with no confirming read ``verify_delay_s`` (30 s) later."""
    account = new_account(venue)
    await prepare_database(database_url)
    async with running(streaming(database_url, [account], telegram, scan={"verify_delay_s": 30})) as service:
        await settled(service, account.name)
        started = time.monotonic()
        orphan_on(account)  # new: confirmed by its event and the read it triggered
        [alert] = await until(lambda: without_presence(telegram.messages(ALERT_CHAT)), timeout=8)
        assert time.monotonic() - started < 5
        await service.reconciler.wait_idle(10)

        started, since = time.monotonic(), time.time()
        account.close_position("BTCUSDT", "long", cause="manual", price="60000")
        await until(lambda: "Resolved" in telegram.message(ALERT_CHAT, alert.message_id).text, timeout=5)
        assert time.monotonic() - started < 5
        assert 1 <= position_reads(account, since) <= 3, "one read per category, no confirming second read"
        assert len(without_presence(telegram.messages(ALERT_CHAT))) == 1


# -- through the chat-ops face: the reconciler's own checks ------------------------------------------------------


async def set_status(database_url: str, position_id: int, status: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE positions SET status = $2 WHERE id = $1", position_id, status)
    finally:
        await conn.close()


async def test_a_db_read_that_left_out_a_ghosts_row_keeps_the_ghost(database_url, new_account, telegram):
    """A ghost (an active row, no position) whose row one DB read did not return (the row looked closed to that
    read) is the same finding after the confirming read; a row that stays closed resolves it."""
    binance = new_account("binance")
    await prepare_database(database_url)
    [pid] = await insert_positions(database_url, [row(binance, "ETHUSDT", "long", "2")])
    settings = telegram_settings(database_url, [binance], telegram, scan={"verify_delay_s": 1})
    async with running_chatops(settings, telegram) as h:
        [ghost] = (await h.reconciler.check()).new
        [alert] = await h.wait_alerts(1)

        await set_status(database_url, pid, "closed")
        check = asyncio.create_task(h.reconciler.check())
        await first_read_missed(h.runtime, ghost.id)
        await set_status(database_url, pid, "active")
        seen = await check
        assert (seen.resolved, seen.new, [f.id for f in seen.live]) == ((), (), [ghost.id])
        assert (await h.runtime.findings.get(ghost.id)).details.missed_at is None

        await set_status(database_url, pid, "closed")
        gone = await h.reconciler.check()
        assert [f.id for f in gone.resolved] == [ghost.id] and gone.live == ()
        edited = await h.edited_to(alert, "Resolved")
        assert "drift no longer seen" in edited.text
        assert len(h.alerts()) == 1


async def test_a_failed_confirming_read_leaves_the_end_to_the_next_check(database_url, new_account, telegram):
    """A read that failed says nothing about the drift: the mark stays, and the next check decides — seen, the
    same finding; not seen, its first read is the second that no longer sees it, so it resolves at once."""
    binance = new_account("binance")
    orphan_on(binance)
    settings = telegram_settings(database_url, [binance], telegram, scan={"verify_delay_s": 1})
    async with running_chatops(settings, telegram) as h:
        [orphan] = (await h.reconciler.check(SCAN_KINDS)).new

        async def first_read_misses_then_the_venue_fails():
            check = asyncio.create_task(h.reconciler.check(SCAN_KINDS))
            await first_read_missed(h.runtime, orphan.id)
            binance.fail("http_500", endpoint="positions")
            filed = await check
            binance.clear_faults()
            assert not filed.result.accounts[0].checked, "the confirming read failed"
            assert filed.resolved == () and [f.id for f in filed.live] == [orphan.id]
            assert (await h.runtime.findings.get(orphan.id)).details.missed_at is not None

        binance.tamper(POSITIONS_PATH["binance"], omit_once("binance", "BTCUSDT"))
        await first_read_misses_then_the_venue_fails()
        seen = await h.reconciler.check(SCAN_KINDS)
        assert seen.new == () and [f.id for f in seen.live] == [orphan.id]
        assert (await h.runtime.findings.get(orphan.id)).details.missed_at is None

        binance.remove_position("BTCUSDT", "long")
        await first_read_misses_then_the_venue_fails()
        since = time.time()
        gone = await h.reconciler.check(SCAN_KINDS)
        assert [f.id for f in gone.resolved] == [orphan.id]
        assert position_reads(binance, since) == 1, "two reads in a row no longer saw it: no third"


def test_only_a_size_0_event_stands_in_for_a_read_that_ends_a_held_position():
    """Orphans, size mismatches and unprotected positions say the exchange holds a position on their key: an event
    that says it went flat is a read that ends them. Ghosts and stray orders say it holds none, and an event that
    merely names the key (an order, a position with a size) is no read of an absence."""
    key = PositionKey("acct", "BTCUSDT", Side.LONG)
    named = Sighting("acct", "BTCUSDT")
    closed = Sighting("acct", "BTCUSDT", Side.LONG, gone=True)
    flat = Sighting("acct", "BTCUSDT", None, gone=True)
    other_side = Sighting("acct", "BTCUSDT", Side.SHORT, gone=True)
    for kind in (FindingKind.ORPHAN, FindingKind.QUANTITY_MISMATCH, FindingKind.UNPROTECTED):
        assert closed.ends(kind, key) and flat.ends(kind, key)
        assert not named.ends(kind, key) and not other_side.ends(kind, key)
    for kind in (FindingKind.GHOST, FindingKind.STRAY_ORDER, FindingKind.UNKNOWN_SYMBOL):
        assert not closed.ends(kind, key)
