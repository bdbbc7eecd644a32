"""Inline keyboards for alerts and confirmations, built with aiogram's InlineKeyboardBuilder.

``KIND_BUTTONS`` (built from ``FIX_BUTTONS``) is the one table of which buttons each kind of finding has:
keyboards draw it and the handlers accept exactly these presses, so the two can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram.types import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ConfirmAction, ConfirmChoice, DigestAction, DigestChoice, FindingAction, FindingButton
from bot.roles import Role, reader_of, role_of
from bot.texts import span
from services.findings import StoredFinding
from services.model import FindingKind, FindingState
from services.protection import short_order_id
from services.settings import Settings, TelegramSettings

B = FindingButton
SNOOZE = timedelta(hours=1)  # telegram.snooze_s's default
LABELS = {
    B.ADOPT: "Adopt into DB",
    B.CLOSE_ON_EXCHANGE: "Close on exchange",
    B.SNOOZE: "Snooze",  # with the configured length: label()
    B.DETAILS: "Details",
    B.HIDE_DETAILS: "Hide details",
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
VIEWER_BUTTONS = frozenset({B.DETAILS, B.HIDE_DETAILS, B.SHOW})  # what anyone allowed to look may press
# Red for what sends an order to the exchange, green for taking a position into the books (Bot API styles).
STYLES = {B.CLOSE_ON_EXCHANGE: "danger", B.CANCEL_ORDER: "danger", B.ADOPT: "success"}
COPY_ORDERS = 3  # at most this many order ids get a copy button
CLOSEGHOST_ARGUMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what /closeghost takes (handlers.fixes)


def label(button: FindingButton, snooze: timedelta = SNOOZE) -> str:
    """A button's words; Snooze says for how long (``Snooze 30m``)."""
    return f"{LABELS[button]} {span(snooze)}" if button is B.SNOOZE else LABELS[button]


def buttons_for(
    kind: FindingKind, *, exchange_orders: bool, acknowledged: bool = False, reader: Role = Role.OPERATOR
) -> tuple[FindingButton, ...]:
    """The buttons a finding of this kind offers (exchange orders only where the account allows them; an
    acknowledged finding offers to undo that instead), of those the chat's reader may press (bot.roles.reader_of):
    a viewer's copy has only what a viewer may do, a stranger's none."""
    buttons = [b for b in KIND_BUTTONS[kind] if exchange_orders or b not in EXCHANGE_ORDER_BUTTONS]
    if acknowledged:
        buttons = [B.UNACKNOWLEDGE if b is B.ACKNOWLEDGE else b for b in buttons]
    if reader < Role.OPERATOR:
        buttons = [b for b in buttons if reader is Role.VIEWER and b in VIEWER_BUTTONS]
    return tuple(buttons)


def finding_keyboard(
    finding: StoredFinding,
    *,
    exchange_orders: bool,
    snooze: timedelta = SNOOZE,
    reader: Role = Role.OPERATOR,
    details: bool = False,
) -> InlineKeyboardMarkup | None:
    """The buttons of a live finding's alert in a chat read by ``reader``; none once it is resolved or fixed. An
    alert showing its details offers to hide them in place of Details."""
    if not finding.live:
        return None
    acknowledged = finding.state is FindingState.ACKNOWLEDGED
    buttons = buttons_for(finding.kind, exchange_orders=exchange_orders, acknowledged=acknowledged, reader=reader)
    if details:
        buttons = tuple(B.HIDE_DETAILS if b is B.DETAILS else b for b in buttons)
    if not buttons:
        return None
    builder = InlineKeyboardBuilder()
    for button in buttons:
        builder.button(
            text=label(button, snooze),
            callback_data=FindingAction(action=button, finding_id=finding.id),
            style=STYLES.get(button),
        )
    fixes = sum(1 for b in buttons if b in FIX_BUTTONS[finding.kind])
    builder.adjust(*(n for n in (fixes, len(buttons) - fixes) if n))
    if details:
        builder.row(*copy_buttons(finding, reader))
    return builder.as_markup()


def copy_buttons(finding: StoredFinding, reader: Role) -> list[InlineKeyboardButton]:
    """Under opened details: a copy button for each order id the finding names (its stray orders, the venue's
    order that closed it), and for an operator the bot command that closes a ghost's row."""
    d = finding.details
    ids = [order.order_id for order in d.orders] + ([d.cause.order_id] if d.cause and d.cause.order_id else [])
    buttons = [
        InlineKeyboardButton(text=f"Copy order #{short_order_id(i)}", copy_text=CopyTextButton(text=i))
        for i in list(dict.fromkeys(ids))[:COPY_ORDERS]
        if 1 <= len(i) <= 256
    ]
    rows = d.db_position_ids
    ghost = finding.kind is FindingKind.GHOST and finding.live and len(rows) == 1
    if reader is Role.OPERATOR and ghost and CLOSEGHOST_ARGUMENT.match(rows[0]):
        command = f"/closeghost {rows[0]}"
        buttons.append(InlineKeyboardButton(text=f"Copy {command}", copy_text=CopyTextButton(text=command)))
    return buttons


