"""A confirmed fix whose process died mid-fix (``kill -9``, a crash, an OOM kill) is settled by a re-read of both
sides: at the next start before the first check files anything, and by any live replica every
``scan.settle_interval_s``. It is audited ``interrupted`` with what the re-read found (``done`` / ``not done``),
its confirmation is closed, the confirmation message loses its buttons and says what happened, and its finding
is fixed with the truth or stays open. While a fix is unsettled its finding is never resolved as "drift no
longer seen". End to end: ``main.py run`` as a subprocess, real PostgreSQL, real ccxt against the loopback
venues, real aiogram against the loopback Bot API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import yaml

from emulator.telegram import BotApiEmulator, StoredMessage
from services.fixes import plan_for_finding
from services.model import RECONCILIATION, SCAN_KINDS, FindingKind
from services.plans import FixAction, FixPlan
from services.reconciler import Reconciler
from services.runtime import Runtime
from tests.chatops import ALERT_CHAT, OPERATOR, Harness, running_chatops, telegram_settings
from tests.helpers import fetch_audit, insert_positions, make_settings, prepare_database, running, until
from tests.helpers import position_row as row
from tests.test_service import run_config, start_run

ROOT = Path(__file__).resolve().parent.parent
RESOLVED_UNSEEN = "drift no longer seen"


# -- a `run` process we can kill -------------------------------------------------------------------------------


class RunProcess:
    """``python main.py run`` with its output collected in the background (a full pipe would stall it)."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path) -> RunProcess:
        return cls(await start_run(config))

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode())

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def kill_9(self) -> None:
        """What an OOM killer or a power cut does: no handler, no finally, no flush."""
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        await self._reader

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 40)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader
        return self.process.returncode


@contextlib.asynccontextmanager
async def run_process(config: Path) -> AsyncIterator[RunProcess]:
    run = await RunProcess.start(config)
    try:
        yield run
    finally:
        await run.stop()


def kill_config(tmp_path: Path, database_url: str, account, telegram: BotApiEmulator) -> Path:
    """``run``'s config for one account that allows exchange orders; checks at start only (no streams), so the
    tests decide when reads happen."""
    path = run_config(tmp_path, database_url, [account], telegram, orphan_interval_s=60, reconcile_interval_s=60)
    config = yaml.safe_load(path.read_text())
    config["accounts"][0]["allow_exchange_orders"] = True
    config["scan"]["streams"] = False
    path.write_text(yaml.safe_dump(config))
    return path


async def press(telegram: BotApiEmulator, message: StoredMessage, text: str) -> None:
    data = message.button(text=text)["callback_data"]
    query_id = telegram.user_presses(OPERATOR, message, data, username="op", check_button=False)
    await telegram.wait_for(
        lambda call: call.method == "answerCallbackQuery" and call.params.get("callback_query_id") == query_id,
        timeout=20,
    )


def first_message(telegram: BotApiEmulator, predicate) -> StoredMessage | None:
    return next((m for m in telegram.messages(ALERT_CHAT) if predicate(m)), None)


async def ask_close_on_exchange(telegram: BotApiEmulator) -> tuple[StoredMessage, StoredMessage]:
    """The orphan's alert, and the question its Close on exchange button asks."""
    alert = await until(lambda: first_message(telegram, lambda m: "Close on exchange" in m.button_texts), 40)
    await press(telegram, alert, "Close on exchange")
    question = await until(lambda: first_message(telegram, lambda m: m.text.startswith("Close ")), 20)
    assert question.button_texts == ["Confirm", "Cancel"]
    return alert, question


async def fetch(database_url: str, query: str, *args) -> list[dict]:
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


async def outbox_rows(database_url: str) -> list[dict]:
    rows = await fetch(database_url, "SELECT * FROM reconbot.outbox ORDER BY id")
    return [{**r, "body": json.loads(r["body"])} for r in rows]


async def interrupted_rows(database_url: str) -> list[dict]:
    return await fetch(database_url, "SELECT * FROM reconbot.audit_log WHERE outcome = 'interrupted' ORDER BY id")


def current(telegram: BotApiEmulator, message: StoredMessage) -> StoredMessage:
    return telegram.message(message.chat_id, message.message_id)


