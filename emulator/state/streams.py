"""Change notification and stream faults of emulated accounts: what the private WebSocket streams consume.

Every method that changes an account is wrapped in :func:`notifies`. When the outermost such call returns,
the account compares its state with the state last published and hands an :class:`AccountChange` (positions,
protective orders opened and closed, fills, balances) to every callback registered with
:meth:`AccountStreams.subscribe` -- synchronously, so the change is described exactly as it happened, before
anything else can touch the account. Venue stream modules (``emulator/streams``) print it in their venue's
JSON. Mutations made outside a wrapped method (a test writing ``account.balances[...]`` directly) show up in
the next published change.

Stream faults (:meth:`AccountStreams.stream_fault`) are kept here, venue-neutral; the stream modules consult
them and act on the open connections registered with the account (:class:`StreamLink`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from emulator.state.common import now_ms
from emulator.state.orders import ProtectiveOrder
from emulator.state.records import EmulatedOrder, Position, check_times

if TYPE_CHECKING:
    from emulator.state.orders import ProtectiveBook

log = logging.getLogger(__name__)

# Frames a client cannot read, each in the venue's own wire format: JSON cut off mid-object, a position whose size
# is 1e400 (beyond a float), a JSON array as the whole frame (Binance), an order push whose row is null (Bybit).
HOSTILE_FRAME_FAULTS = ("malformed", "overflow", "array", "null_row")
# Faults that act on open connections (at once, then on connections as they open, until used up) ...
LIVE_STREAM_FAULTS = ("drop", "reset", "stall", *HOSTILE_FRAME_FAULTS, "expire", "expire_silent")
# ... and faults that refuse something a client asks for.
GATE_STREAM_FAULTS = ("refuse_auth", "refuse_listen_key", "unavailable")
STREAM_FAULT_KINDS = LIVE_STREAM_FAULTS + GATE_STREAM_FAULTS

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class PositionChange:
    """One (symbol, side) whose position changed; ``None`` means absent (never set, or removed)."""

    symbol: str
    side: str
    before: Position | None
    after: Position | None


@dataclass(frozen=True)
class AccountChange:
    """What one state-changing call did to an account.

    ``reason`` is Binance's ``ACCOUNT_UPDATE`` reason vocabulary (``ORDER``, ``ADJUSTMENT``, ``FUNDING_FEE``,
    ``DEPOSIT``, ``AUTO_EXCHANGE``, ...): the method's default or the one set by
    :meth:`AccountStreams.change_reason`. ``orders_closed`` carries the closed version of each order
    (``status`` "cancelled", or whatever a closing method set). ``balances`` holds (asset, before, after).
    """

    reason: str
    timestamp_ms: int
    positions: tuple[PositionChange, ...] = ()
    orders_opened: tuple[ProtectiveOrder, ...] = ()
    orders_closed: tuple[ProtectiveOrder, ...] = ()
    orders_amended: tuple[ProtectiveOrder, ...] = ()
    fills: tuple[EmulatedOrder, ...] = ()
    balances: tuple[tuple[str, Decimal | None, Decimal | None], ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.positions
            or self.orders_opened
            or self.orders_closed
            or self.orders_amended
            or self.fills
            or self.balances
        )


@dataclass
class StreamFault:
    """An armed stream fault; ``times`` is how many more times it fires (None: until cleared)."""

    kind: str
    times: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.times}


@dataclass
class ListenKey:
    """A Binance user-data-stream key: valid until ``expires_at`` (epoch seconds), extended by POST/PUT."""

    key: str
    created_ms: int
    expires_at: float
    expired: bool = False


class StreamLink(Protocol):
    """One open stream connection as the account sees it (implemented in ``emulator/streams``)."""

    def fire(self, kind: str) -> None:
        """Apply a live fault (see :data:`LIVE_STREAM_FAULTS`) to this connection."""

    def close_now(self, code: int) -> None:
        """Close the connection with a close frame of ``code``."""

    def info(self) -> dict[str, Any]: ...


def notifies(reason: str) -> Callable[[F], F]:
    """Publish what the decorated account method changed once the outermost such call returns."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def inner(self: AccountStreams, *args: Any, **kwargs: Any) -> Any:
            self._change_depth += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                self._change_depth -= 1
                if self._change_depth == 0:
                    self._publish(reason)

        return inner  # type: ignore[return-value]

    return wrap


