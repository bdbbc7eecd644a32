"""Replicas sharing the accounts through PostgreSQL advisory locks: shards split fairly, a replica that leaves
(gracefully or by ``kill -9``) has its shards taken over at the next claim round, and no alert is sent twice or
lost. The claim rounds against real PostgreSQL; the replicas as real ``main.py run`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from decimal import Decimal

import aiohttp
import asyncpg
import pytest
import yaml

from app.telegram import POLLING_LOCK
from services.leases import Fence, LeaseLost
from services.outbox import CLAIM_S, Outbox
from services.shards import ShardClaims, shard_of
from tests.chatops import ALERT_CHAT, OPERATOR, running_chatops, telegram_settings
from tests.conftest import TELEGRAM_TOKEN
from tests.helpers import delivery_replica, lock_holders, prepare_database, queue_rows, until
from tests.test_service import DatabaseProxy, fast, read_until, run_config, start_run

ACCOUNTS = [f"acct-{i}" for i in range(12)]


_replica_numbers = iter(range(1, 1_000_000))


def claims_for(database_url: str, shards: int = 8, on_change=None) -> ShardClaims:
    async def connect():
        return await asyncpg.connect(database_url)

    claims = ShardClaims(connect, None, ACCOUNTS, shards, claim_interval_s=3600, on_change=on_change)
    claims.name = f"reconbot test:{next(_replica_numbers)}"  # two replicas in one process
    return claims


async def test_shards_split_fairly_and_a_dead_replicas_shards_are_taken_over(database_url):
    changes: list[tuple[set[str], set[str]]] = []
    first = claims_for(database_url)
    second = claims_for(database_url, on_change=lambda gained, lost: changes.append((gained, lost)))
    try:
        await first.claim()
        assert (len(first.held), first.replicas) == (8, 1), "alone, a replica holds every shard"
        assert first.owned() == ACCOUNTS
        await second.claim()
        assert (second.held, second.replicas) == (set(), 2), "the newcomer finds every shard taken"
        await first.claim()  # sees two replicas: gives half back
        await second.claim()  # and the newcomer takes it
        assert (len(first.held), len(second.held)) == (4, 4)
        assert first.held.isdisjoint(second.held)
        assert sorted(first.owned() + second.owned()) == sorted(ACCOUNTS), "every account, exactly once"
        assert all(second.owns(name) == (shard_of(name, 8) in second.held) for name in ACCOUNTS)

        before = set(second.owned())
        dead_pid = first._conn.get_server_pid()
        first._conn.terminate()  # kill -9: the locks die with the connection, nothing is released
        first._conn = None
        await until_backend_gone(database_url, dead_pid)  # the server notices the closed socket on its own time
        changes.clear()
        await second.claim()
        assert (len(second.held), second.replicas) == (8, 1)
        [(gained, lost)] = changes
        assert gained == set(ACCOUNTS) - before and lost == set()
    finally:
        await first.stop()
        await second.stop()


async def until_backend_gone(database_url: str, pid: int, within_s: float = 10.0) -> None:
    """Wait until the server has ended a session whose client vanished (its locks go with it)."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(int(within_s / 0.05)):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"backend {pid} still alive after {within_s}s")
    finally:
        await conn.close()


async def test_a_replica_that_stops_gives_its_shards_back_at_once(database_url):
    first, second = claims_for(database_url, shards=4), claims_for(database_url, shards=4)
    try:
        await first.claim()
        await second.claim()
        await first.claim()
        await second.claim()
        assert len(first.held) == len(second.held) == 2
        status = await second.status()
        assert sorted(len(h.shards) for h in status.holders) == [2, 2]
        assert {h.replica for h in status.holders} == {first.name, second.name}
        await first.stop()
        await second.claim()
        assert len(second.held) == 4
    finally:
        await first.stop()
        await second.stop()


async def test_a_claim_round_that_loses_the_database_holds_nothing(database_url):
    claims = claims_for(database_url, shards=2)
    try:
        await claims.claim()
        assert claims.owned() == ACCOUNTS

        async def refused():
            raise OSError("connection refused")

        claims._conn.terminate()
        claims.connect = refused
        gained, lost = await claims.claim()
        assert (claims.held, claims.owned(), gained, lost) == (set(), [], set(), set(ACCOUNTS))
    finally:
        await claims.stop()


