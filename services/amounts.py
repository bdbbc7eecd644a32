"""Sizes and prices are exact decimals; this is how they are written wherever a person or a JSON document reads
them, so an alert, a confirmation's stored plan and the CLI's JSON all say ``5``, never ``5.000`` or ``5E+1``."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer


def decimal_text(value: Decimal | None) -> str | None:
    """Plain notation, no exponent and no trailing zeros: 86, 0.5, 1000000; never "-0"."""
    if value is None:
        return None
    if value.is_zero():
        return "0"
    return format(value.normalize(), "f")


Exact = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str, when_used="json")]
"""A decimal field that serialises to JSON in plain notation."""
