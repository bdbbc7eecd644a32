"""Both sides of the books at one moment: every account's exchange positions and the DB's active rows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from services.model import AccountStatus, DbPosition, ExchangePosition, FailedSide, PositionKey, Side
from services.positions import PositionRow, PositionsStore
from services.protection import ProtectiveOrder, protection_of, unknown
from services.settings import AccountSettings
from services.venues import Gateway, VenueError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """One account's side of a snapshot; ``error`` set means unchecked, and then both lists are empty.

    ``orders`` are the resting protective orders; ``orders_error`` says why they are not known (a failed read),
    in which case every position's protection is unknown and no stray order can be reported."""

    account: AccountSettings
    exchange_positions: tuple[ExchangePosition, ...] = ()
    db_positions: tuple[DbPosition, ...] = ()
    error: str | None = None
    failed: FailedSide = FailedSide.VENUE  # which side ``error`` is about
    orders: tuple[ProtectiveOrder, ...] = ()
    orders_error: str | None = None
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0

    @property
    def checked(self) -> bool:
        return self.error is None

    def status(self) -> AccountStatus:
        return AccountStatus(
            account=self.account.name,
            exchange=self.account.exchange,
            checked=self.checked,
            error=self.error,
            positions=len(self.exchange_positions),
            orders_error=self.orders_error,
            failed=None if self.checked else self.failed,
        )


def assign_rows(
    rows: Sequence[PositionRow], accounts: Sequence[AccountSettings], by_account_column: bool
) -> dict[str, list[PositionRow]]:
    """Give each DB row to the account it belongs to, by dictionary lookup.

    A row names its exchange and, when the schema has an account column, its account. A row without an
    account value belongs to the only account on that exchange; with several, it cannot be placed and is
    logged rather than guessed.
    """
    by_exchange: dict[str, list[AccountSettings]] = {}
    by_name: dict[tuple[str, str | None], AccountSettings] = {}
    for account in accounts:
        by_exchange.setdefault(account.db_exchange or "", []).append(account)
        by_name[(account.db_exchange or "", account.db_account)] = account
    assigned: dict[str, list[PositionRow]] = {account.name: [] for account in accounts}
    for row in rows:
        exchange = row.exchange or ""
        if by_account_column and row.account:
            owner = by_name.get((exchange, row.account))
            if owner is not None:
                assigned[owner.name].append(row)
            continue
        candidates = by_exchange.get(exchange, ())
        if len(candidates) == 1:
            assigned[candidates[0].name].append(row)
        elif len(candidates) > 1:
            log.warning(
                "position #%s on %s names no account and %d accounts share that exchange; skipped",
                row.id,
                exchange,
                len(candidates),
            )
    return assigned


def row_problems(rows: Sequence[PositionRow]) -> str | None:
    """Why an account's DB rows cannot be compared this round, naming the rows; None when all are readable."""
    bad = [row for row in rows if row.problem]
    if not bad:
        return None
    first = f"DB row #{bad[0].id} cannot be read: {bad[0].problem}"
    return first if len(bad) == 1 else f"{first} (and {len(bad) - 1} more unreadable row(s))"


def market_of(gateway: Gateway, store: PositionsStore | None, symbol: str) -> tuple[str, bool]:
    """A DB symbol as the venue's market id, through the configured rewrites and the venue's markets."""
    rewritten = store.settings.rewrite_symbol(symbol) if store is not None else symbol
    return gateway.resolve_market(rewritten)


def _side_for(row: PositionRow, market: str, exchange: Sequence[ExchangePosition]) -> Side:
    """A row that keeps no side matches the position the venue holds on its market (by size when it holds both)."""
    held = [p for p in exchange if p.market == market]
    chosen = [p for p in held if p.quantity == row.quantity] or held
    return chosen[0].side if chosen else Side.LONG


def to_db_positions(
    rows: Sequence[PositionRow],
    gateway: Gateway,
    store: PositionsStore | None = None,
    exchange: Sequence[ExchangePosition] = (),
) -> list[DbPosition]:
    """Resolve each readable row's symbol to the venue's market id; an unlisted symbol stays as written."""
    positions = []
    for row in rows:
        if row.problem or row.quantity is None or row.symbol is None:
            continue
        if row.side is None and not row.any_side:
            continue
        market, listed = market_of(gateway, store, row.symbol)
        side = row.side if row.side is not None else _side_for(row, market, exchange)
        positions.append(
            DbPosition(
                id=row.id,
                account=gateway.name,
                exchange=gateway.exchange_id,
                db_exchange=row.exchange or "",
                symbol=row.symbol,
                market=market if listed else row.symbol,
                side=side,
                quantity=row.quantity,
                entry_price=row.entry_price,
                opened_at=row.opened_at,
                updated_at=row.updated_at,
                market_listed=listed,
                stop_loss=row.stop_loss,
                has_stop_loss=row.has_stop_loss,
            )
        )
    return positions


