"""The soak's judge (``bench/soak_truth.py``, ``bench/soak_verdict.py``): how changes become drift, when drift
must have been announced, and how the chat's transcript and reconbot's records are counted as lost, duplicate
and false alerts and wrong fixes. A soak that cannot count right proves nothing, so its arithmetic is tested
here on small, hand-made histories; the chat through the real loopback Bot API."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import aiohttp
import pytest

from bench.soak_faults import hostile_frame_faults
from bench.soak_truth import (
    Change,
    Ledger,
    Scope,
    Timing,
    Window,
    Writer,
    drifts,
    is_due,
    longest_clear_span,
)
from bench.soak_verdict import Announcement, AuditFix, Filed, FiledFinding, Transcript, judge, read_transcript
from bot.callbacks import FindingAction, FindingButton
from emulator.telegram import BotApiEmulator
from services.model import FindingKind, PositionKey, Side

TIMING = Timing(grace_s=3, verify_delay_s=1.5, orphan_interval_s=4, reconcile_interval_s=6, jitter_s=0.5)
KEY = PositionKey("binance-000", "SYN0001USDT", Side.LONG)
OTHER = PositionKey("bybit-001", "SYN0002USDT", Side.SHORT)
VENUES = {"binance-000": "binance", "bybit-001": "bybit"}
ONE, TWO = Decimal(1), Decimal(2)


def ledger_with(*steps: tuple[float, PositionKey, Decimal | None, Decimal, bool]) -> Ledger:
    ledger = Ledger(TIMING)
    for at, key, exchange, delta, young in steps:
        ledger.record(at, key, exchange=exchange, db_delta=delta, young=young, what="step")
    return ledger


def test_the_bots_own_change_recorded_late_is_no_drift_but_a_lasting_one_is():
    ledger = ledger_with(
        (10.0, KEY, ONE, Decimal(0), True),  # the entry fills ...
        (10.4, KEY, None, ONE, True),  # ... and the bot records it 0.4 s later: inside the grace window
        (20.0, OTHER, TWO, Decimal(0), True),  # an orphan nobody records for 5 s
        (25.0, OTHER, None, TWO, True),
    )
    found = drifts(ledger.changes, end=100, timing=TIMING)
    assert [(d.key, d.kind, d.start, d.end, d.real) for d in found] == [
        (KEY, FindingKind.ORPHAN, 10.0, 10.4, False),
        (OTHER, FindingKind.ORPHAN, 20.0, 25.0, True),
    ]
    assert found[0].min_life == TIMING.grace_s  # a young position: the grace window


def test_a_ghost_cut_short_by_reconbots_fix_is_judged_by_the_life_it_was_given():
    fix = Change(5.3, KEY, None, -ONE, False, "close_ghost", Writer.RECONBOT)
    liquidated = Change(5.0, KEY, Decimal(0), Decimal(0), False, "liquidated", planned_s=None)
    closing = Change(5.0, OTHER, Decimal(0), Decimal(0), False, "the bot closes", planned_s=0.4)
    fix_other = Change(5.3, OTHER, None, -ONE, False, "close_ghost", Writer.RECONBOT)
    baseline = [Change(0.0, k, ONE, ONE, False, "baseline") for k in (KEY, OTHER)]
    found = {d.key: d for d in drifts([*baseline, liquidated, fix, closing, fix_other], end=60, timing=TIMING)}
    assert found[KEY].real and found[KEY].ended_by is Writer.RECONBOT and found[KEY].duration == pytest.approx(0.3)
    assert not found[OTHER].real  # the bot would have closed its row 0.4 s later: shorter than the confirming read


def test_a_mismatch_whose_sizes_move_is_one_drift_and_a_fix_ends_it():
    steps = [
        Change(0.0, KEY, Decimal(3), Decimal(3), False, "baseline"),
        Change(1.0, KEY, TWO, Decimal(0), True, "part liquidated"),
        Change(9.0, KEY, ONE, Decimal(0), True, "more liquidated"),
        Change(20.0, KEY, None, Decimal(-2), True, "the bot sets its row to the exchange size"),
    ]
    [mismatch] = drifts(steps, end=60, timing=TIMING)
    assert (mismatch.kind, mismatch.start, mismatch.end, mismatch.ended_by) == (
        FindingKind.QUANTITY_MISMATCH,
        1.0,
        20.0,
        "driver",
    )


def test_drift_is_due_only_after_a_clear_stretch_longer_than_its_round():
    assert longest_clear_span(0, 30, [(5, 10), (8, 12), (20, 22)]) == 8  # 12..20
    assert longest_clear_span(0, 10, [(-5, 15)]) == 0
    assert longest_clear_span(0, 10, []) == 10
    [orphan] = drifts([Change(0.0, KEY, ONE, Decimal(0), True, "opened")], end=18, timing=TIMING)
    assert TIMING.due_s == pytest.approx(1.5 + 6 + 0.5 + 3)
    assert is_due(orphan, [], "binance", TIMING)  # 3 s of grace, then 15 s clear > 11 s
    blinded = Window(Scope.ACCOUNT, KEY.account, 5, 12, "timeout")
    assert not is_due(orphan, [blinded], "binance", TIMING)  # the longest clear stretch is 6 s
    assert is_due(orphan, [Window(Scope.ACCOUNT, OTHER.account, 5, 12, "timeout")], "binance", TIMING)
    assert not is_due(orphan, [Window(Scope.VENUE, "binance", 5, 12, "ban")], "binance", TIMING)
    assert is_due(orphan, [Window(Scope.VENUE, "bybit", 5, 12, "ban")], "binance", TIMING)
    assert not is_due(orphan, [Window(Scope.ALL, "", 5, 12, "pg")], "binance", TIMING)


def finding(fid: int, kind: str, key: PositionKey, at: float) -> FiledFinding:
    return FiledFinding(fid, kind, key, at, "open")


def judged(changes, findings, announcements, fixes=(), windows=(), end=100.0):  # type: ignore[no-untyped-def]
    filed = Filed({f.id: f for f in findings}, list(fixes), Counter(), undelivered=0)
    every = list(changes) + filed.changes()
    transcript = Transcript(announcements=list(announcements))
    return judge(drifts(every, end, TIMING), every, windows, VENUES, filed, transcript, TIMING, 0.0, end, slack_s=8)


def test_each_count_with_the_example_it_gives():
    changes = [
        Change(0.0, KEY, ONE, ONE, False, "baseline"),
        Change(10.0, KEY, Decimal(0), Decimal(0), False, "the bot closes", planned_s=0.3),  # transient ghost
        Change(10.3, KEY, None, -ONE, False, "the bot records its close"),
        Change(20.0, OTHER, TWO, Decimal(0), True, "an orphan"),  # lasts to the end: due, announced twice
        Change(
            30.0, PositionKey("bybit-001", "SYN0009USDT", Side.LONG), ONE, Decimal(0), True, "an orphan"
        ),  # never told
    ]
    findings = [
        finding(1, "ghost", KEY, 10.25),  # announced: false
        finding(2, "orphan", OTHER, 24.0),
        finding(3, "orphan", OTHER, 60.0),  # the same drift, filed again as a new finding
        finding(4, "unprotected", OTHER, 25.0),  # no such drift in the soak: false
    ]
    announcements = [
        Announcement(1, 10.4, 1, "alert"),
        Announcement(2, 24.5, 2, "alert"),
        Announcement(2, 24.6, 3, "alert"),  # the same message twice
        Announcement(3, 61.0, 4, "digest"),
        Announcement(4, 26.0, 5, "alert"),
    ]
    verdict = judged(changes, findings, announcements)
    assert verdict.counts() == {"lost": 1, "duplicate": 2, "false": 2, "wrong_fix": 0}
    assert "bybit-001 SYN0009USDT LONG" in verdict.lost[0] and "never filed" in verdict.lost[0]
    assert "finding #2" in verdict.duplicate[0] and "2 times" in verdict.duplicate[0]
    assert "findings #2, #3" in verdict.duplicate[1]
    assert "finding #1 ghost" in verdict.false[0] and "under its 1.5s minimum life" in verdict.false[0]
    assert "the soak makes no unprotected" in verdict.false[1]
    assert verdict.phone_s["orphan"] == [pytest.approx(4.5)]


def test_a_due_drift_filed_but_never_delivered_is_lost_and_says_so():
    changes = [Change(20.0, OTHER, TWO, Decimal(0), True, "an orphan")]
    verdict = judged(changes, [finding(7, "orphan", OTHER, 24.0)], [])
    assert verdict.counts()["lost"] == 1 and "filed as #7" in verdict.lost[0]
    assert judged(changes, [finding(7, "orphan", OTHER, 24.0)], [], end=30).counts()["lost"] == 0  # not due yet


def test_fixes_of_an_open_position_or_of_the_bots_own_close_are_wrong():
    base = [Change(0.0, k, ONE, ONE, False, "baseline") for k in (KEY, OTHER)]
    liquidated = Change(10.0, KEY, Decimal(0), Decimal(0), False, "liquidated")
    closing = Change(10.0, OTHER, Decimal(0), Decimal(0), False, "the bot closes", planned_s=0.3)

    def fix(fid: int, at: float, key: PositionKey, action: str = "close_ghost") -> AuditFix:
        return AuditFix(fid, at, "reconbot (auto-fix)", action, f"position #{fid}", key, ONE)

    verdict = judged([*base, liquidated, closing], [], [], fixes=[fix(1, 10.5, KEY), fix(2, 10.2, OTHER)])
    assert verdict.counts()["wrong_fix"] == 1 and "audit #2" in verdict.wrong_fix[0]
    assert "no ghost that outlives the 1.5s confirming read" in verdict.wrong_fix[0]
    open_position = judged(base, [], [], fixes=[fix(3, 5.0, KEY)])
    assert "was open on the exchange (1)" in open_position.wrong_fix[0]
    adopted = judged(base, [], [], fixes=[fix(4, 5.0, KEY, "adopt_orphan")])
    assert "no operator pressed a button" in adopted.wrong_fix[0]


def test_a_drift_fixed_without_a_word_is_lost():
    base = [Change(0.0, KEY, ONE, ONE, False, "baseline"), Change(10.0, KEY, Decimal(0), Decimal(0), False, "gone")]
    silent = AuditFix(1, 10.4, "reconbot (auto-fix)", "close_ghost", "position #1", KEY, ONE)
    verdict = judged(base, [finding(1, "ghost", KEY, 10.3)], [], fixes=[silent])
    assert verdict.counts() == {"lost": 1, "duplicate": 0, "false": 0, "wrong_fix": 0}
    assert "fixed by reconbot without an alert" in verdict.lost[0]


def test_hostile_frames_are_whatever_the_emulator_offers_beyond_the_connection_faults():
    offered = {
        "stream_faults": {
            "binance": ["drop", "reset", "stall", "malformed", "expire", "refuse_listen_key", "huge_amount"],
            "bybit": ["drop", "unavailable", "refuse_auth"],
        }
    }
    assert hostile_frame_faults(offered, "binance") == ("malformed", "huge_amount")
    assert hostile_frame_faults(offered, "bybit") == ()
    assert hostile_frame_faults({}, "binance") == ()


async def test_the_chat_is_read_as_first_sent():
    chat = 777
    async with BotApiEmulator(token="1:T") as telegram, aiohttp.ClientSession() as http:

        async def send(text: str, markup: dict | None = None) -> int:
            body = {"chat_id": chat, "text": text, **({"reply_markup": markup} if markup else {})}
            async with http.post(f"{telegram.base_url}/bot1:T/sendMessage", json=body) as response:
                return (await response.json())["result"]["message_id"]

        def show(fid: int) -> dict:
            return {"text": str(fid), "callback_data": FindingAction(action=FindingButton.SHOW, finding_id=fid).pack()}

        alert = await send("🔴 Orphan position\nSYN0001USDT LONG\nDetected: 2026-12-02 09:37 UTC · finding #7")
        async with http.post(
            f"{telegram.base_url}/bot1:T/editMessageText",
            json={"chat_id": chat, "message_id": alert, "text": "✅ Resolved: drift no longer seen"},
        ) as response:
            assert response.status == 200
        digest = {"inline_keyboard": [[show(8), show(9)], [{"text": "all", "callback_data": "d:1:a"}]]}
        await send("🔴 3 new findings", digest)
        await send("⏰ Still open: 2")
        await send("bybit-001: live stream down since 14:05")
        transcript = read_transcript(telegram.messages(chat), wall_offset=1000.0)
    assert [(a.finding_id, a.via) for a in transcript.announcements] == [(7, "alert"), (8, "digest"), (9, "digest")]
    assert transcript.messages == {"alert": 1, "digest": 1, "reminder": 1, "notice or other": 1}
    assert all(a.at > 1000 for a in transcript.announcements)


def test_time_to_phone_is_also_told_for_drift_that_no_fault_stood_in_the_way_of():
    changes = [Change(20.0, OTHER, TWO, Decimal(0), True, "an orphan")]
    told = [Announcement(2, 24.5, 2, "alert")]
    filed = Filed({2: finding(2, "orphan", OTHER, 24.0)}, [], Counter(), undelivered=0)

    def clear(faulted: list[Window]) -> list[float]:
        found = drifts(changes, 100, TIMING)
        transcript = Transcript(announcements=told)
        verdict = judge(found, changes, [], VENUES, filed, transcript, TIMING, 0.0, 100.0, 8, faulted=faulted)
        assert verdict.phone_s["orphan"] == [pytest.approx(4.5)]
        return verdict.phone_clear_s

    assert clear([]) == [pytest.approx(4.5)]
    assert clear([Window(Scope.ACCOUNT, KEY.account, 21, 22, "timeout")]) == [pytest.approx(4.5)]  # another account
    assert clear([Window(Scope.VENUE, "binance", 21, 22, "ban")]) == [pytest.approx(4.5)]  # another venue
    assert clear([Window(Scope.ALL, "", 30, 40, "pg")]) == [pytest.approx(4.5)]  # after the message
    assert clear([Window(Scope.ACCOUNT, OTHER.account, 21, 22, "timeout")]) == []
    assert clear([Window(Scope.ALL, "", 10, 21, "telegram down")]) == []


def test_a_drift_back_before_reconbot_saw_it_end_is_still_the_finding_on_screen():
    changes = [
        Change(0.0, KEY, TWO, TWO, False, "baseline"),
        Change(10.0, KEY, ONE, Decimal(0), True, "part closed"),
        Change(20.0, KEY, TWO, Decimal(0), True, "brought back"),  # 5 s of no drift, then another mismatch
        Change(25.0, KEY, None, Decimal(3), True, "the bot resizes its row"),
    ]
    told = [Announcement(5, 14.5, 1, "alert")]

    def verdict(closed_at: float | None):  # type: ignore[no-untyped-def]
        seen = FiledFinding(5, "quantity_mismatch", KEY, 14.0, "open" if closed_at is None else "resolved", closed_at)
        filed = Filed({5: seen}, [], Counter(), undelivered=0)
        found = drifts(changes, 100, TIMING)
        return judge(found, changes, [], VENUES, filed, Transcript(announcements=told), TIMING, 0.0, 100.0, 8)

    kept_open = verdict(None)
    assert kept_open.counts() == {"lost": 0, "duplicate": 0, "false": 0, "wrong_fix": 0} and kept_open.stale == []
    resolved_between = verdict(22.0)  # reconbot saw it end: the second mismatch needed an alert of its own
    assert resolved_between.counts()["lost"] == 1 and "the bot resizes its row" in resolved_between.lost[0]
    stale = judge(
        drifts(changes[:3], 100, TIMING), changes[:3], [], VENUES,
        Filed({5: FiledFinding(5, "quantity_mismatch", KEY, 14.0, "open")}, [], Counter(), 0),
        Transcript(announcements=told), TIMING, 0.0, 100.0, 8,
    )  # fmt: skip
    assert stale.stale == [f"finding #5 quantity_mismatch {KEY} (open)"]  # the drift ended at 20 s, the alert did not


def test_a_drift_whose_planned_end_the_soak_gave_up_lasts():
    ledger = ledger_with((0.0, KEY, ONE, ONE, False))
    planned = ledger.record(10.0, KEY, exchange=Decimal(0), young=False, what="liquidated", planned_s=0.3)
    assert ledger.last(KEY) is planned and ledger.last(OTHER) is None
    fix = Change(10.4, KEY, None, -ONE, False, "close_ghost", Writer.RECONBOT)
    [cut_short] = drifts([*ledger.changes, fix], end=60, timing=TIMING)
    assert not cut_short.real  # the bot was to close the row 0.3 s later: no drift
    ledger.abandon(planned)  # ... but the soak stopped before it did
    [lasting] = drifts([*ledger.changes, fix], end=60, timing=TIMING)
    assert lasting.real and lasting.planned_s is None
