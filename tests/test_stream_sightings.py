"""A stream event never stands in for a read it did not make. A ghost needs two reads that both say the position
is gone: a position update of size 0 is one (a real close still reaches the phone within a second or two, with
one REST read), an order event or a position update with a size is not — so one REST read that glitched and
left out a position that is still open is caught by the usual second read, not announced as a ghost.

Through the loopback venues (their private streams and REST in their own JSON), real ccxt and ccxt.pro, real
PostgreSQL and the loopback Bot API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.model import FindingKind, PositionKey, Side, Sighting
from tests.helpers import fetch_audit, insert_positions, prepare_database, running, until
from tests.helpers import position_row as row
from tests.test_streams import settled, streaming, texts

POSITIONS_PATH = {"binance": "/fapi/v3/positionRisk", "bybit": "/v5/position/list"}


def omit_once(venue: str, market: str, *, after: int = 0) -> Callable[[Any], Any]:
    """A positions answer that leaves out ``market`` once — the first answer that holds it, after ``after`` that
    did — in the venue's own JSON (Binance: the list of rows; Bybit: the ``result`` of one category's page)."""
    left_out: list[str] = []
    served = []

    def transform(payload: Any) -> Any:
        rows = payload if venue == "binance" else payload["list"]
        kept = [r for r in rows if r["symbol"] != market]
        if left_out or len(kept) == len(rows):
            return payload
        if len(served) < after:
            served.append(market)
            return payload
        left_out.append(market)
        return kept if venue == "binance" else {**payload, "list": kept}

    transform.left_out = left_out  # type: ignore[attr-defined]
    return transform


async def matching_books(database_url: str, account) -> None:
    """BTCUSDT LONG 1 on the exchange and in the DB: nothing to report."""
    account.set_position("BTCUSDT", "long", Decimal("1"), entry_price=Decimal("62000"))
    await prepare_database(database_url)
    await insert_positions(database_url, [row(account, "BTCUSDT", "long", "1")])


def position_reads(account, since: float) -> int:
    return sum(1 for r in account.requests_since(since) if r.endpoint == "positions")


EVENTS = {
    "an order event": lambda account: account.place_protective_order(
        "BTCUSDT", "sell", "stop_market", trigger_price=50000, close_position=True
    ),
    "a position update with a size": lambda account: account.set_position(  # Binance pushes a new entry price
        "BTCUSDT", "long", Decimal("1"), entry_price=Decimal("62100")
    ),
}


@pytest.mark.parametrize("venue", ["binance", "bybit"])
@pytest.mark.parametrize("event", list(EVENTS))
async def test_an_event_and_one_read_that_left_out_an_open_position_raise_no_ghost(
    database_url, new_account, telegram, venue, event
):
    account = new_account(venue)
    await matching_books(database_url, account)
    async with running(streaming(database_url, [account], telegram)) as service:
        await settled(service, account.name)
        assert texts(telegram) == [], "the books match"
        glitch = omit_once(venue, "BTCUSDT")
        account.tamper(POSITIONS_PATH[venue], glitch)
        runs, since = service.checks.runs, time.time()

        EVENTS[event](account)
        await until(lambda: service.checks.runs > runs and glitch.left_out)
        await service.reconciler.wait_idle(10)
        assert await service.runtime.findings.live() == [], "the event did not say the position was gone"
        await asyncio.sleep(0.5)
        assert texts(telegram) == []
        assert position_reads(account, since) >= 2, "the second read found the position"


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_a_real_close_is_confirmed_by_a_second_read_of_both_sides(database_url, new_account, telegram, venue):
    """The event says the position is gone (size 0) before the trading bot could record its own close: the REST
    read it triggers is the first read, and the ghost is confirmed by a second one ``verify_delay_s`` later."""
    account = new_account(venue)
    await matching_books(database_url, account)
    async with running(streaming(database_url, [account], telegram, scan={"verify_delay_s": 1})) as service:
        await settled(service, account.name)
        since = time.time()
        account.close_position("BTCUSDT", "long", cause="manual", price="60000")
        await until(lambda: any("BTCUSDT" in t for t in texts(telegram)), timeout=8)
        [alert] = texts(telegram)
        assert "Ghost position" in alert
        assert position_reads(account, since) >= 2, "the confirming read of both sides"


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_a_close_the_trading_bot_records_at_once_is_no_ghost(database_url, new_account, telegram, venue):
    """The trading bot closes its own position and records it half a second later: the stream event comes first,
    yet no ghost is told and nothing is auto-fixed."""
    account = new_account(venue)
    await matching_books(database_url, account)
    scan = {"verify_delay_s": 1.5, "auto_fix_ghosts": True}
    async with running(streaming(database_url, [account], telegram, scan=scan)) as service:
        await settled(service, account.name)
        account.close_position("BTCUSDT", "long", cause="manual", price="60000")
        await asyncio.sleep(0.5)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE positions SET status = 'closed', updated_at = now() WHERE symbol = 'BTCUSDT'")
        finally:
            await conn.close()
        await asyncio.sleep(3)
        await service.reconciler.wait_idle(10)
        assert [f.kind for f in await service.runtime.findings.live()] == []
        assert not any("BTCUSDT" in t for t in texts(telegram)), texts(telegram)
        assert await fetch_audit(database_url) == [], "nothing was fixed"


async def test_a_young_positions_re_check_that_left_it_out_raises_no_ghost(database_url, new_account, telegram):
    """The read that found a position inside its grace window saw it there: the re-check when the window ends
    is no second read saying it is gone."""
    binance = new_account("binance")
    await matching_books(database_url, binance)
    async with running(streaming(database_url, [binance], telegram, scan={"grace_s": 1})) as service:
        await settled(service, binance.name)
        glitch = omit_once("binance", "BTCUSDT", after=1)  # the triggered read sees it, the re-check does not
        binance.tamper(POSITIONS_PATH["binance"], glitch)
        binance.set_position("BTCUSDT", "long", Decimal("1.5"), entry_price=Decimal("62000"))  # young: pending
        await until(lambda: glitch.left_out)
        await service.reconciler.wait_idle(10)
        assert [f.kind for f in await service.runtime.findings.live()] == [], "no ghost on the glitched re-check"


async def test_a_young_ghost_is_confirmed_when_its_window_ends(database_url, new_account, telegram):
    """The read that found a young DB row without a position said the position is gone; the re-check when the
    window ends says so again: two reads, so no third one ``verify_delay_s`` (30 s) later."""
    binance = new_account("binance")
    await prepare_database(database_url)
    scan = {"grace_s": 1, "verify_delay_s": 30}
    async with running(streaming(database_url, [binance], telegram, scan=scan)) as service:
        await settled(service, binance.name)
        started, now = time.monotonic(), datetime.now(UTC)
        await insert_positions(database_url, [row(binance, "ETHUSDT", "long", "2", opened_at=now, updated_at=now)])
        await until(lambda: any("ETHUSDT" in t for t in texts(telegram)), timeout=8)
        assert 1 <= time.monotonic() - started < 6
        [alert] = texts(telegram)
        assert "Ghost position" in alert


def test_no_event_stands_in_for_a_read_of_an_absence():
    """Ghosts and stray orders say the exchange holds no position on their key: an event never stands in for one
    of their two reads. Every other kind says what it holds there, which any event naming the key prompted the
    read to look at."""
    key = PositionKey("acct", "BTCUSDT", Side.LONG)
    named = Sighting("acct", "BTCUSDT")  # an order event, or a position with a size
    closed = Sighting("acct", "BTCUSDT", Side.LONG, gone=True)
    flat = Sighting("acct", "BTCUSDT", None, gone=True)  # a one-way position that went flat: either side
    other_side = Sighting("acct", "BTCUSDT", Side.SHORT, gone=True)
    for kind in (FindingKind.GHOST, FindingKind.STRAY_ORDER):  # the trading bot may be recording its own close
        assert not named.confirms(kind, key)
        assert not closed.confirms(kind, key) and not flat.confirms(kind, key)
        assert not other_side.confirms(kind, key)
        assert Sighting("acct", "BTCUSDT", Side.LONG, gone=True, read=True).confirms(kind, key), "a young row's read"
    for kind in (FindingKind.ORPHAN, FindingKind.QUANTITY_MISMATCH, FindingKind.UNPROTECTED):
        assert named.confirms(kind, key) and closed.confirms(kind, key)