def every_text(message: StoredMessage) -> list[str]:
    return [version.text for version in message.history]


# -- kill -9 mid-fix, restarted at once ---------------------------------------------------------------------------


async def orphan_run(tmp_path: Path, database_url: str, new_account, telegram: BotApiEmulator):
    """An orphan ETHUSDT SHORT 1.5 on a Binance account that allows orders, and the config `run` watches it with."""
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "short", Decimal("1.5"))
    await prepare_database(database_url)
    return binance, kill_config(tmp_path, database_url, binance, telegram)


async def kill_9_mid_fix(
    config: Path, telegram: BotApiEmulator, hold: Callable[[], Callable[[], bool]]
) -> tuple[StoredMessage, StoredMessage]:
    """Press Close on exchange and Confirm in a `run` process, and kill it with -9 once the fix has reached the
    point ``hold`` set up (it injects the venue's fault and returns the test for "reached"). Returns the alert
    and the question."""
    first = await RunProcess.start(config)
    try:
        alert, question = await ask_close_on_exchange(telegram)
        reached = hold()
        await press(telegram, question, "Confirm")
        await until(reached, 20)
    finally:
        await first.kill_9()
    return alert, question


async def test_kill_9_after_the_order_executed_is_settled_done_at_the_next_start(
    tmp_path, database_url, new_account, telegram
):
    binance, config = await orphan_run(tmp_path, database_url, new_account, telegram)

    def order_filled_answer_held() -> Callable[[], bool]:
        binance.fail("late_answer", endpoint="orders", times=1)  # the venue fills the order; its answer is slow
        return lambda: binance.positions == {}

    alert, question = await kill_9_mid_fix(config, telegram, order_filled_answer_held)
    killed_at = time.monotonic()
    [confirmation] = await fetch(database_url, "SELECT * FROM reconbot.confirmations")
    assert confirmation["outcome"] == "confirmed"
    assert await interrupted_rows(database_url) == [], "the killed process wrote no outcome"

    async with run_process(config) as second:
        [entry] = await until(lambda: interrupted_rows(database_url), 30)
        settled_s = time.monotonic() - killed_at
        assert (entry["action"], entry["found"], entry["confirmation_id"]) == (
            "close_orphan",
            "done",
            confirmation["id"],
        )
        assert "stopped mid-fix" in entry["reason"] and "closed" in entry["reason"]
        [closed] = await fetch(database_url, "SELECT * FROM reconbot.confirmations")
        assert (closed["outcome"], closed["settled_at"] is not None) == ("interrupted", True)

        await until(lambda: not current(telegram, question).has_keyboard, 20)
        text = current(telegram, question).text
        assert "Interrupted" in text and "found it done" in text, text
        await until(lambda: "Fixed" in current(telegram, alert).text, 20)
        assert "by @op" in current(telegram, alert).text
        [finding] = await fetch(database_url, "SELECT state, closed_by, resolution FROM reconbot.findings")
        assert finding["state"] == "fixed" and "stopped mid-fix" in finding["resolution"]
        await asyncio.sleep(1.0)  # the first checks after start have run
        assert not any(RESOLVED_UNSEEN in t for t in every_text(current(telegram, alert)))
    assert second.process.returncode == 0, second.output
    assert "settled by a re-read" in second.output
    print(f"settled {settled_s:.1f} s after kill -9 (restart included)")


async def test_kill_9_before_the_order_left_is_settled_not_done_at_the_next_start(
    tmp_path, database_url, new_account, telegram
):
    binance, config = await orphan_run(tmp_path, database_url, new_account, telegram)

    def re_read_held() -> Callable[[], bool]:
        reads = binance.request_count("positions")
        binance.fail("timeout", endpoint="positions", times=1)  # the re-read before the order is held
        return lambda: binance.request_count("positions") > reads

    alert, question = await kill_9_mid_fix(config, telegram, re_read_held)

    async with run_process(config):
        [entry] = await until(lambda: interrupted_rows(database_url), 30)
        assert (entry["action"], entry["found"]) == ("close_orphan", "not done")
        assert "still open at 1.5" in entry["reason"]
        await until(lambda: not current(telegram, question).has_keyboard, 20)
        text = current(telegram, question).text
        assert "Interrupted" in text and "found it not done" in text and "ask again" in text, text
        [finding] = await fetch(database_url, "SELECT state FROM reconbot.findings")
        assert finding["state"] == "open"
        assert current(telegram, alert).has_keyboard, "still open, still fixable"
    assert binance.orders == []
    assert binance.positions[("ETHUSDT", "short")].size == Decimal("1.5")


