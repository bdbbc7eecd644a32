"""Inline keyboards for alerts and confirmations, built with aiogram's InlineKeyboardBuilder.

``KIND_BUTTONS`` (built from ``FIX_BUTTONS``) is the one table of which buttons each kind of finding has:
keyboards draw it and the handlers accept exactly these presses, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import CopyTextButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ConfirmAction, ConfirmChoice, DigestAction, DigestChoice, FindingAction, FindingButton
from services.findings import StoredFinding
from services.model import FindingKind, FindingState
from services.positions_config import WRITABLE, BookWrites

B = FindingButton
LABELS = {
    B.ADOPT: "Adopt into DB",
    B.CLOSE_ON_EXCHANGE: "Close on exchange",
    B.SNOOZE: "Snooze 1h",
    B.DETAILS: "Details",
    B.MARK_CLOSED: "Mark closed",
    B.SET_SIZE: "Set DB to exchange size",
    B.CANCEL_ORDER: "Cancel order",
    B.ACKNOWLEDGE: "Acknowledge",
    B.UNACKNOWLEDGE: "Undo acknowledge",
}
# Per kind: the fix buttons (first row), then Snooze / Acknowledge / Details. Every kind can be snoozed; an
# orphan is money at risk with nobody watching, so it is never acknowledged into silence.
FIX_BUTTONS: dict[FindingKind, tuple[FindingButton, ...]] = {
    FindingKind.ORPHAN: (B.ADOPT, B.CLOSE_ON_EXCHANGE),
    FindingKind.GHOST: (B.MARK_CLOSED,),
    FindingKind.QUANTITY_MISMATCH: (B.SET_SIZE,),
    FindingKind.UNKNOWN_SYMBOL: (),
    FindingKind.UNPROTECTED: (),
    FindingKind.STRAY_ORDER: (B.CANCEL_ORDER,),
}
KIND_BUTTONS: dict[FindingKind, tuple[FindingButton, ...]] = {
    kind: (*fixes, B.SNOOZE, *(() if kind is FindingKind.ORPHAN else (B.ACKNOWLEDGE,)), B.DETAILS)
    for kind, fixes in FIX_BUTTONS.items()
}
EXCHANGE_ORDER_BUTTONS = frozenset({B.CLOSE_ON_EXCHANGE, B.CANCEL_ORDER})
# Fixes that write the trading bot's table: never offered where it is read-only. Those that settle DB rows give
# way to the bot's own command for each row (a copy-text button), at most REMEDY_ROWS of them.
DB_WRITE_BUTTONS = frozenset({B.ADOPT, B.MARK_CLOSED, B.SET_SIZE})
ROW_FIX_BUTTONS = frozenset({B.MARK_CLOSED, B.SET_SIZE})
REMEDY_ROWS = 3


def buttons_for(kind: FindingKind, *, exchange_orders: bool, acknowledged: bool = False) -> tuple[FindingButton, ...]:
    """The buttons a finding of this kind offers (exchange orders only where the account allows them; an
    acknowledged finding offers to undo that instead)."""
    buttons = [b for b in KIND_BUTTONS[kind] if exchange_orders or b not in EXCHANGE_ORDER_BUTTONS]
    if acknowledged:
        buttons = [B.UNACKNOWLEDGE if b is B.ACKNOWLEDGE else b for b in buttons]
    return tuple(buttons)


def _remedies(finding: StoredFinding, buttons: tuple[FindingButton, ...], books: BookWrites) -> list[str]:
    """The trading bot's own command for each row a fix of this finding would have written, where it may not."""
    if books.writable or not ROW_FIX_BUTTONS & set(buttons):
        return []
    commands = (books.remedy(row.id) for row in finding.details.db_rows[:REMEDY_ROWS])
    return [command for command in commands if command]


def finding_keyboard(
    finding: StoredFinding, *, exchange_orders: bool, books: BookWrites = WRITABLE
) -> InlineKeyboardMarkup | None:
    """The buttons of a live finding's alert; none once it is resolved or fixed. Where the trading bot's table is
    read-only (``books``), its own remedy is a copy-text button in place of the fix."""
    if not finding.live:
        return None
    acknowledged = finding.state is FindingState.ACKNOWLEDGED
    offered = buttons_for(finding.kind, exchange_orders=exchange_orders, acknowledged=acknowledged)
    remedies = _remedies(finding, offered, books)
    buttons = offered if books.writable else tuple(b for b in offered if b not in DB_WRITE_BUTTONS)
    builder = InlineKeyboardBuilder()
    for command in remedies:
        builder.button(text=f"📋 {command}", copy_text=CopyTextButton(text=command))
    for button in buttons:
        builder.button(text=LABELS[button], callback_data=FindingAction(action=button, finding_id=finding.id))
    fixes = len(remedies) + sum(1 for b in buttons if b in FIX_BUTTONS[finding.kind])
    builder.adjust(*(n for n in (fixes, len(remedies) + len(buttons) - fixes) if n))
    return builder.as_markup()


DIGEST_NUMBERS_PER_ROW = 5


def digest_keyboard(digest_id: int, finding_ids: Sequence[int]) -> InlineKeyboardMarkup:
    """A number per listed finding (it comes back with its own buttons), then Show all and Snooze all."""
    builder = InlineKeyboardBuilder()
    for index, finding_id in enumerate(finding_ids, 1):
        builder.button(text=str(index), callback_data=FindingAction(action=B.SHOW, finding_id=finding_id))
    builder.button(text="Show all", callback_data=DigestAction(digest_id=digest_id, choice=DigestChoice.SHOW_ALL))
    builder.button(
        text="Snooze all 1h", callback_data=DigestAction(digest_id=digest_id, choice=DigestChoice.SNOOZE_ALL)
    )
    full, rest = divmod(len(finding_ids), DIGEST_NUMBERS_PER_ROW)
    builder.adjust(*([DIGEST_NUMBERS_PER_ROW] * full), *([rest] if rest else []), 2)
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
