"""Money at stake, and numbers as a trader reads them on a phone.

A position's notional is contracts × contract size × mark in its settle currency (USDT, USDC); an inverse
contract is worth its contract size in USD, so its value is known in USD directly. Both venues' stablecoin
settled contracts count one for one as USD for severity and ordering.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from services.model import ExchangePosition

MINUS = "−"  # U+2212: a minus sign a phone does not wrap away from its number
USD_LIKE = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD"})


@dataclass(frozen=True, slots=True)
class Exposure:
    """What a position is worth: ``notional`` in ``currency``, and its value in USD where it can be told."""

    notional: Decimal | None
    currency: str | None
    usd: Decimal | None


def exposure_of(position: ExchangePosition) -> Exposure:
    size = position.quantity * (position.contract_size or Decimal(1))
    mark = position.mark_price or position.entry_price
    if position.inverse:
        notional = size / mark if mark else None
        return Exposure(notional, position.settle, size)
    # At the mark: Binance's ``notional`` is, Bybit's ``positionValue`` is at entry, so compute it.
    notional = (
        size * position.mark_price if position.mark_price else position.notional or (size * mark if mark else None)
    )
    currency = position.settle or "USDT"
    return Exposure(notional, currency, notional if currency in USD_LIKE else None)


def value_of(quantity: Decimal, price: Decimal | None, contract_size: Decimal | None = None) -> Decimal | None:
    """A size's worth at a price (a DB row's size at its entry or the mark)."""
    if price is None:
        return None
    return abs(quantity) * (contract_size or Decimal(1)) * price


def distance_pct(price: Decimal | None, mark: Decimal | None) -> Decimal | None:
    """How far a price is from the mark, in percent of the mark, to two places."""
    if price is None or mark is None or mark <= 0:
        return None
    return (abs(mark - price) / mark * 100).quantize(Decimal("0.01"))


# -- words ---------------------------------------------------------------------------------------------------------


def grouped(value: Decimal, places: int | None = None) -> str:
    """``44025.5`` → ``44,025.50`` (two places) or ``44,025.5`` (as it is); never an exponent."""
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = format(abs(value), ",f") if places is not None else format(abs(value.normalize()), ",f")
    return (MINUS if value < 0 else "") + text


def amount(value: Decimal | None, currency: str | None = None, *, sign: bool = False) -> str:
    """Money: two places for dollars, up to eight significant for coins; ``+``/``−`` when ``sign``."""
    if value is None:
        return "unknown"
    if currency is None or currency in USD_LIKE:
        text = grouped(value, 2)
    else:
        text = grouped(value.quantize(Decimal("0.00000001")).normalize() if value else Decimal(0))
    if sign and value > 0:
        text = "+" + text
    return f"{text} {currency}" if currency else text


def price(value: Decimal | None, tick: Decimal | None = None) -> str:
    """A price at the market's tick precision: ``176.1`` with tick 0.01 reads ``176.10``."""
    if value is None:
        return "unknown"
    if tick is not None and tick > 0:
        places = max(0, -tick.normalize().as_tuple().exponent)  # type: ignore[operator]
        return grouped(value, places)
    return grouped(value)


def size(value: Decimal | None) -> str:
    """Contracts as they are, grouped: ``1,000`` or ``0.001``."""
    return "unknown" if value is None else grouped(value)


def percent(value: Decimal | None) -> str:
    return "unknown" if value is None else f"{grouped(value, 2)}%"


def compact(value: Decimal | None, currency: str | None = "USDT") -> str:
    """A short money figure for lists: ``44k USDT``, ``1.2M USDT``, ``850 USDT``."""
    if value is None:
        return "value unknown"
    magnitude = abs(value)
    for limit, suffix in ((Decimal(1_000_000), "M"), (Decimal(1_000), "k")):
        if magnitude >= limit:
            scaled = (value / limit).quantize(Decimal("0.1")).normalize()
            return f"{grouped(scaled)}{suffix} {currency}".strip()
    return f"{grouped(value.quantize(Decimal(1)))} {currency}".strip()