async def asked_to_close(h: Harness, binance) -> tuple[StoredMessage, StoredMessage]:
    """In a running Telegram face: an orphan ETHUSDT SHORT 1.5, its alert, and its Close on exchange question."""
    binance.set_position("ETHUSDT", "short", Decimal("1.5"))
    await h.reconciler.check(SCAN_KINDS)
    [alert] = await h.wait_alerts(1)
    await h.press(OPERATOR, alert, "Close on exchange")
    return alert, await h.message_where(ALERT_CHAT, lambda m: m.text.startswith("Close "))


# -- a fix under way is never resolved as drift no longer seen ------------------------------------------------------


async def test_a_check_while_a_confirmed_close_is_under_way_does_not_resolve_its_finding(
    database_url, new_account, telegram
):
    """The order filled, its answer is still on its way, and a check sees the position gone: that is the fix
    working, not drift that went away by itself."""
    binance = new_account("binance")
    settings = telegram_settings(
        database_url, [binance], telegram, account={"allow_exchange_orders": True, "timeout_s": 5}
    )
    async with running_chatops(settings, telegram) as h:
        alert, question = await asked_to_close(h, binance)
        binance.fail("late_answer", endpoint="orders", times=1)
        await h.press(OPERATOR, question, "Confirm")
        await until(lambda: binance.positions == {}, 10)

        filed = await h.reconciler.check(SCAN_KINDS)  # while the order's answer is held
        assert filed.resolved == ()
        assert [f.id for f in await h.runtime.findings.live()] != []

        await h.edited_to(question, "Done")
        await h.edited_to(alert, "Fixed")
        assert not any(RESOLVED_UNSEEN in t for t in every_text(current(telegram, alert)))
        [finding] = await fetch(database_url, "SELECT state, closed_by FROM reconbot.findings")
        assert finding["state"] == "fixed"


# -- every kind of fix, settled in-process -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A finding of one kind, its fix, and what the stopped process had changed (``done``) or not."""

    kinds: frozenset[FindingKind]
    kind: FindingKind
    action: FixAction
    seen_done: str
    seen_not_done: str


CASES = {
    "close_orphan": Case(
        SCAN_KINDS,
        FindingKind.ORPHAN,
        FixAction.CLOSE_ORPHAN,
        "ETHUSDT LONG on {name} closed on the exchange",
        "ETHUSDT LONG on {name} still open at 2",
    ),
    "adopt_orphan": Case(
        SCAN_KINDS,
        FindingKind.ORPHAN,
        FixAction.ADOPT_ORPHAN,
        "ETHUSDT LONG on {name} tracked in the DB as position #",
        "ETHUSDT LONG on {name} still not in the DB",
    ),
    "close_ghost": Case(
        RECONCILIATION,
        FindingKind.GHOST,
        FixAction.CLOSE_GHOST,
        "position #1 ETHUSDT LONG on {name} closed in the DB",
        "position #1 ETHUSDT LONG on {name} still active in the DB",
    ),
    "set_db_quantity": Case(
        RECONCILIATION,
        FindingKind.QUANTITY_MISMATCH,
        FixAction.SET_DB_QUANTITY,
        "position #1 ETHUSDT LONG on {name} now of size 2",
        "position #1 ETHUSDT LONG on {name} still of size 3",
    ),
    "cancel_orders": Case(
        SCAN_KINDS,
        FindingKind.STRAY_ORDER,
        FixAction.CANCEL_ORDERS,
        "on ETHUSDT LONG on {name} no longer resting",
        "on ETHUSDT LONG on {name} still resting",
    ),
}


def arrange(name: str, binance, database_url: str):
    """The drift each case's finding is about."""
    if name in ("close_orphan", "adopt_orphan"):
        binance.set_position("ETHUSDT", "long", Decimal("2"))
        return None
    if name == "close_ghost":
        return insert_positions(database_url, [row(binance, "ETHUSDT", "long", "2")])
    if name == "set_db_quantity":
        binance.set_position("ETHUSDT", "long", Decimal("2"))
        return insert_positions(database_url, [row(binance, "ETHUSDT", "long", "3")])
    binance.place_protective_order("ETHUSDT", "sell", "stop_market", trigger_price=3000, quantity="2")
    return None


