"""The stream hub: routes an account's WebSocket paths to its venue's stream module and keeps the open
connections, so faults, ``drop_streams`` and shutdown can reach them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from emulator.state.account import EmulatedAccount
from emulator.streams.base import StreamConnection
from emulator.streams.binance import BinanceStreams
from emulator.streams.bybit import BybitStreams

if TYPE_CHECKING:
    from emulator.server import ExchangeEmulator


class StreamHub:
    """Private WebSocket streams of every account of one emulator."""

    def __init__(self, emulator: ExchangeEmulator) -> None:
        self.emu = emulator
        self.binance = BinanceStreams(self)
        self.bybit = BybitStreams(self)
        self._venues: dict[str, Any] = {"binance": self.binance, "bybit": self.bybit}
        self.links: set[StreamConnection] = set()

    def fault_kinds(self, venue: str) -> tuple[str, ...]:
        return self._venues[venue].fault_kinds

    def handles(self, account: EmulatedAccount, path: str) -> bool:
        """Whether ``path`` (below the account prefix) is one of the account venue's stream paths."""
        return self._venues[account.venue].handles(path)

    async def serve(self, account: EmulatedAccount, request: web.Request, path: str) -> web.StreamResponse:
        venue = self._venues[account.venue]
        if account.take_stream_fault("unavailable"):
            return venue.unavailable()
        return await venue.serve(account, request, path)

    def listen_key(self, account: EmulatedAccount, method: str) -> dict[str, Any]:
        """Binance ``/fapi/v1/listenKey`` (called by the venue's REST route)."""
        return self.binance.listen_key(account, method)

    async def close_all(self) -> None:
        """Close every open stream (code 1001), waiting at most a second for the closing handshakes."""
        for venue in self._venues.values():
            venue.stop()
        links = list(self.links)
        for link in links:
            link.close_now(WSCloseCode.GOING_AWAY)
        if links:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(link.closed.wait() for link in links)), 1.0)
