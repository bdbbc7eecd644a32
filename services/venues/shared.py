"""What every account on one venue endpoint shares, so an account costs its own state and not a copy of the
venue's: the market list (``MarketCache``), one aiohttp session — one connection pool, one SSL context, a bounded
number of sockets — instead of one per ccxt client (ccxt takes a lent session through its ``session`` config and
then never closes it), and one per-IP request budget."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import certifi

from services.settings import VenueSettings
from services.venues.base import Gateway, MarketCache
from services.venues.budget import LIMITS, VenueBudget

CONNECTIONS_PER_ENDPOINT = 64  # sockets one venue endpoint may hold open at once, all accounts together


class SharedEndpoints:
    def __init__(self, budgets: Mapping[str, VenueSettings] | None = None):
        self.markets = MarketCache()
        self.venue_settings = dict(budgets or {})
        self.sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}
        self.budgets: dict[tuple[Any, ...], VenueBudget] = {}
        self.slots: dict[tuple[Any, ...], asyncio.Semaphore] = {}  # one per pooled socket
        self._ssl: ssl.SSLContext | None = None

    def attach(self, gateway: Gateway) -> None:
        """Give a gateway the endpoint's session and budget (a client lent by an embedding program keeps its
        own session, and shares the budget)."""
        key = MarketCache.key(gateway.account)
        venue = self.venue_settings.get(gateway.exchange_id)
        if venue is not None:
            budget = self.budgets.get(key)
            if budget is None:
                limit = LIMITS[gateway.exchange_id]
                if venue.limit is not None:
                    limit = replace(limit, capacity=venue.limit)
                budget = self.budgets[key] = VenueBudget(gateway.exchange_id, venue.budget, limit)
            gateway.budget = budget
            gateway.client.venue_budget = budget
        if gateway.owns_client:
            lend_session(gateway.client, self._session(key, CONNECTIONS_PER_ENDPOINT), self._ssl)
            gateway.slots = self.slots.setdefault(key, asyncio.Semaphore(CONNECTIONS_PER_ENDPOINT))
            gateway.client.venue_slots = gateway.slots
            # one long-lived socket per streaming account: a pool of its own without a limit
            gateway.stream_session = self._session((*key, "streams"), 0)

    def _session(self, key: tuple[Any, ...], limit: int) -> aiohttp.ClientSession:
        session = self.sessions.get(key)
        if session is None:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=limit, ttl_dns_cache=300, enable_cleanup_closed=True)
            session = self.sessions[key] = aiohttp.ClientSession(connector=connector)
        return session

    async def close(self) -> None:
        """After every client is closed: the sessions are reconbot's, not the clients'."""
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()


def lend_session(client: Any, session: aiohttp.ClientSession, ssl_context: ssl.SSLContext | None) -> None:
    """Make a ccxt client use ``session`` (and never close it)."""
    client.session = session
    client.own_session = False
    if ssl_context is not None:
        client.ssl_context = ssl_context