async def take_effect(name: str, runtime: Runtime, plan: FixPlan, binance, database_url: str) -> None:
    """What the stopped process had done when it died: the order sent, the row written, the order cancelled."""
    conn = await asyncpg.connect(database_url)
    try:
        if name == "close_orphan":
            snapshot = await runtime.fixes.read(plan.account)
            [position] = snapshot.exchange_positions
            await runtime.gateways[plan.account].close_position(position, "reconbot-before-the-kill")
        elif name == "adopt_orphan":
            await insert_positions(database_url, [row(binance, "ETHUSDT", "long", "2")])
        elif name == "close_ghost":
            await conn.execute("UPDATE positions SET status = 'closed' WHERE id = 1")
        elif name == "set_db_quantity":
            await conn.execute("UPDATE positions SET quantity = 2 WHERE id = 1")
        else:
            [order] = binance.protective_orders
            binance.cancel_protective_order(order.order_id)
    finally:
        await conn.close()


async def leave_unfinished(runtime: Runtime, plan: FixPlan, finding_id: int, message_id: int | None = None) -> int:
    """Confirm a fix the way the Confirm button does, then lose its process: the lease goes with its connection,
    the confirmation stays ``confirmed`` with no outcome."""
    store = runtime.confirmations
    asked = await store.create(
        plan=plan, question="Fix it?", user_id=OPERATOR, chat_id=ALERT_CHAT, finding_id=finding_id
    )
    claim = await store.claim(asked.id, OPERATOR, "confirmed", "@op (111)", message_id)
    assert claim.confirmation is not None and claim.lease is not None
    await claim.lease.release()  # no `settled`: the process is gone before it recorded anything
    return asked.id


@pytest.mark.parametrize("done", [True, False], ids=["done", "not_done"])
@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_kind_of_interrupted_fix_is_settled_by_what_a_re_read_finds(database_url, new_account, name, done):
    case = CASES[name]
    binance = new_account("binance")
    settings = make_settings(database_url, [binance], grace_s=0)
    settings = settings.model_copy(
        update={"accounts": [a.model_copy(update={"allow_exchange_orders": True}) for a in settings.accounts]}
    )
    await prepare_database(database_url)
    inserting = arrange(name, binance, database_url)
    if inserting is not None:
        await inserting
    async with Runtime(settings) as runtime:
        reconciler = Reconciler(runtime, runtime.destinations)
        filed = await reconciler.check(case.kinds)
        [finding] = [f for f in filed.new if f.kind is case.kind]
        plan = plan_for_finding(finding, case.action)
        assert plan is not None
        confirmation_id = await leave_unfinished(runtime, plan, finding.id, message_id=77)
        if done:
            await take_effect(name, runtime, plan, binance, database_url)

        await reconciler.check(case.kinds)  # the drift may be gone, but the fix on it is unsettled
        assert finding.id in [f.id for f in await runtime.findings.live()], "not resolved while unsettled"

        [settled] = await runtime.fixes.settle_interrupted(runtime.confirmations)
        assert (settled.confirmation_id, settled.found) == (confirmation_id, "done" if done else "not done")
        assert await runtime.fixes.settle_interrupted(runtime.confirmations) == [], "once"

        [entry] = [e for e in await fetch_audit(database_url) if e["outcome"] == "interrupted"]
        seen = (case.seen_done if done else case.seen_not_done).format(name=binance.name)
        assert entry["found"] == ("done" if done else "not done")
        assert seen in entry["reason"], entry["reason"]
        assert entry["reason"].startswith("reconbot stopped mid-fix (confirmed by @op (111)); a re-read found it ")
        assert (entry["actor"], entry["confirmation_id"]) == ("telegram @op (111)", confirmation_id)
        closed = await runtime.confirmations.get(confirmation_id)
        assert (closed.outcome, closed.settled_at is not None) == ("interrupted", True)

        after = await runtime.findings.get(finding.id)
        if done:
            assert (after.state, after.closed_by, after.resolution) == ("fixed", "@op (111)", entry["reason"])
        else:
            assert after.live
        [edit] = [r for r in await outbox_rows(database_url) if r["kind"] == "confirmation"]
        assert (edit["destination"], edit["body"]["message_id"], edit["body"]["found"]) == (
            str(ALERT_CHAT),
            77,
            "done" if done else "not done",
        )


