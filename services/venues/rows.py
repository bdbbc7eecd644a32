"""Reading a venue's raw rows field by field: every value is checked, and a row that cannot be understood is
a ``BadAnswer`` naming the row, so one odd row makes its account unchecked instead of crashing a check or
vanishing from it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from services.model import Side
from services.venues.errors import BadAnswer


class Row:
    """One raw row of a venue answer, with typed accessors that raise ``BadAnswer`` naming the row."""

    def __init__(self, raw: Any, where: str):
        if not isinstance(raw, dict):
            raise BadAnswer(f"bad response: {where} is not an object ({type(raw).__name__})")
        self.raw = raw
        self.where = where

    def name(self, symbol: str) -> None:
        self.where = f"{self.where} ({symbol})"

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            if required:
                raise BadAnswer(f"bad response: {self.where} lacks {key}")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise BadAnswer(f"bad response: {self.where} has {key} of type {type(value).__name__}")
        return str(value)

    def decimal(self, key: str, *, required: bool = False) -> Decimal | None:
        """A finite decimal; missing or empty is None (or an error when required), anything else an error."""
        text = self.text(key, required=required)
        if text is None:
            return None
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise BadAnswer(f"bad response: {self.where} has {key} {text[:40]!r}, not a number") from None
        if not value.is_finite():
            raise BadAnswer(f"bad response: {self.where} has {key} {text[:40]!r}, not a finite number")
        return value

    def positive(self, key: str) -> Decimal | None:
        """A price that means nothing when zero (an entry price of 0, an unset stop): None then."""
        value = self.decimal(key)
        return value if value is not None and value > 0 else None

    def flag(self, key: str) -> bool:
        """A yes/no field, as JSON true/false or the text "true"/"false"; missing is no."""
        value = self.raw.get(key)
        if value is None or value is False or value == "":
            return False
        if value is True:
            return True
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise BadAnswer(f"bad response: {self.where} has {key} {str(value)[:40]!r}, not true or false")

    def moment(self, key: str) -> datetime | None:
        """A venue timestamp in milliseconds; 0 or missing is unknown."""
        value = self.decimal(key)
        if value is None or value <= 0:
            return None
        try:
            return datetime.fromtimestamp(float(value) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise BadAnswer(f"bad response: {self.where} has {key} {value}, not a time") from None


class SourcedRow(Row):
    """A row that remembers which listing it came from, for a venue that keeps one kind of thing in several
    (Binance's classic order book and Algo Service, Bybit's linear and inverse categories): where it lives
    decides how it is read and how it is changed."""

    def __init__(self, raw: Any, where: str, origin: str):
        super().__init__(raw, where)
        self.origin = origin


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadAnswer(f"bad response: {where} is not a list")
    return value


def position_closed_by(
    row: Row, side_text: str, one_way_closes: Side, leg: Side | None, leg_name: str, reducing: bool
) -> Side | None:
    """The position a conditional order reduces: the one-way position its side closes (``leg`` None), or its
    hedge-mode leg. None for an order that would open or add; a reducing order on the other leg makes no sense."""
    if leg is None:
        return one_way_closes if reducing else None
    if leg is not one_way_closes:
        if reducing:
            raise BadAnswer(f"bad response: {row.where}: a closing order {side_text} on {leg_name}")
        return None  # hedge mode: adds to its leg
    return leg
