"""Small helpers every part of the exchange emulator shares: clocks, exact decimals and the way venues print them.

Venues send numbers as strings; keeping quantities as ``Decimal`` end to end means what a test sets is exactly
what ccxt reads back, with no float rounding in between.
"""

from __future__ import annotations

import base64
import time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

ZERO = Decimal(0)


def now_ms() -> int:
    return int(time.time() * 1000)


def dec(value: Any, name: str = "value") -> Decimal:
    """Decimal from a Decimal, int, str or float (floats through their shortest repr)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not a boolean")
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{name} is not a decimal number: {value!r}") from None
    elif isinstance(value, float):
        result = Decimal(repr(value))
    else:
        raise ValueError(f"{name} is not a decimal number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"{name} must be finite: {value!r}")
    return result


def opt_dec(value: Any, name: str) -> Decimal | None:
    return None if value is None else dec(value, name)


def places(step: Decimal) -> int:
    """Decimal places of a tick or step size (``0.010`` -> 2)."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -int(exponent))


def fmt(value: Decimal, digits: int | None = None) -> str:
    """Plain decimal string: fixed ``digits`` places when given, else the shortest exact form."""
    if digits is not None:
        quantized = value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
        text = f"{quantized:f}"
        return "0" if digits == 0 and text == "-0" else text
    text = f"{value.normalize():f}"
    return "0" if text == "-0" else text


def fmt_point(value: Decimal) -> str:
    """Shortest form with at least one decimal place, as Binance prints prices (``65000.0``, ``0.0``)."""
    text = fmt(value)
    return text if "." in text else text + ".0"


def b64(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def unb64(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