async def orphan_confirmed(runtime: Runtime, binance, *, asked: int = 1) -> tuple[int, list[int]]:
    """An orphan found by a check and ``asked`` Close on exchange questions for it: (finding id, confirmation
    ids); the caller confirms them and decides whether their leases are lost."""
    [finding] = (await Reconciler(runtime, runtime.destinations).check(SCAN_KINDS)).new
    plan = plan_for_finding(finding, FixAction.CLOSE_ORPHAN)
    ids = []
    for _ in range(asked):
        question = await runtime.confirmations.create(
            plan=plan, question="Close?", user_id=OPERATOR, chat_id=ALERT_CHAT, finding_id=finding.id
        )
        ids.append(question.id)
    return finding.id, ids


async def test_a_fix_under_way_is_never_settled_under_its_process_and_two_replicas_settle_once(
    database_url, new_account
):
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("2"))
    settings = make_settings(database_url, [binance], grace_s=0)
    await prepare_database(database_url)
    async with Runtime(settings) as first, Runtime(settings) as second:
        _finding_id, [confirmation_id] = await orphan_confirmed(first, binance)
        claim = await first.confirmations.claim(confirmation_id, OPERATOR, "confirmed", "@op (111)")
        assert claim.lease is not None

        # the process applying it is alive: its lease is held, so no replica settles it
        assert await second.fixes.settle_interrupted(second.confirmations) == []
        assert await first.fixes.settle_interrupted(first.confirmations) == []
        assert [e for e in await fetch_audit(database_url) if e["outcome"] == "interrupted"] == []
        again = await second.confirmations.claim(confirmation_id, OPERATOR, "confirmed", "@op (111)")
        assert (again.confirmation, again.refused, again.lease) == (None, "used", None)

        await claim.lease.release()  # its process is gone
        both = await asyncio.gather(
            first.fixes.settle_interrupted(first.confirmations),
            second.fixes.settle_interrupted(second.confirmations),
        )
        assert sorted(len(settled) for settled in both) == [0, 1], "one replica settles it, the other skips"
        [entry] = await fetch_audit(database_url)
        assert (entry["outcome"], entry["found"]) == ("interrupted", "not done")


async def test_a_fix_that_finished_is_settled_by_its_own_process(database_url, new_account):
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("2"))
    settings = make_settings(database_url, [binance], grace_s=0)
    settings = settings.model_copy(
        update={"accounts": [a.model_copy(update={"allow_exchange_orders": True}) for a in settings.accounts]}
    )
    await prepare_database(database_url)
    async with Runtime(settings) as runtime:
        finding_id, [confirmation_id] = await orphan_confirmed(runtime, binance)
        claim = await runtime.confirmations.claim(confirmation_id, OPERATOR, "confirmed", "@op (111)")
        confirmation = claim.confirmation
        outcome = await runtime.fixes.apply(
            confirmation.plan,
            "telegram @op (111)",
            finding_id=finding_id,
            confirmation_id=confirmation_id,
            shown_as="@op (111)",
            lease=claim.lease,
        )
        assert outcome.done
        settled = await runtime.confirmations.get(confirmation_id)
        assert (settled.outcome, settled.settled_at is not None) == ("confirmed", True)
        assert await runtime.fixes.settle_interrupted(runtime.confirmations) == []
        assert [e["outcome"] for e in await fetch_audit(database_url)] == ["done"]


