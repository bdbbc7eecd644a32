"""A position's protection in words, the same on the terminal, in e-mail, on the console and in Telegram:
never "no stop" for a position whose stops could not be read."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from services.amounts import decimal_text
from services.finding_details import FindingDetails, OrderShown
from services.model import Side
from services.plans import Shown
from services.protection import OrderPurpose, Protection, ProtectiveOrder

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


def beyond_liquidation_text(details: FindingDetails | Shown) -> str | None:
    """Why a stop on the exchange is no protection: ``the stop at 170 is beyond the liquidation price 164.4:
    liquidation comes first, so it can never fire``; None when no stop is beyond it."""
    stop, liquidation = details.stop_beyond_liquidation, details.liquidation_price
    if stop is None or liquidation is None:
        return None
    return (
        f"the stop at {decimal_text(stop)} is beyond the liquidation price {decimal_text(liquidation)}: "
        "liquidation comes first, so it can never fire"
    )


def protection_text(details: FindingDetails) -> str | None:
    """``stop at 58000 (3.2% from mark)``, ``PARTIAL: stops cover 0.5 of 1…``, ``NONE: …``, ``unknown: …``;
    None for a finding without an exchange position. A stop beyond the liquidation price is said, never counted."""
    level = details.protection
    if level is None:
        return None
    beyond = beyond_liquidation_text(details)
    if level is Protection.STOP:
        return f"stop{_at(details)}"
    if level is Protection.PARTIAL:
        size = decimal_text(details.exchange_quantity)
        partial = f"PARTIAL: stops cover {decimal_text(details.protected_quantity)} of {size}{_at(details)}"
        return f"{partial}; {beyond}" if beyond else partial
    if level is Protection.NONE:
        return f"NONE: {beyond}" if beyond else "NONE: no stop-loss on the exchange"
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


ORDER_SIDE = {Side.LONG: "SELL", Side.SHORT: "BUY"}  # the side of an order that reduces a position of this side


def orders_label(orders: Sequence[OrderShown | ProtectiveOrder]) -> str:
    """Resting orders by their own side and reduce-only flag, not the side of a position they would close:
    ``SELL stop, reduce-only``, ``BUY stop + take-profit for the SHORT leg`` (a hedge leg's order is not flagged
    reduce-only; it still only closes its leg)."""
    if not orders:
        return ""
    closes = orders[0].closes
    purposes = " + ".join(dict.fromkeys(PURPOSE_WORDS[o.purpose] for o in orders))
    flags = {o.reduce_only for o in orders}
    if flags == {True}:
        flag = ", reduce-only"
    elif flags == {False}:
        flag = f" for the {closes.upper()} leg"
    else:
        flag = ""
    return f"{ORDER_SIDE[closes]} {purposes}{flag}"


def order_text(order: OrderShown) -> str:
    """``stop 58000 for 0.5 (#12345678, algo)``."""
    size = "the whole position" if order.quantity is None else decimal_text(order.quantity)
    trigger = f" {decimal_text(order.trigger_price)}" if order.trigger_price is not None else ""
    return f"{PURPOSE_WORDS[order.purpose]}{trigger} for {size} (#{order.short_id}, {order.source})"


def adoption_text(shown: Shown, quantity: Decimal) -> str:
    """What an Adopt question says of the position's protection, so the warning that follows an adoption of a
    position without a stop is no surprise; empty when its protection was not shown."""
    level, beyond = shown.protection, beyond_liquidation_text(shown)
    if level is Protection.STOP:
        at = f" at {decimal_text(shown.stop_loss)}" if shown.stop_loss is not None else ""
        return f"It keeps its stop{at} on the exchange."
    if level is Protection.PARTIAL:
        covered = f"Stops cover only {decimal_text(shown.protected_quantity)} of {decimal_text(quantity)}"
        why = f" ({beyond})" if beyond else ""
        return f"{covered} on the exchange{why}: once adopted it is an unprotected position until stops cover it all."
    if level is Protection.NONE:
        none = (
            f"No stop-loss that can fire covers it ({beyond})" if beyond else "No stop-loss covers it on the exchange"
        )
        return f"{none}: once adopted it is an unprotected position until one does."
    if level is Protection.UNKNOWN:
        return "Its stops could not be read: whether it is protected is unknown."
    return ""
