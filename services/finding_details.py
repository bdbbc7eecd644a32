"""What a finding's alert shows, frozen when the drift was detected: the sizes, prices and DB rows the operator
sees, and so what a fix button will apply. Stored as JSON with the finding; read back as a typed value."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from services.amounts import Exact
from services.kinds import unknown_symbol_text
from services.model import Finding, FindingKind


class RowShown(BaseModel):
    """One DB row as the alert showed it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    symbol: str
    quantity: Exact
    opened_at: datetime | None = None
    listed: bool = True


class FindingDetails(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    exchange_quantity: Exact | None = None
    db_quantity: Exact | None = None
    difference: Exact | None = None
    entry_price: Exact | None = None
    mark_price: Exact | None = None
    unrealized_pnl: Exact | None = None
    leverage: Exact | None = None
    stop_loss: Exact | None = None
    stop_loss_known: bool = False
    hedged: bool = False
    category: str | None = None
    note: str | None = None
    db_position_ids: tuple[str, ...] = ()
    db_rows: tuple[RowShown, ...] = ()

    @classmethod
    def of(cls, finding: Finding) -> FindingDetails:
        position = finding.exchange_position
        rows = finding.db_positions
        entry = position.entry_price if position and position.entry_price is not None else None
        if entry is None:
            entry = next((row.entry_price for row in rows if row.entry_price is not None), None)
        note = None
        if finding.kind is FindingKind.UNKNOWN_SYMBOL:
            note = unknown_symbol_text(finding.db_position_ids, finding.key.market, finding.exchange)
        return cls(
            exchange_quantity=finding.exchange_quantity,
            db_quantity=finding.db_quantity,
            difference=finding.difference,
            entry_price=entry,
            mark_price=position.mark_price if position else None,
            unrealized_pnl=position.unrealized_pnl if position else None,
            leverage=position.leverage if position else None,
            stop_loss=position.stop_loss if position else None,
            stop_loss_known=bool(position and position.stop_loss_known),
            hedged=bool(position and position.hedged),
            category=position.category if position else None,
            note=note,
            db_position_ids=finding.db_position_ids,
            db_rows=tuple(
                RowShown(id=r.id, symbol=r.symbol, quantity=r.quantity, opened_at=r.opened_at, listed=r.market_listed)
                for r in rows
            ),
        )

    @property
    def opened_at(self) -> datetime | None:
        """When the oldest DB row was opened, if known."""
        return min((r.opened_at for r in self.db_rows if r.opened_at is not None), default=None)