async def test_an_unreadable_account_is_settled_by_a_later_round(database_url, new_account):
    """At start the venue does not answer: nothing is guessed, the finding stays live, and the periodic round
    settles the fix once the venue answers again."""
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("2"))
    settings = make_settings(database_url, [binance], grace_s=0, settle_interval_s=1, orphan_interval_s=3600)
    await prepare_database(database_url)
    async with Runtime(settings) as runtime:
        finding_id, [confirmation_id] = await orphan_confirmed(runtime, binance)
        claim = await runtime.confirmations.claim(confirmation_id, OPERATOR, "confirmed", "@op (111)")
        await claim.lease.release()
    binance.set_position("ETHUSDT", "long", Decimal("0.5"))  # the order half filled before the process died
    binance.fail("http_500", endpoint="positions")
    lines: list[str] = []
    async with running(settings, lines) as service:
        assert any(
            f"confirmed fix #{confirmation_id} (close_orphan)" in line and "cannot be re-read now" in line
            for line in lines
        ), lines
        assert await fetch_audit(database_url) == []
        assert (await service.runtime.findings.get(finding_id)).live
        binance.clear_faults()
        [entry] = await until(lambda: fetch_audit(database_url), timeout=10)
        assert (entry["outcome"], entry["found"]) == ("interrupted", "done")
        assert "reduced to 0.5 on the exchange" in entry["reason"]
        assert (await service.runtime.findings.get(finding_id)).state == "fixed"


async def test_a_fix_that_cannot_be_re_read_is_settled_with_a_word_to_check_by_hand(database_url, new_account):
    """A plan that no longer parses, or an account no longer configured: nothing can ever be re-read, so the
    confirmation is closed as interrupted without a finding, and nothing about the finding is guessed."""
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("2"))
    settings = make_settings(database_url, [binance], grace_s=0)
    await prepare_database(database_url)
    async with Runtime(settings) as runtime:
        finding_id, [damaged, elsewhere] = await orphan_confirmed(runtime, binance, asked=2)
        for confirmation_id in (damaged, elsewhere):
            claim = await runtime.confirmations.claim(confirmation_id, OPERATOR, "confirmed", "@op (111)")
            await claim.lease.release()
        pool = runtime.database.pool
        await pool.execute("UPDATE reconbot.confirmations SET payload = '{\"x\": 1}' WHERE id = $1", damaged)
        await pool.execute(
            "UPDATE reconbot.confirmations SET payload = jsonb_set(payload, '{account}', '\"gone-account\"') "
            "WHERE id = $1",
            elsewhere,
        )
        settled = await runtime.fixes.settle_interrupted(runtime.confirmations)
        assert [(s.confirmation_id, s.found) for s in settled] == [(damaged, None), (elsewhere, None)]
        reasons = [e["reason"] for e in await fetch_audit(database_url)]
        assert reasons == [
            "reconbot stopped mid-fix (confirmed by @op (111)) and it cannot be re-read (the confirmation holds no "
            f"readable plan): check ETHUSDT LONG on {binance.name} by hand",
            "reconbot stopped mid-fix (confirmed by @op (111)) and it cannot be re-read (gone-account is not a "
            "configured account): check ETHUSDT LONG on gone-account by hand",
        ]
        assert (await runtime.findings.get(finding_id)).live


async def test_a_fix_abandoned_at_a_graceful_stop_is_completed_by_the_re_read(database_url, new_account, telegram):
    """A graceful stop that had to give up on a fix audits it ``interrupted`` without knowing what happened;
    the next settlement fills in what the re-read found on that same row and edits the question."""
    binance = new_account("binance")
    settings = telegram_settings(database_url, [binance], telegram, account={"allow_exchange_orders": True})
    async with running_chatops(settings, telegram) as h:
        _alert, question = await asked_to_close(h, binance)
        binance.fail("timeout", endpoint="positions", times=1)  # the re-read before the order hangs
        await h.press(OPERATOR, question, "Confirm")
        await asyncio.sleep(0.3)
        assert not await h.runtime.fixes.drain(0.1)  # what a stop does with a fix that outlives its patience
        [entry] = await fetch_audit(database_url)
        assert (entry["outcome"], entry["found"]) == ("interrupted", None)

        [settled] = await h.runtime.fixes.settle_interrupted(h.runtime.confirmations)
        assert settled.found == "not done"
        [completed] = await fetch_audit(database_url)
        assert (completed["id"], completed["found"]) == (entry["id"], "not done")
        assert "still open at 1.5" in completed["reason"]
        h.chatops.delivery.wake()
        edited = await h.edited_to(question, "Interrupted")
        assert not edited.has_keyboard and "found it not done" in edited.text
