"""A position's protection in words, the same on the terminal, in e-mail, on the console and in Telegram:
never "no stop" for a position whose stops could not be read."""

from __future__ import annotations

from services.amounts import decimal_text
from services.finding_details import FindingDetails, OrderShown
from services.protection import OrderPurpose, Protection

PURPOSE_WORDS = {
    OrderPurpose.STOP: "stop",
    OrderPurpose.TRAILING_STOP: "trailing stop",
    OrderPurpose.TAKE_PROFIT: "take-profit",
}


def _at(details: FindingDetails) -> str:
    if details.stop_loss is None:
        return ""
    distance = f" ({decimal_text(details.stop_distance_pct)}% from mark)" if details.stop_distance_pct else ""
    return f" at {decimal_text(details.stop_loss)}{distance}"


def protection_text(details: FindingDetails) -> str | None:
    """``stop at 58000 (3.2% from mark)``, ``PARTIAL: stops cover 0.5 of 1…``, ``NONE: …``, ``unknown: …``;
    None for a finding without an exchange position."""
    level = details.protection
    if level is None:
        return None
    if level is Protection.STOP:
        return f"stop{_at(details)}"
    if level is Protection.PARTIAL:
        size = decimal_text(details.exchange_quantity)
        return f"PARTIAL: stops cover {decimal_text(details.protected_quantity)} of {size}{_at(details)}"
    if level is Protection.NONE:
        return "NONE: no stop-loss on the exchange"
    return f"unknown: the orders could not be read ({details.protection_note or 'no reason given'})"


def db_belief_text(details: FindingDetails) -> str | None:
    """What the trading bot's DB believes about the stop, when that differs from the exchange."""
    if details.protection not in (Protection.NONE, Protection.PARTIAL):
        return None
    missing = "the exchange has none" if details.protection is Protection.NONE else "the exchange covers part"
    if details.db_stop_loss is not None:
        return f"DB says stop at {decimal_text(details.db_stop_loss)}; {missing}"
    if details.db_has_stop_loss:
        return f"DB says a stop was placed; {missing}"
    if details.db_has_stop_loss is False:
        return "DB agrees: the trading bot placed no stop"
    return None


def order_text(order: OrderShown) -> str:
    """``stop 58000 for 0.5 (#12345678, algo)``."""
    size = "the whole position" if order.quantity is None else decimal_text(order.quantity)
    trigger = f" {decimal_text(order.trigger_price)}" if order.trigger_price is not None else ""
    return f"{PURPOSE_WORDS[order.purpose]}{trigger} for {size} (#{order.short_id}, {order.source})"
