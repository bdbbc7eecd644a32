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


class TableView(StrEnum):
    """What a findings table answers: /findings, /scan, /reconcile, or a digest's Show all."""

    FINDINGS = "f"
    SCAN = "s"
    RECONCILE = "r"
    DIGEST = "d"


Count = Annotated[int, Field(ge=0, le=10**9)]
Epoch = Annotated[int, Field(ge=0, le=2**40)]  # whole seconds since 1970
OptionalRowId = Annotated[int, Field(ge=0, le=2**63 - 1)]  # 0: none


class FindingsTable(CallbackData, prefix="t"):
    """◀ Prev / ⟳ Refresh / Next ▶ under a findings table: that page of that view, read from the store now.

    A check's answer carries the facts of its check that the store does not keep (when it ran, what it found,
    how many positions were too new, the first finding it filed), so a page turn keeps its heading true."""

    view: TableView
    page: PageNumber
    at: Epoch = 0
    found: Count = 0
    pending: Count = 0
    new_from: OptionalRowId = 0
    digest: OptionalRowId = 0


class OpenFinding(CallbackData, prefix="o"):
    """A table's or a reminder's number: that finding's card, with its own buttons."""

    finding_id: RowId
