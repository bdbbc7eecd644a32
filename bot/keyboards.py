"""Inline keyboards for alerts and confirmations, built with aiogram's InlineKeyboardBuilder."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ConfirmAction, ConfirmChoice, FindingAction, FindingButton
from services.findings import StoredFinding
from services.model import FindingKind


def finding_keyboard(
    finding: StoredFinding, *, exchange_orders: bool, snooze_label: str = "Snooze 1h"
) -> InlineKeyboardMarkup | None:
    """The buttons of a live finding's alert; none once it is resolved or fixed."""
    if not finding.live:
        return None
    builder = InlineKeyboardBuilder()

    def button(text: str, action: FindingButton) -> None:
        builder.button(text=text, callback_data=FindingAction(action=action, finding_id=finding.id))

    if finding.kind is FindingKind.ORPHAN:
        button("Adopt into DB", FindingButton.ADOPT)
        if exchange_orders:
            button("Close on exchange", FindingButton.CLOSE_ON_EXCHANGE)
        button(snooze_label, FindingButton.SNOOZE)
        button("Details", FindingButton.DETAILS)
        builder.adjust(2)
    elif finding.kind is FindingKind.GHOST:
        button("Mark closed", FindingButton.MARK_CLOSED)
        button("Keep", FindingButton.KEEP)
        button("Details", FindingButton.DETAILS)
        builder.adjust(2)
    else:
        button("Set DB to exchange size", FindingButton.SET_SIZE)
        button("Ignore", FindingButton.IGNORE)
        button("Details", FindingButton.DETAILS)
        builder.adjust(1, 2)
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
