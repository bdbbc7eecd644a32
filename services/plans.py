"""What a confirmation stands for: the fix and the exact values the operator was shown.

A plan is stored with its confirmation and applied only if both sides still hold exactly these values, so a
Confirm can never write a size, adopt an amount or send an order the operator did not see.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from services.amounts import Exact
from services.causes import CloseKind
from services.model import Side
from services.protection import OrderPurpose, Protection


class FixAction(StrEnum):
    CLOSE_GHOST = "close_ghost"
    ADOPT_ORPHAN = "adopt_orphan"
    CLOSE_ORPHAN = "close_orphan"
    SET_DB_QUANTITY = "set_db_quantity"
    CANCEL_ORDERS = "cancel_orders"


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # Whether applying it writes the trading bot's table (which may be read-only) rather than the exchange.
    writes_db: ClassVar[bool] = False

    account: str
    market: str
    side: Side

    @property
    def where(self) -> str:
        return f"{self.market} {self.side.upper()} on {self.account}"


class RowSeen(BaseModel):
    """A DB row as the operator saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    symbol: str
    quantity: Exact


class CauseSeen(BaseModel):
    """How the venue says the position closed, as the question showed it: written to the rows as the real close
    (exit reason, closing time, exit price, realized PnL where the table keeps them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: CloseKind
    closed_at: datetime | None = None
    exit_price: Exact | None = None
    realized_pnl: Exact | None = None


class CloseGhost(_Plan):
    """Mark these rows closed: the exchange holds nothing for them."""

    action: Literal[FixAction.CLOSE_GHOST] = FixAction.CLOSE_GHOST
    writes_db: ClassVar[bool] = True
    rows: tuple[RowSeen, ...] = Field(min_length=1)
    cause: CauseSeen | None = None

    @property
    def position_ids(self) -> tuple[str, ...]:
        return tuple(row.id for row in self.rows)

    @property
    def quantity(self) -> Decimal:
        return sum((row.quantity for row in self.rows), Decimal(0))


class Shown(BaseModel):
    """What the question said the position is worth and how it is protected: shown to the operator, not a
    condition of the fix (the size is; prices and stops move)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notional: Exact | None = None
    unrealized_pnl: Exact | None = None
    currency: str | None = None
    protection: Protection | None = None
    stop_loss: Exact | None = None
    protected_quantity: Exact | None = None
    stop_beyond_liquidation: Exact | None = None
    liquidation_price: Exact | None = None


class AdoptOrphan(_Plan):
    """Insert an active row for an exchange position of exactly this size."""

    action: Literal[FixAction.ADOPT_ORPHAN] = FixAction.ADOPT_ORPHAN
    writes_db: ClassVar[bool] = True
    quantity: Exact
    entry_price: Exact | None = None
    shown: Shown = Field(default_factory=Shown)


class CloseOrphan(_Plan):
    """Send one reduce-only market order for exactly this size."""

    action: Literal[FixAction.CLOSE_ORPHAN] = FixAction.CLOSE_ORPHAN
    quantity: Exact
    hedged: bool = False
    shown: Shown = Field(default_factory=Shown)


class SetDbQuantity(_Plan):
    """Set one row's size from what the operator saw to the exchange's size they saw."""

    action: Literal[FixAction.SET_DB_QUANTITY] = FixAction.SET_DB_QUANTITY
    writes_db: ClassVar[bool] = True
    row: RowSeen
    exchange_quantity: Exact


class OrderSeen(BaseModel):
    """A resting order as the operator saw it: where it lives and what it would do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: str
    source: str
    category: str | None = None
    purpose: OrderPurpose
    trigger_price: Exact | None = None
    quantity: Exact | None = None  # None: the whole position


class CancelOrders(_Plan):
    """Cancel exactly these resting orders, left with no position to close on this market and side."""

    action: Literal[FixAction.CANCEL_ORDERS] = FixAction.CANCEL_ORDERS
    orders: tuple[OrderSeen, ...] = Field(min_length=1)

    @property
    def order_ids(self) -> tuple[str, ...]:
        return tuple(order.order_id for order in self.orders)


FixPlan = Annotated[
    CloseGhost | AdoptOrphan | CloseOrphan | SetDbQuantity | CancelOrders, Field(discriminator="action")
]
_ADAPTER: TypeAdapter[FixPlan] = TypeAdapter(FixPlan)


def plan_to_json(plan: FixPlan) -> str:
    return plan.model_dump_json()


def plan_from_json(text: str | bytes) -> FixPlan:
    """A stored plan; a payload that does not parse raises pydantic's ValidationError."""
    return _ADAPTER.validate_json(text)