def with_protection(
    positions: Sequence[ExchangePosition], orders: Sequence[ProtectiveOrder], orders_error: str | None
) -> list[ExchangePosition]:
    """Each position with its protection: the stops that would close it, or unknown when they could not be read
    (a position's own stop is known even then)."""
    by_key: dict[PositionKey, list[ProtectiveOrder]] = {}
    for order in orders:
        by_key.setdefault(order.key, []).append(order)
    protected = []
    for position in positions:
        if orders_error is not None and position.stop_loss is None:
            state = unknown(orders_error)
        else:
            state = protection_of(
                position.quantity,
                position.mark_price,
                by_key.get(position.key, ()),
                position.stop_loss,
                side=position.side,
                liquidation=position.liquidation_price,
            )
        protected.append(replace(position, protection=state, stop_loss=state.stop_price or position.stop_loss))
    return protected


@dataclass(frozen=True, slots=True)
class ExchangeRead:
    """What one account's venue answered this round: positions and orders, or why not."""

    positions: tuple[ExchangePosition, ...] = ()
    orders: tuple[ProtectiveOrder, ...] = ()
    orders_error: str | None = None
    error: str | None = None
    duration_s: float = 0.0


async def read_venue(gateway: Gateway) -> ExchangeRead:
    """Positions, then the protective orders when they can matter: when the account holds positions, or held
    orders at the last read (so an order left behind by the last position is still seen)."""
    try:
        positions = await gateway.positions()
    except VenueError as exc:
        return ExchangeRead(error=exc.reason)
    if not gateway.reads_orders:
        return ExchangeRead(
            tuple(with_protection(positions, (), gateway.no_orders_reason)), (), gateway.no_orders_reason
        )
    if not positions and not gateway.holds_orders:
        return ExchangeRead()
    try:
        orders = await gateway.protective_orders()
    except VenueError as exc:
        return ExchangeRead(tuple(with_protection(positions, (), exc.reason)), (), exc.reason)
    gateway.holds_orders = bool(orders)
    return ExchangeRead(tuple(with_protection(positions, orders, None)), tuple(orders))


class SnapshotReader:
    """Reads all accounts' exchanges concurrently, and the DB once, at the same time."""

    def __init__(self, gateways: Mapping[str, Gateway], repository: PositionsStore):
        self.gateways = gateways
        self.repository = repository
        self._flights: dict[tuple[str, ...], asyncio.Future[dict[str, AccountSnapshot]]] = {}

    async def read_shared(self, names: Sequence[str]) -> dict[str, AccountSnapshot]:
        """A read for looking (``/positions``): requests for the same accounts while one is under way share it,
        so a burst of commands costs the venues one read. Checks never share: a confirming read must be new."""
        key = tuple(names)
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = asyncio.ensure_future(self.read(names))
            flight.add_done_callback(lambda _done: self._flights.pop(key, None))
        return await asyncio.shield(flight)

    async def read(self, names: Sequence[str]) -> dict[str, AccountSnapshot]:
        gateways = [self.gateways[name] for name in names]
        db_exchanges = sorted({g.account.db_exchange or "" for g in gateways})
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def read_exchange(gateway: Gateway) -> ExchangeRead:
            result = await read_venue(gateway)
            return replace(result, duration_s=loop.time() - started)

        # a check of some accounts (a confirming read, a triggered check) reads only their rows
        db_accounts = None if len(names) == len(self.gateways) else [g.account.db_account or "" for g in gateways]
        exchange_results, rows = await asyncio.gather(
            asyncio.gather(*(read_exchange(g) for g in gateways)), self.repository.active(db_exchanges, db_accounts)
        )
        by_account_column = self.repository.has_account_column
        assigned = assign_rows(rows, [g.account for g in gateways], by_account_column)
        snapshots: dict[str, AccountSnapshot] = {}
        for gateway, result in zip(gateways, exchange_results, strict=True):
            error = result.error or row_problems(assigned[gateway.name])
            if error:
                failed = FailedSide.VENUE if result.error else FailedSide.DB
                snapshots[gateway.name] = AccountSnapshot(
                    gateway.account, error=error, failed=failed, duration_s=result.duration_s
                )
                continue
            rows = to_db_positions(assigned[gateway.name], gateway, self.repository, result.positions)
            snapshots[gateway.name] = AccountSnapshot(
                gateway.account,
                exchange_positions=result.positions,
                db_positions=tuple(rows),
                orders=result.orders,
                orders_error=result.orders_error,
                duration_s=result.duration_s,
            )
        return snapshots
