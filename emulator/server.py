"""The emulator's HTTP server: accounts under path prefixes, and one request pipeline for every venue.

Pipeline of a venue request: record it with its IP weight (refusing it when the venue's per-IP limit is
enforced and exceeded), apply the account's faults, authenticate, run the venue's handler, apply the
account's tampering, print the answer in the venue's JSON and add the venue's usage headers. Venue modules
only supply the venue-specific steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from emulator.state.account import EmulatedAccount
from emulator.state.limits import IpLimiter
from emulator.state.markets import MarketSpec, make_market
from emulator.state.records import RecordedRequest
from emulator.streams import StreamHub
from emulator.venues import VENUE_APIS, Route, VenueApi, VenueError

VENUES = tuple(VENUE_APIS)
CONTROL_PREFIX = "_emulator"
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ExchangeEmulator:
    """HTTP server emulating the venues in :data:`emulator.venues.VENUE_APIS` for any number of accounts.

    ``ip_limits=True`` enforces every venue's documented per-IP limit from the start (see
    :meth:`set_ip_limit`); by default requests are only weighed.
    """

    def __init__(self, timeout_delay_s: float = 30.0, *, ip_limits: bool = False) -> None:
        self.timeout_delay_s = float(timeout_delay_s)
        self._accounts: dict[str, EmulatedAccount] = {}
        self._apis: dict[str, VenueApi] = {name: api(self) for name, api in VENUE_APIS.items()}
        self._aliases = {alias: name for name, api in self._apis.items() for alias in api.aliases}
        self._markets: dict[str, dict[str, MarketSpec]] = {venue: {} for venue in VENUES}
        self._market_versions: dict[str, int] = dict.fromkeys(VENUES, 0)
        self._synthetic_counts: dict[str, int] = dict.fromkeys(VENUES, 0)
        self._limiters = {name: IpLimiter(api.ip_window_s) for name, api in self._apis.items()}
        for venue, api in self._apis.items():
            for market_id, spec in api.catalogue:
                self.add_market(venue, market_id, **spec)
            if ip_limits:
                self.set_ip_limit(venue, api.ip_limit[0])
        self.streams = StreamHub(self)  # private WebSocket streams (emulator/streams)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closing = asyncio.Event()

    # venues and markets ------------------------------------------------------------------------------------

    def venue(self, venue: str) -> str:
        """The canonical venue name of ``venue`` or one of its aliases (e.g. "binanceusdm" -> "binance")."""
        try:
            return self._aliases[venue]
        except KeyError:
            raise ValueError(f"unknown venue {venue!r}; use one of {', '.join(VENUES)}") from None

    def venue_api(self, venue: str) -> VenueApi:
        return self._apis[self.venue(venue)]

    def markets_of(self, venue: str) -> dict[str, MarketSpec]:
        """The live market table of a venue (venue modules read it; do not modify)."""
        return self._markets[venue]

    def market_version(self, venue: str) -> int:
        return self._market_versions[venue]

    def add_market(self, venue: str, market_id: str, **spec: Any) -> MarketSpec:
        """Add (or replace) a market; fields default from the id (``XYZUSDT`` -> linear USDT perpetual)."""
        venue = self.venue(venue)
        if not market_id or not re.fullmatch(r"[A-Z0-9][A-Z0-9_-]*", market_id):
            raise ValueError(f"invalid market id {market_id!r}")
        market = make_market(venue, market_id, spec)
        self._markets[venue][market_id] = market
        self._market_versions[venue] += 1
        return market

    def add_synthetic_markets(self, venue: str, count: int) -> list[str]:
        """Add ``count`` linear USDT perpetuals ``SYN0001USDT``, ``SYN0002USDT``, ...; returns their ids."""
        venue = self.venue(venue)
        if count < 0:
            raise ValueError("count must not be negative")
        ids = []
        start = self._synthetic_counts[venue]
        for number in range(start + 1, start + count + 1):
            market_id = f"SYN{number:04d}USDT"
            self.add_market(
                venue,
                market_id,
                price=Decimal(10) + Decimal(number) / 100,
                tick_size=Decimal("0.001"),
                step_size=Decimal("0.1"),
                min_qty=Decimal("0.1"),
                max_qty=Decimal(1000000),
                market_max_qty=Decimal(100000),
                min_notional=Decimal(5),
                max_leverage=50,
            )
            ids.append(market_id)
        self._synthetic_counts[venue] = start + count
        return ids

    def market(self, venue: str, market_id: str) -> MarketSpec:
        venue = self.venue(venue)
        try:
            return self._markets[venue][market_id]
        except KeyError:
            raise ValueError(f"{venue} has no market {market_id!r}") from None

    def markets(self, venue: str) -> dict[str, MarketSpec]:
        return dict(self._markets[self.venue(venue)])

    # accounts ----------------------------------------------------------------------------------------------

    def add_account(
        self, name: str, *, venue: str, api_key: str, secret: str, hedge_mode: bool = False
    ) -> EmulatedAccount:
        if not _ACCOUNT_NAME.match(name or ""):
            raise ValueError(f"invalid account name {name!r}: letters, digits, '.', '_', '-'; no leading '_'")
        if name in self._accounts:
            raise ValueError(f"account {name!r} already exists")
        if not api_key or not secret:
            raise ValueError("api_key and secret must not be empty")
        account = EmulatedAccount(self, name, self.venue(venue), api_key, secret, hedge_mode)
        self._accounts[name] = account
        return account

    def account(self, name: str) -> EmulatedAccount:
        try:
            return self._accounts[name]
        except KeyError:
            raise KeyError(f"no account {name!r}") from None

    @property
    def accounts(self) -> dict[str, EmulatedAccount]:
        return dict(self._accounts)

    # request weight and IP limits -------------------------------------------------------------------------

    def weight_used(self, venue: str, window_s: float = 60) -> int:
        """IP weight all accounts of ``venue`` used in the last ``window_s`` seconds (at most 600)."""
        return self._limiters[self.venue(venue)].used(window_s)

    def set_ip_limit(
        self,
        venue: str,
        limit: int | None,
        *,
        window_s: float | None = None,
        ban_after: int | None = None,
        ban_s: float | None = None,
    ) -> None:
        """Enforce ``limit`` weight per ``window_s`` for ``venue`` (None: stop enforcing, lift any ban).

        Defaults are the venue's documented ones: Binance 60 s windows, 429 for a request over the limit and
        an IP ban (HTTP 418, first 120 s, doubling) after 3 refusals in a row; Bybit 5 s windows and a ban
        (HTTP 403, 600 s) at the first refusal. Refused requests add no weight.
        """
        api = self.venue_api(venue)
        self._limiters[api.name].configure(
            limit,
            window_s=api.ip_window_s if window_s is None else window_s,
            ban_after=api.ip_limit[1] if ban_after is None else ban_after,
            ban_s=api.ip_limit[2] if ban_s is None else ban_s,
        )

    def ip_limit(self, venue: str) -> dict[str, Any]:
        """Current limit, window, weight used in it and end of any ban (epoch ms) of ``venue``."""
        limiter = self._limiters[self.venue(venue)]
        return {
            "limit": limiter.limit,
            "window_s": limiter.window_s,
            "used": limiter.used(),
            "banned_until_ms": limiter.banned_until_ms(),
        }

    def ip_refusals(self, venue: str) -> dict[str, int]:
        """How many requests of ``venue`` the IP limit refused since start: ``limited`` (Binance 429) and
        ``banned`` (Binance 418, Bybit 403), counted across every ``set_ip_limit``."""
        return dict(self._limiters[self.venue(venue)].refused)

    # scenarios ---------------------------------------------------------------------------------------------

    @classmethod
    def from_scenario(cls, scenario: Any, *, timeout_delay_s: float | None = None) -> ExchangeEmulator:
        """Build an (unstarted) emulator from a scenario mapping; see ``emulator.exchange``."""
        from emulator.scenario import build_emulator

        return build_emulator(cls, scenario, timeout_delay_s=timeout_delay_s)

    @classmethod
    def load_scenario(cls, path: str | Path, *, timeout_delay_s: float | None = None) -> ExchangeEmulator:
        from emulator.scenario import read_scenario

        return cls.from_scenario(read_scenario(path), timeout_delay_s=timeout_delay_s)

    # server ------------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not running; await start() first")
        return self._base_url

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns the base URL ``http://HOST:PORT``."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop serving; requests held by ``timeout`` faults are answered 503 at once."""
        runner, self._runner = self._runner, None
        self._closing.set()
        await self.streams.close_all()
        if runner is not None:
            await runner.cleanup()
        self._base_url = None

    async def __aenter__(self) -> ExchangeEmulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        head, _, rest = tail.partition("/")
        if head == CONTROL_PREFIX:
            from emulator.control import handle_control

            return await handle_control(self, request, rest)
        account = self._accounts.get(head)
        if account is None:
            return web.Response(status=404, text=f"unknown account {head!r}", content_type="text/plain")
        if self.streams.handles(account, "/" + rest):
            return await self.streams.serve(account, request, "/" + rest)
        return await self._serve_venue(account, request, "/" + rest)

    async def _serve_venue(self, account: EmulatedAccount, request: web.Request, path: str) -> web.StreamResponse:
        api = self._apis[account.venue]
        body = await request.text()
        params = api.parse_params(request, body)
        route = api.routes.get((request.method, path))
        group = route.group if route is not None else api.group_of(path)
        weight = api.weight(route, params)
        verdict = self._limiters[account.venue].admit(weight)
        charged = weight if verdict.admitted else 0
        account.record(RecordedRequest(request.method, path, params, time.time(), group, charged))
        headers = api.rate_headers(account, path, route)
        if verdict.admitted:
            response = await self._answer(api, account, request, path, params, body, route, group)
        else:
            response = api.refused(verdict, request)
        response.headers.update(headers)
        return response

    async def _answer(
        self,
        api: VenueApi,
        account: EmulatedAccount,
        request: web.Request,
        path: str,
        params: dict[str, Any],
        body: str,
        route: Route | None,
        group: str | None,
    ) -> web.Response:
        fault = account.take_fault(group)
        if fault is not None and fault.kind == "late_answer":
            response = self._serve(api, account, request, path, params, body, route)
            await self._hold()
            return response
        if fault is not None:
            if fault.kind != "timeout":
                return api.fault_response(fault.kind, request)
            await self._hold()
            if self._closing.is_set():
                return web.Response(status=503, text="emulator stopping", content_type="text/plain")
        return self._serve(api, account, request, path, params, body, route)

    async def _hold(self) -> None:
        """Keep a request waiting ``timeout_delay_s``, or until the emulator stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.timeout_delay_s)

    def _serve(
        self,
        api: VenueApi,
        account: EmulatedAccount,
        request: web.Request,
        path: str,
        params: dict[str, Any],
        body: str,
        route: Route | None,
    ) -> web.Response:
        """Carry the request out and answer it as the venue would."""
        if route is None:
            return api.not_found()
        try:
            if route.private:
                api.authenticate(account, request, body, params)
            payload = route.handler(account, params)
        except VenueError as exc:
            return api.error(exc)
        try:
            return api.ok(account.apply_tampering(request.method, path, payload))
        except Exception as exc:  # a test's transform failed or produced something that is not JSON
            return web.Response(
                status=500, text=f"emulator: tampering {path} failed: {exc!r}", content_type="text/plain"
            )