# -- real processes ---------------------------------------------------------------------------------------------


def replica_config(tmp_path, name, database_url, accounts, telegram):
    path = run_config(tmp_path, database_url, accounts, telegram, orphan_interval_s=1, reconcile_interval_s=1)
    config = yaml.safe_load(path.read_text())
    config["scale"] = {"shards": 4, "claim_interval_s": 0.5}
    config["alerts"]["console"] = False
    config["alerts"]["digest_after"] = 100  # one alert per orphan even when one replica holds every account
    target = tmp_path / f"{name}.yaml"
    target.write_text(yaml.safe_dump(config))
    return target


async def ops_port(process) -> tuple[int, list[str]]:
    lines = await read_until(process, "ops: GET /healthz")
    return int(re.search(r":(\d+)\s*$", lines[-1]).group(1)), lines


async def shards_of(http, port) -> dict:
    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
        return (await response.json()).get("shards", {})


def drain(process) -> asyncio.Task[None]:
    """Keep reading a replica's output, so a full pipe never blocks it."""

    async def read() -> None:
        while await process.stdout.readline():
            pass

    return asyncio.create_task(read())


async def test_two_replicas_share_the_accounts_and_survive_a_kill(tmp_path, database_url, new_account, telegram):
    accounts = [new_account("bybit") for _ in range(6)]
    await prepare_database(database_url)
    a = await start_run(replica_config(tmp_path, "a", database_url, accounts, telegram))
    b = None
    try:
        port_a, _ = await ops_port(a)
        await read_until(a, "reconbot running")
        drains = [drain(a)]
        b = await start_run(replica_config(tmp_path, "b", database_url, accounts, telegram))
        port_b, _ = await ops_port(b)
        await read_until(b, "reconbot running")
        drains.append(drain(b))
        async with aiohttp.ClientSession() as http:

            async def split() -> bool:
                held_a, held_b = (
                    (await shards_of(http, port_a)).get("held"),
                    (await shards_of(http, port_b)).get("held"),
                )
                return bool(held_a) and bool(held_b) and sorted(held_a + held_b) == [0, 1, 2, 3]

            await until(split, timeout=20)
            # each account is read by one replica: an orphan on each is announced exactly once
            for account in accounts:
                account.set_position("AVLUSDT", "long", Decimal("86"))
            await until(lambda: sum("Orphan position" in m.text for m in telegram.messages(ALERT_CHAT)) >= 6, 30)
            await asyncio.sleep(2.5)  # more rounds on both replicas
            orphans = [m.text for m in telegram.messages(ALERT_CHAT) if "Orphan position" in m.text]
            assert len(orphans) == 6, orphans
            assert all(sum(acc.name in text for text in orphans) == 1 for acc in accounts)

            a.send_signal(signal.SIGKILL)
            await a.wait()

            async def all_on_b() -> bool:
                return (await shards_of(http, port_b)).get("held") == [0, 1, 2, 3]

            await until(all_on_b, timeout=10)  # within claim_interval_s (and a round)
            for account in accounts:
                account.set_position("SOLUSDT", "short", Decimal("3"))
            await until(lambda: sum("SOLUSDT" in m.text for m in telegram.messages(ALERT_CHAT)) >= 6, 30)
            await asyncio.sleep(2.5)
            assert sum("SOLUSDT" in m.text for m in telegram.messages(ALERT_CHAT)) == 6, "none lost, none doubled"
    finally:
        for process in (a, b):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 30)
                if process.returncode is None:
                    process.kill()


# -- fencing: a replica that lost its database session stops acting ------------------------------------------


