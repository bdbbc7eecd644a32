"""Assembles the services from settings and closes them in reverse order, for every entry point alike."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from types import TracebackType

import ccxt.async_support as ccxt

from services import migrations
from services.confirmations import ConfirmationStore
from services.database import Database, DatabaseError
from services.findings import FindingsStore
from services.fixes import FixService
from services.monitor import Clock, Monitor, utc_now
from services.mutes import ChatMutes
from services.outbox import Channel, Destination, Outbox
from services.positions import PositionsStore, open_store
from services.settings import Settings
from services.venues import Gateway, gateway_for
from services.venues.shared import SharedEndpoints


def alert_destinations(settings: Settings) -> list[Destination]:
    """Every place alerts go: each Telegram alert chat (when a bot is configured) and each e-mail recipient."""
    destinations: list[Destination] = []
    if settings.telegram.enabled:
        destinations += [Destination(Channel.TELEGRAM, address) for address in settings.telegram.alert_chat_ids]
    if settings.alerts.email is not None:
        destinations += [Destination(Channel.EMAIL, address) for address in settings.alerts.email.recipients]
    return destinations


def check_account_column(settings: Settings, store: PositionsStore) -> None:
    """Rows can be told apart by exchange alone unless two accounts share one; then an account column is needed."""
    if store.has_account_column:
        return
    by_venue: dict[str, list[str]] = {}
    for account in settings.accounts:
        by_venue.setdefault(account.db_exchange or "", []).append(account.name)
    shared = {venue: names for venue, names in by_venue.items() if len(names) > 1}
    if shared:
        venue, names = next(iter(shared.items()))
        configured = settings.positions.columns.account
        lacking = f"has no column {configured}" if configured else "has no account column mapped"
        raise DatabaseError(
            f"accounts {', '.join(names)} share db_exchange {venue!r} but positions table {settings.positions.table} "
            f"{lacking}, so their rows cannot be told apart; map positions.columns.account"
        )


class Runtime:
    """The database, one gateway per account, the monitor and the fix service."""

    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str | None = None,
        clients: Mapping[str, ccxt.Exchange] | None = None,
        clock: Clock = utc_now,
        require_schema: bool = True,
    ):
        self.settings = settings
        self.database = Database(settings, dsn=dsn)
        self._clients = clients or {}
        self._clock = clock
        self._require_schema = require_schema
        self.gateways: dict[str, Gateway] = {}
        self.endpoints: SharedEndpoints | None = None
        self._repository: PositionsStore | None = None
        self._monitor: Monitor | None = None
        self._fixes: FixService | None = None

    @property
    def repository(self) -> PositionsStore:
        assert self._repository is not None, "runtime not started"
        return self._repository

    @property
    def monitor(self) -> Monitor:
        assert self._monitor is not None, "runtime not started"
        return self._monitor

    @property
    def fixes(self) -> FixService:
        assert self._fixes is not None, "runtime not started"
        return self._fixes

    async def start(self) -> Runtime:
        await self.database.start()
        try:
            if self._require_schema:
                await self.check_schema()
            self._repository = await open_store(self.settings, self.database.pool)
            await self._repository.inspect()
            check_account_column(self.settings, self._repository)
        except BaseException:
            if self._repository is not None:
                await self._repository.close()
            await self.database.close()
            raise
        self.endpoints = SharedEndpoints(self.settings.venues.budgets())
        self.gateways = {
            account.name: gateway_for(account, self._clients.get(account.name), self.endpoints.markets)
            for account in self.settings.accounts
        }
        for gateway in self.gateways.values():
            self.endpoints.attach(gateway)
        self._monitor = Monitor(self.settings.scan, self.gateways, self._repository, clock=self._clock)
        self.findings = FindingsStore(self.database.pool)
        self.destinations = alert_destinations(self.settings)
        self._fixes = FixService(self._monitor, self._repository, self.findings, self.destinations)
        self.outbox = Outbox(self.database.pool, self.database.connect)
        self.mutes = ChatMutes(self.database.pool)
        self.confirmations = ConfirmationStore(
            self.database.pool, timedelta(seconds=self.settings.telegram.confirm_ttl_s), self.database.connect
        )
        return self

    async def check_schema(self) -> None:
        async with self.database.pool.acquire() as conn:
            version = await migrations.current_version(conn)
        if version < migrations.LATEST_VERSION:
            raise DatabaseError(
                f"reconbot's tables are at version {version}, this release needs {migrations.LATEST_VERSION}: "
                "run `python main.py migrate`"
            )

    async def close(self) -> None:
        await asyncio.gather(*(gateway.close() for gateway in self.gateways.values()), return_exceptions=True)
        if self.endpoints is not None:
            await self.endpoints.close()
        if self._repository is not None:
            await self._repository.close()
        await self.database.close()

    async def __aenter__(self) -> Runtime:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
