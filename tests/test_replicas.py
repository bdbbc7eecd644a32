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
import yaml

from services.shards import ShardClaims, shard_of
from tests.chatops import ALERT_CHAT
from tests.helpers import prepare_database, until
from tests.test_service import read_until, run_config, start_run

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
        first._conn.terminate()  # kill -9: the locks die with the connection, nothing is released
        first._conn = None
        changes.clear()
        await second.claim()
        assert (len(second.held), second.replicas) == (8, 1)
        [(gained, lost)] = changes
        assert gained == set(ACCOUNTS) - before and lost == set()
    finally:
        await first.stop()
        await second.stop()


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