async def terminate_sessions(database_url: str, where: str, *args) -> int:
    """pg_terminate_backend on the sessions that match ``where`` (over pg_stat_activity); how many."""
    conn = await asyncpg.connect(database_url)
    try:
        return len(await conn.fetch(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}", *args))
    finally:
        await conn.close()


async def test_a_deliverer_that_loses_its_sessions_stops_and_no_row_is_sent_twice(db, monkeypatch):
    """Every session of the delivering replica is terminated while rows are in flight; its pool reconnects,
    but the replica stops delivering, the waiting one takes over, and every row is sent exactly once."""
    monkeypatch.setattr("services.delivery.IDLE_WAIT_S", 0.2)  # the waiting replica tries the lock often
    sends: list[int] = []
    async with delivery_replica(db, "replica-a", sends) as a:
        await until(lambda: lock_holders(db, a.lock_key))
        async with delivery_replica(db, "replica-b", sends) as b:
            destinations = [f"desk-{i}" for i in range(3)]
            first = await queue_rows(db, a.channel, destinations, 4)
            a.wake()
            await until(lambda: len(sends) >= 6)
            assert await terminate_sessions(db, "application_name = 'replica-a'") >= 1
            for _ in range(8):  # alerts keep coming, and both replicas are told (each one's own checks)
                await queue_rows(db, a.channel, destinations, 1)
                a.wake()
                b.wake()
                await asyncio.sleep(0.25)
            queued = await queue_rows(db, a.channel, destinations, 0)
            assert len(queued) == 36 and set(first) < set(queued)
            await until(lambda: len(set(sends)) == len(queued), timeout=20)
            await asyncio.sleep(1)
            assert sorted(sends) == sorted(queued), "every row sent, none twice"
            assert [name for _pid, name in await lock_holders(db, b.lock_key)] == ["replica-b"]
            conn = await asyncpg.connect(db)
            try:
                assert await conn.fetchval("SELECT count(*) FROM reconbot.outbox WHERE sent_at IS NULL") == 0
            finally:
                await conn.close()


async def test_a_claim_fenced_by_a_stale_generation_claims_nothing(db):
    """The fencing token itself: a deliverer whose generation is no longer the role's claims no row, and its
    record of a send cannot touch a row another generation claimed."""
    [first, second] = await queue_rows(db, "recording", ["desk"], 2)
    pool = await asyncpg.create_pool(db, min_size=1, max_size=2)
    try:
        outbox = Outbox(pool)
        role = "outbox-recording"
        await pool.execute("INSERT INTO reconbot.leases (role, holder, generation) VALUES ($1, 'replica-b', 8)", role)
        async with pool.acquire() as conn:
            with pytest.raises(LeaseLost):
                await outbox.claim_due(conn, "recording", Fence(role, 7))
            assert await pool.fetchval("SELECT count(claim_generation) FROM reconbot.outbox") == 0
            [claimed] = await outbox.claim_due(conn, "recording", Fence(role, 8))
            assert claimed.id == first
            assert await outbox.claim_due(conn, "recording", Fence(role, 8)) == [], (
                "claimed, and the next waits behind it"
            )
            assert 25 < await outbox.next_due_in_s("recording") <= CLAIM_S
        assert not await outbox.mark_sent(first, 7)
        assert await outbox.mark_failed(first, "late", 7) is None
        assert await outbox.mark_sent(first, 8)
        rows = await pool.fetch("SELECT id, sent_at, attempts FROM reconbot.outbox ORDER BY id")
        assert [(r["id"], r["sent_at"] is not None, r["attempts"]) for r in rows] == [
            (first, True, 0),
            (second, False, 0),
        ]
    finally:
        await pool.close()


async def test_a_replica_whose_claim_session_is_terminated_holds_nothing_at_once(database_url):
    changes: list[tuple[set[str], set[str]]] = []
    claims = claims_for(database_url, shards=2, on_change=lambda gained, lost: changes.append((gained, lost)))
    try:
        await claims.start()  # claims now, then every hour: only the lost session may make it claim again
        assert claims.owned() == ACCOUNTS
        changes.clear()
        await terminate_sessions(database_url, "pid = $1", claims._conn.get_server_pid())
        await until(lambda: changes, timeout=2)
        assert changes[0] == (set(), set(ACCOUNTS)), "nothing held from the moment the session is gone"
        await until(lambda: len(changes) >= 2, timeout=5)
        assert changes[1] == (set(ACCOUNTS), set()), "and everything again once it holds the locks again"
        assert claims.owned() == ACCOUNTS
    finally:
        await claims.stop()


# -- fencing: Telegram polling ----------------------------------------------------------------------------------


def conflicts(telegram) -> int:
    """getUpdates answered 409: two pollers at once."""
    return sum(call.method == "getUpdates" and call.status == 409 for call in telegram.calls)


async def test_the_polling_replica_that_loses_its_session_stops_and_the_other_takes_over(
    database_url, new_account, telegram, monkeypatch
):
    monkeypatch.setattr("app.telegram.POLLING_STANDBY_S", 0.2)
    settings = telegram_settings(database_url, [new_account("bybit")], telegram, scan=fast(), alerts={"console": False})
    async with running_chatops(settings, telegram) as first, running_chatops(settings, telegram) as second:
        await until(lambda: first.chatops.polling)
        await asyncio.sleep(0.5)
        assert not second.chatops.polling, "one replica answers Telegram"
        [(holder, _name)] = await lock_holders(database_url, POLLING_LOCK)
        await terminate_sessions(database_url, "pid = $1", holder)
        await until(lambda: second.chatops.polling, timeout=10)
        await until(lambda: not first.chatops.polling, timeout=2)
        [reply] = await second.say(OPERATOR, "/help")
        assert reply.text
        storm = conflicts(telegram)
        await asyncio.sleep(3)
        assert conflicts(telegram) <= 1 and conflicts(telegram) == storm, "no 409 storm: only one replica polls"
        assert not first.chatops.polling


async def test_a_409_from_get_updates_stops_polling_on_that_replica(database_url, new_account, telegram, monkeypatch):
    monkeypatch.setattr("app.telegram.POLLING_STANDBY_S", 2.0)
    settings = telegram_settings(database_url, [new_account("bybit")], telegram, scan=fast(), alerts={"console": False})
    async with running_chatops(settings, telegram) as harness, aiohttp.ClientSession() as http:
        await until(lambda: harness.chatops.polling and telegram.active_polls == 1)
        # another bot with the same token polls: Telegram ends reconbot's long poll with a 409
        async with http.post(f"{telegram.base_url}/bot{TELEGRAM_TOKEN}/getUpdates", json={"timeout": 0}) as answer:
            assert answer.status == 200
        await until(lambda: conflicts(telegram) == 1, timeout=5)
        await until(lambda: not harness.chatops.polling, timeout=2)
        polls = sum(call.method == "getUpdates" for call in telegram.calls)
        await asyncio.sleep(1.0)
        assert sum(call.method == "getUpdates" for call in telegram.calls) == polls, "stopped, not retrying"
        await until(lambda: harness.chatops.polling, timeout=10)  # stood by, then took the lock again
        [reply] = await harness.say(OPERATOR, "/help")
        assert reply.text
        assert conflicts(telegram) == 1


async def test_a_polling_replica_cut_off_from_the_database_stops_polling(
    database_url, new_account, telegram, monkeypatch
):
    """No session ends, nothing is refused: the database just stops answering. The replica notices at its next
    check of the lock and stops answering Telegram; once the network is back it polls again."""
    monkeypatch.setattr("app.telegram.POLLING_CHECK_S", 0.5)
    monkeypatch.setattr("services.leases.SESSION_TIMEOUT_S", 1.0)
    proxy = DatabaseProxy(database_url)
    proxy.open = True
    await proxy.start()
    try:
        account = new_account("bybit")
        settings = telegram_settings(proxy.url, [account], telegram, scan=fast(), alerts={"console": False})
        async with running_chatops(settings, telegram) as harness:
            await until(lambda: harness.chatops.polling)
            proxy.frozen = True
            try:
                await until(lambda: not harness.chatops.polling, timeout=5)
                await until(lambda: telegram.active_polls == 0, timeout=2)
            finally:
                proxy.frozen = False
            await until(lambda: harness.chatops.polling, timeout=20)
            [reply] = await harness.say(OPERATOR, "/help")
            assert reply.text
    finally:
        await proxy.stop()