def details_view_keyboard(finding: StoredFinding, reader: Role) -> InlineKeyboardMarkup:
    """The keyboard of details shown to one reader alone (an ephemeral message in a group): the copy buttons,
    and Hide details."""
    hide = InlineKeyboardButton(
        text=LABELS[B.HIDE_DETAILS], callback_data=FindingAction(action=B.HIDE_DETAILS, finding_id=finding.id).pack()
    )
    copies = copy_buttons(finding, reader)
    return InlineKeyboardMarkup(inline_keyboard=[*([copies] if copies else []), [hide]])


DIGEST_NUMBERS_PER_ROW = 5


def digest_keyboard(
    digest_id: int, finding_ids: Sequence[int], *, snooze: timedelta = SNOOZE, reader: Role = Role.OPERATOR
) -> InlineKeyboardMarkup:
    """A number per listed finding (it comes back with its own buttons), then Show all and, for an operator's
    copy, Snooze all."""
    builder = InlineKeyboardBuilder()
    for index, finding_id in enumerate(finding_ids, 1):
        builder.button(text=str(index), callback_data=FindingAction(action=B.SHOW, finding_id=finding_id))
    builder.button(text="Show all", callback_data=DigestAction(digest_id=digest_id, choice=DigestChoice.SHOW_ALL))
    if reader is Role.OPERATOR:
        builder.button(
            text=f"Snooze all {span(snooze)}",
            callback_data=DigestAction(digest_id=digest_id, choice=DigestChoice.SNOOZE_ALL),
        )
    full, rest = divmod(len(finding_ids), DIGEST_NUMBERS_PER_ROW)
    builder.adjust(*([DIGEST_NUMBERS_PER_ROW] * full), *([rest] if rest else []), 2)
    return builder.as_markup()


@dataclass(frozen=True)
class ChatButtons:
    """The keyboards of one chat's copies: by which accounts allow exchange orders, the configured snooze, and
    who reads the chat (bot.roles.reader_of). Without ``telegram`` every chat gets an operator's buttons."""

    exchange_orders: Mapping[str, bool] = field(default_factory=dict)
    telegram: TelegramSettings | None = None

    @classmethod
    def of(cls, settings: Settings) -> ChatButtons:
        return cls({a.name: a.allow_exchange_orders for a in settings.accounts}, settings.telegram)

    @property
    def snooze(self) -> timedelta:
        return timedelta(seconds=self.telegram.snooze_s) if self.telegram is not None else SNOOZE

    def reader(self, chat_id: int) -> Role:
        return reader_of(chat_id, self.telegram) if self.telegram is not None else Role.OPERATOR

    def finding(self, finding: StoredFinding, chat_id: int, *, details: bool = False) -> InlineKeyboardMarkup | None:
        orders = self.exchange_orders.get(finding.account, False)
        reader = self.reader(chat_id)
        return finding_keyboard(finding, exchange_orders=orders, snooze=self.snooze, reader=reader, details=details)

    def details_view(self, finding: StoredFinding, user_id: int) -> InlineKeyboardMarkup:
        """The keyboard of details shown to this user alone."""
        reader = role_of(user_id, self.telegram) if self.telegram is not None else Role.OPERATOR
        return details_view_keyboard(finding, reader)

    def digest(self, digest_id: int, finding_ids: Sequence[int], chat_id: int) -> InlineKeyboardMarkup:
        return digest_keyboard(digest_id, finding_ids, snooze=self.snooze, reader=self.reader(chat_id))


def confirm_keyboard(confirmation_id: int) -> InlineKeyboardMarkup:
    """Confirm (red: it changes the books or the exchange) and Cancel."""
    builder = InlineKeyboardBuilder()
    builder.button(
        text="Confirm",
        callback_data=ConfirmAction(confirmation_id=confirmation_id, choice=ConfirmChoice.CONFIRM),
        style="danger",
    )
    builder.button(
        text="Cancel", callback_data=ConfirmAction(confirmation_id=confirmation_id, choice=ConfirmChoice.CANCEL)
    )
    return builder.as_markup()
