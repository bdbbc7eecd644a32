"""Inline keyboards for alerts and confirmations, built with aiogram's InlineKeyboardBuilder.

``KIND_BUTTONS`` is the one table of which buttons each kind of finding has: keyboards draw it and the
handlers accept exactly these presses, so the two can never disagree.
"""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ConfirmAction, ConfirmChoice, FindingAction, FindingButton
from services.findings import StoredFinding
from services.model import FindingKind

B = FindingButton
LABELS = {
    B.ADOPT: "Adopt into DB",
    B.CLOSE_ON_EXCHANGE: "Close on exchange",
    B.SNOOZE: "Snooze 1h",
    B.DETAILS: "Details",
    B.MARK_CLOSED: "Mark closed",
    B.KEEP: "Keep",
    B.SET_SIZE: "Set DB to exchange size",
    B.IGNORE: "Ignore",
    B.CANCEL_ORDER: "Cancel order",
}
# Per kind: the buttons in order, and how many go on each row.
KIND_BUTTONS: dict[FindingKind, tuple[tuple[FindingButton, ...], tuple[int, ...]]] = {
    FindingKind.ORPHAN: ((B.ADOPT, B.CLOSE_ON_EXCHANGE, B.SNOOZE, B.DETAILS), (2,)),
    FindingKind.GHOST: ((B.MARK_CLOSED, B.KEEP, B.DETAILS), (2,)),
    FindingKind.QUANTITY_MISMATCH: ((B.SET_SIZE, B.IGNORE, B.DETAILS), (1, 2)),
    FindingKind.UNKNOWN_SYMBOL: ((B.SNOOZE, B.KEEP, B.DETAILS), (2,)),
    FindingKind.UNPROTECTED: ((B.SNOOZE, B.KEEP, B.DETAILS), (2,)),
    FindingKind.STRAY_ORDER: ((B.CANCEL_ORDER, B.KEEP, B.DETAILS), (1, 2)),
}
EXCHANGE_ORDER_BUTTONS = frozenset({B.CLOSE_ON_EXCHANGE, B.CANCEL_ORDER})


def buttons_for(kind: FindingKind, *, exchange_orders: bool) -> tuple[FindingButton, ...]:
    """The buttons a finding of this kind offers (closing on the exchange only where the account allows it)."""
    buttons, _rows = KIND_BUTTONS[kind]
    return tuple(b for b in buttons if exchange_orders or b not in EXCHANGE_ORDER_BUTTONS)


def finding_keyboard(finding: StoredFinding, *, exchange_orders: bool) -> InlineKeyboardMarkup | None:
    """The buttons of a live finding's alert; none once it is resolved or fixed."""
    if not finding.live:
        return None
    builder = InlineKeyboardBuilder()
    for button in buttons_for(finding.kind, exchange_orders=exchange_orders):
        builder.button(text=LABELS[button], callback_data=FindingAction(action=button, finding_id=finding.id))
    builder.adjust(*KIND_BUTTONS[finding.kind][1])
    return builder.as_markup()


def confirm_keyboard(confirmation_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text="Confirm", callback_data=ConfirmAction(confirmation_id=confirmation_id, choice=ConfirmChoice.CONFIRM)
    )
    builder.button(
        text="Cancel", callback_data=ConfirmAction(confirmation_id=confirmation_id, choice=ConfirmChoice.CANCEL)
    )
    return builder.as_markup()
