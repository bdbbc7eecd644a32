"""Callback data for inline buttons: ids only, well under Telegram's 64 bytes; aiogram packs and parses them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

# Ids are PostgreSQL bigserials: a press naming anything outside 1 … 2⁶³−1 is forged and matches no handler.
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class FindingButton(StrEnum):
    ADOPT = "adopt"
    CLOSE_ON_EXCHANGE = "xclose"
    SNOOZE = "snooze"
    DETAILS = "details"
    HIDE_DETAILS = "hide"  # on an alert showing its details: back to the alert alone
    MARK_CLOSED = "markclosed"
    SET_SIZE = "setsize"
    CANCEL_ORDER = "xcancel"
    ACKNOWLEDGE = "ack"
    UNACKNOWLEDGE = "unack"
    SHOW = "show"  # a digest's number: the finding with its own buttons
    KEEP = "keep"  # on alerts sent before Acknowledge replaced Keep and Ignore: acknowledges
    IGNORE = "ignore"


LEGACY_ACKNOWLEDGE = frozenset({FindingButton.KEEP, FindingButton.IGNORE})


class FindingAction(CallbackData, prefix="f"):
    """A button on an alert: what to do with which finding."""

    action: FindingButton
    finding_id: RowId


class ConfirmChoice(StrEnum):
    CONFIRM = "y"
    CANCEL = "n"


class ConfirmAction(CallbackData, prefix="c"):
    """Confirm or Cancel on a confirmation message."""

    confirmation_id: RowId
    choice: ConfirmChoice


class DigestChoice(StrEnum):
    SHOW_ALL = "all"
    SNOOZE_ALL = "snooze"


class DigestAction(CallbackData, prefix="d"):
    """A button on a digest: show every finding it lists, or snooze them all."""

    digest_id: RowId
    choice: DigestChoice


# An account is named by its place in ``settings.accounts`` (a name may take 64 bytes by itself); pages count
# from 0. Anything negative or absurd is forged and matches no handler.
AccountIndex = Annotated[int, Field(ge=0, le=9999)]
PageNumber = Annotated[int, Field(ge=0, le=9999)]


class PositionsPage(CallbackData, prefix="p"):
    """◀ Prev / Next ▶ under a /positions table: show this page of this account."""

    account: AccountIndex
    page: PageNumber