class AccountStreams:
    """Mixin of :class:`~emulator.state.EmulatedAccount`: change subscriptions, stream faults and open streams."""

    # provided by the account
    _emulator: Any
    _positions: dict[tuple[str, str], Position]
    _book: ProtectiveBook
    _orders: list[EmulatedOrder]
    balances: dict[str, Decimal]
    venue: str

    def _init_streams(self) -> None:
        self._change_depth = 0
        self._change_reason: str | None = None
        self._listeners: list[Callable[[AccountChange], None]] = []
        self._published: tuple[Any, ...] | None = None
        self._stream_faults: list[StreamFault] = []
        self._stream_links: list[StreamLink] = []
        self._listen_key: ListenKey | None = None
        self.listen_key_ttl_s = 3600.0  # Binance: a listenKey lives 60 minutes after its last POST/PUT

    # change notification -----------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[AccountChange], None]) -> Callable[[], None]:
        """Call ``callback(change)`` after every state change; returns a function that unsubscribes.

        Callbacks run synchronously inside the changing call, so they must be quick (queue, don't await);
        an exception in one is logged and does not undo the change.
        """
        if not callable(callback):
            raise ValueError("callback must be callable")
        if not self._listeners:
            self._published = self._stream_snapshot()
        self._listeners.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    @contextlib.contextmanager
    def change_reason(self, reason: str) -> Iterator[None]:
        """Publish the changes made inside the block with ``reason`` (Binance ``a.m``: "FUNDING_FEE", ...)."""
        if not reason or not isinstance(reason, str):
            raise ValueError("reason must be a non-empty string")
        previous, self._change_reason = self._change_reason, reason
        try:
            yield
        finally:
            self._change_reason = previous

    def _stream_snapshot(self) -> tuple[Any, ...]:
        return (
            dict(self._positions),
            {o.order_id: o for o in self._book.open},
            len(self._orders),
            dict(self.balances),
        )

    def _publish(self, reason: str) -> None:
        if not self._listeners:
            return
        now = self._stream_snapshot()
        before, self._published = self._published, now
        if before is None:
            return
        change = self._diff(before, now, self._change_reason or reason)
        if not change:
            return
        for callback in list(self._listeners):
            try:
                callback(change)
            except Exception:  # a stream's problem must never undo or break a state change
                log.exception("stream listener of %s failed", getattr(self, "name", "?"))

    def _diff(self, before: tuple[Any, ...], now: tuple[Any, ...], reason: str) -> AccountChange:
        old_positions, old_open, old_fills, old_balances = before
        new_positions, new_open, new_fills, new_balances = now
        positions = tuple(
            PositionChange(key[0], key[1], old_positions.get(key), new_positions.get(key))
            for key in sorted(set(old_positions) | set(new_positions))
            if old_positions.get(key) != new_positions.get(key)
        )
        opened = tuple(o for oid, o in new_open.items() if oid not in old_open)
        amended = tuple(o for oid, o in new_open.items() if oid in old_open and old_open[oid] != o)
        closed_book = {o.order_id: o for o in self._book.closed[-(len(old_open) + 1) :]}
        closed = tuple(
            closed_book.get(oid) or dataclasses.replace(o, status="closed")
            for oid, o in old_open.items()
            if oid not in new_open
        )
        fills = tuple(self._orders[old_fills:new_fills]) if new_fills > old_fills else ()
        balances = tuple(
            (asset, old_balances.get(asset), new_balances.get(asset))
            for asset in sorted(set(old_balances) | set(new_balances))
            if old_balances.get(asset) != new_balances.get(asset)
        )
        return AccountChange(reason, now_ms(), positions, opened, closed, amended, fills, balances)

    # stream faults -----------------------------------------------------------------------------------

    def stream_fault(self, kind: str, times: int | None = None) -> StreamFault:
        """Arm a fault on this account's private streams (``times=None``: until :meth:`clear_stream_faults`).

        Live kinds (drop, reset, stall, the hostile frames malformed, overflow, array and null_row, expire,
        expire_silent) fire at once on every open stream, then on streams as they open, one use per stream.
        Gate kinds fire on what a client asks for:
        refuse_auth (Bybit auth op; Binance listenKey POST/PUT), refuse_listen_key (Binance WS handshake),
        unavailable (any WS handshake: HTTP 404). See ``emulator.exchange`` for what each looks like.
        """
        supported = self._emulator.streams.fault_kinds(self.venue)
        if kind not in supported:
            raise ValueError(f"unknown stream fault {kind!r} for {self.venue}; use one of {', '.join(supported)}")
        check_times(times)
        fault = StreamFault(kind, times)
        self._stream_faults.append(fault)
        if kind in LIVE_STREAM_FAULTS:
            for link in list(self._stream_links):
                if self.take_stream_fault(kind):
                    link.fire(kind)
        return fault

    def clear_stream_faults(self) -> None:
        """Disarm every stream fault and resume stalled streams."""
        self._stream_faults.clear()
        for link in list(self._stream_links):
            link.fire("resume")

    @property
    def stream_faults(self) -> list[StreamFault]:
        return [dataclasses.replace(f) for f in self._stream_faults]

    def take_stream_fault(self, kind: str) -> bool:
        """Consume one use of an armed fault of ``kind``; True when one was armed."""
        for fault in self._stream_faults:
            if fault.kind == kind:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._stream_faults.remove(fault)
                return True
        return False

    # open streams ------------------------------------------------------------------------------------

    def attach_stream(self, link: StreamLink) -> None:
        """Register an open stream and fire the armed live faults on it."""
        self._stream_links.append(link)
        for kind in LIVE_STREAM_FAULTS:
            if any(f.kind == kind for f in self._stream_faults) and self.take_stream_fault(kind):
                link.fire(kind)

    def detach_stream(self, link: StreamLink) -> None:
        with contextlib.suppress(ValueError):
            self._stream_links.remove(link)

    @property
    def open_streams(self) -> list[dict[str, Any]]:
        """The open private-stream connections of this account: path, venue state, when opened."""
        return [link.info() for link in self._stream_links]

    def drop_streams(self, code: int = 1001) -> int:
        """Close every open stream of this account now (close frame ``code``); returns how many."""
        links = list(self._stream_links)
        for link in links:
            link.close_now(code)
        return len(links)

    @property
    def listen_key(self) -> str | None:
        """Binance: the account's valid listenKey, if any."""
        key = self._listen_key
        return None if key is None or key.expired else key.key
