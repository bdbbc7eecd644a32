"""What every venue module provides, and the protocol plumbing they share.

A venue module subclasses :class:`VenueApi`: it declares its routes (with endpoint group and request weight),
checks signatures, prints state in the venue's JSON and error envelopes, answers faults and IP-limit
refusals the way the venue does, tells accounts which protective orders the venue can hold and which ids the
fills it makes itself get (liquidations, triggered orders...). The server (``emulator/server.py``) does the
rest: recording, weights, faults, tampering, dispatch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from aiohttp import web

from emulator.state.account import EmulatedAccount
from emulator.state.common import b64, unb64
from emulator.state.markets import MarketSpec
from emulator.state.orders import ProtectiveOrder
from emulator.state.records import Position

if TYPE_CHECKING:
    from emulator.server import ExchangeEmulator
    from emulator.state.limits import Verdict

Handler = Callable[[EmulatedAccount, dict[str, Any]], Any]


class VenueError(Exception):
    """A venue-level rejection: HTTP status plus the venue's error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Route:
    """One served endpoint: fault group, whether it is signed, handler, and IP weight (fixed or by params)."""

    group: str
    private: bool
    handler: Handler
    weight: int | Callable[[dict[str, Any]], int] = 1


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def strip_param(raw: str, name: str) -> tuple[str, str | None]:
    """Remove ``name=...`` from a raw query/form string; returns (rest, value)."""
    kept, value = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith(name + "="):
            value = unquote(part[len(name) + 1 :])
        else:
            kept.append(part)
    return "&".join(kept), value


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def signature_ok(secret: str, payloads: Iterable[str], signature: str) -> bool:
    return any(hmac.compare_digest(hmac_hex(secret, p), signature.lower()) for p in payloads)


def page(items: list[Any], cursor: str, limit: int, scope: str) -> tuple[list[Any], str]:
    """One page of ``items`` after an opaque ``cursor``; returns (page, next cursor or "" on the last page).

    Cursors name their ``scope`` (the query they belong to); a cursor of another query raises ValueError.
    """
    offset = 0
    if cursor:
        try:
            decoded_scope, _, decoded_offset = unb64(unquote(cursor)).rpartition("|")
            offset = int(decoded_offset)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("cursor invalid") from None
        if decoded_scope != scope or offset < 0:
            raise ValueError("cursor invalid")
    chunk = items[offset : offset + limit]
    end = offset + len(chunk)
    return chunk, (b64(f"{scope}|{end}") if end < len(items) else "")


def check_steps(market: MarketSpec, order: ProtectiveOrder) -> None:
    """Prices on the tick grid and quantity on the step grid, as the venues require of placed orders.

    Position-attached stops are exempt: tests set them as plain data, however odd.
    """
    if order.attached:
        return
    for name in ("trigger_price", "limit_price"):
        value = getattr(order, name)
        if value is not None and value % market.tick_size != 0:
            raise ValueError(f"{name} {value} is not a multiple of the tick size {market.tick_size}")
    if order.quantity is not None and order.quantity % market.step_size != 0:
        raise ValueError(f"quantity {order.quantity} is not a multiple of the step size {market.step_size}")


class VenueApi:
    """Base of a venue module's API class (also the account's :class:`~emulator.state.VenueRules`)."""

    name: ClassVar[str]
    exchange_id: ClassVar[str]  # ccxt id
    aliases: ClassVar[tuple[str, ...]]
    catalogue: ClassVar[list[tuple[str, dict[str, Any]]]]
    default_balances: ClassVar[Mapping[str, Decimal]]
    first_order_id: ClassVar[int] = 1
    allows_zero_entry: ClassVar[bool] = False
    ip_window_s: ClassVar[float] = 60.0
    # documented IP limit: (limit per window, refusals in a row before a ban, first ban in seconds)
    ip_limit: ClassVar[tuple[int, int, float]]

    def __init__(self, emulator: ExchangeEmulator) -> None:
        self.emu = emulator
        self.routes: dict[tuple[str, str], Route] = self.build_routes()

    def build_routes(self) -> dict[tuple[str, str], Route]:
        raise NotImplementedError

    @property
    def markets(self) -> dict[str, MarketSpec]:
        return self.emu.markets_of(self.name)

    def has_path(self, path: str) -> bool:
        return any(route_path == path for _, route_path in self.routes)

    def weight(self, route: Route | None, params: dict[str, Any]) -> int:
        """IP weight of one request; unknown paths cost 1 (the venues do not document it)."""
        if route is None:
            return 1
        return route.weight(params) if callable(route.weight) else route.weight

    # protocol hooks ------------------------------------------------------------------------------------

    def group_of(self, path: str) -> str | None:
        raise NotImplementedError

    def parse_params(self, request: web.Request, body: str) -> dict[str, Any]:
        raise NotImplementedError

    def authenticate(self, account: EmulatedAccount, request: web.Request, body: str, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def ok(self, payload: Any) -> web.Response:
        raise NotImplementedError

    def error(self, exc: VenueError) -> web.Response:
        raise NotImplementedError

    def not_found(self) -> web.Response:
        raise NotImplementedError

    def fault_response(self, kind: str, request: web.Request) -> web.Response:
        raise NotImplementedError

    def refused(self, verdict: Verdict, request: web.Request) -> web.Response:
        """The answer to a request over the IP limit (or from a banned IP)."""
        raise NotImplementedError

    def rate_headers(self, account: EmulatedAccount, path: str, route: Route | None) -> dict[str, str]:
        """Usage headers added to every answer of this venue."""
        return {}

    # account rules ---------------------------------------------------------------------------------------

    def prepare_protective(self, account: EmulatedAccount, draft: ProtectiveOrder) -> ProtectiveOrder:
        """Apply venue rules and defaults to a checked draft and give it ids; raise ValueError if not allowed."""
        raise NotImplementedError

    def position_stop(self, kind: str, value: Decimal, position: Position, mark: Decimal) -> dict[str, Any]:
        """Fields of the order a position-attached ``kind`` (stop_loss, take_profit, trailing_stop) becomes."""
        raise NotImplementedError

    # history rules (emulator.state.history.HistoryRules) ---------------------------------------------------

    def trade_id(self, account: EmulatedAccount, number: int) -> str:
        """The id the venue gives the account's ``number``-th fill."""
        raise NotImplementedError

    def history_ids(
        self, account: EmulatedAccount, *, cause: str, trigger: ProtectiveOrder | None, at_ms: int
    ) -> tuple[str, str]:
        """(order id, client order id) of the order behind a fill the venue made itself (a liquidation, ADL,
        settlement, a close in the venue's app, or the order a triggered conditional order became)."""
        raise NotImplementedError
