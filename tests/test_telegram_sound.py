"""Sound follows risk, not kind: a position the venue's risk engine ended (liquidation, auto-deleveraging) or
cut rings with the cause as the first line; a plain ghost keeps its kind's sound; ``alerts.notify`` takes
causes as well as kinds. End to end: the loopback venues serve the history in their own JSON, the bot is real
aiogram against the loopback Bot API, PostgreSQL is real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.model import RECONCILIATION
from tests.chatops import chatops_for as chatops
from tests.chatops import ghost_alert
from tests.helpers import insert_positions
from tests.helpers import position_row as row

CLOSED_AT = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
CLOSED_MS = int(CLOSED_AT.timestamp() * 1000)


def ended(account, cause: str, qty: str | None = None) -> None:
    """ETHUSDT LONG 10 opened at 3,500 and ended (all of it, or ``qty``) by ``cause`` at 3,360 half an hour ago:
    a whole position realizes −1,400 USDT."""
    account.set_position("ETHUSDT", "long", Decimal("10"), entry_price=Decimal("3500"))
    account.close_position("ETHUSDT", "long", cause=cause, price="3360", qty=qty, at_ms=CLOSED_MS)


@pytest.mark.parametrize("venue", ["bybit", "binance"])
async def test_a_liquidation_rings_with_the_cause_and_the_realized_loss_first(
    database_url, new_account, telegram, venue
):
    account = new_account(venue)
    ended(account, "liquidation")
    async with chatops(database_url, telegram, [account]) as h:
        alert = await ghost_alert(h, account)
    first, second, *_ = alert.text.splitlines()
    assert first == f"💥 Liquidated: ETHUSDT LONG 10 on {account.name} · −1,400.00 USDT realized"
    assert second.startswith("🔴 Ghost position · DB holds ≈ 35,000.00 USDT")
    assert alert.silent is False, "a liquidation is news: it rings although ghosts are silent by default"


async def test_auto_deleveraging_rings_with_the_cause_first(database_url, new_account, telegram):
    bybit = new_account("bybit")
    ended(bybit, "adl")
    async with chatops(database_url, telegram, [bybit]) as h:
        alert = await ghost_alert(h, bybit)
    first = alert.text.splitlines()[0]
    assert first == f"💥 Auto-deleveraged: ETHUSDT LONG 10 on {bybit.name} · −1,400.00 USDT realized"
    assert alert.silent is False


async def test_a_size_cut_by_a_partial_liquidation_rings_with_the_cause_first(database_url, new_account, telegram):
    bybit = new_account("bybit")
    ended(bybit, "liquidation", qty="4")
    async with chatops(database_url, telegram, [bybit]) as h:
        alert = await ghost_alert(h, bybit)
    first, second, *_ = alert.text.splitlines()
    assert first == f"💥 Partly liquidated: ETHUSDT LONG 10 → 6 on {bybit.name} · −560.00 USDT realized"
    assert second.startswith("🔴 Quantity mismatch")
    assert alert.silent is False


@pytest.mark.parametrize(("notify", "silent"), [({}, True), ({"ghost": "loud"}, False)])
async def test_a_plain_ghost_keeps_its_kinds_sound(database_url, new_account, telegram, notify, silent):
    binance = new_account("binance")
    ended(binance, "manual")
    async with chatops(database_url, telegram, [binance], alerts={"notify": notify}) as h:
        alert = await ghost_alert(h, binance)
    assert alert.text.startswith("🔴 Ghost position · DB holds ≈ 35,000.00 USDT"), "no cause headline for a close"
    assert "was closed by an order" in alert.text
    assert alert.silent is silent


@pytest.mark.parametrize(
    ("cause", "notify", "silent"),
    [
        ("liquidation", {"ghost": "loud", "liquidation": "silent"}, True),
        ("manual", {"ghost": "silent", "manual_or_other": "loud"}, False),
    ],
)
async def test_notify_is_set_per_cause_and_the_cause_wins_over_the_kind(
    database_url, new_account, telegram, cause, notify, silent
):
    bybit = new_account("bybit")
    ended(bybit, cause)
    async with chatops(database_url, telegram, [bybit], alerts={"notify": notify}) as h:
        alert = await ghost_alert(h, bybit)
    assert alert.silent is silent


async def test_a_cause_set_off_keeps_its_findings_out_of_the_chat(database_url, new_account, telegram):
    bybit = new_account("bybit")
    ended(bybit, "liquidation")
    async with chatops(database_url, telegram, [bybit], alerts={"notify": {"liquidation": "off"}}) as h:
        await insert_positions(h.db, [row(bybit, "ETHUSDT", "long", "10", entry_price=Decimal("3500"))])
        filed = await h.reconciler.check(RECONCILIATION)
        assert len(filed.new) == 1, "still recorded"
        await h.settled()
        assert h.alerts() == []
