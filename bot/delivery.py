"""Drains the outbox into Telegram: new alerts with their buttons, digests of many, edits when a finding
changes, reminders and notices. The loop, ordering and retries are the shared ``services.delivery.Deliverer``.

Sound follows risk: an alert rings only when its kind or the cause it tells is ``loud`` (a liquidation or ADL
by default; services.severity) or the finding grew (services.regrowth), and it is not info-level; digests ring
when they hold such an alert; reminders and notices arrive silently, except that nobody watching the accounts
rings. A muted chat still gets everything (``services.mutes``): what the mute covers arrives silently, critical
alerts ring unless ``telegram.mute_critical`` says silent, and the findings that arrived are noted for the
catch-up posted when the mute ends.

Within a chat's lane (``bot.flood``) alerts and notices go before command replies; edits of earlier alerts,
reminders and catch-ups wait in the background, so they never hold back what answers a button press."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramNotFound
from aiogram.types import InlineKeyboardMarkup

from bot import answers, finding_texts, texts
from bot.flood import Priority, sending_as
from bot.keyboards import ChatButtons
from bot.paging import open_keyboard
from bot.replies import edit_quietly
from services.announcements import AlertPolicy
from services.chat_address import split_address
from services.delivery import Deliverer, PermanentDeliveryError
from services.findings import FindingsStore, StoredFinding
from services.model import FindingState
from services.mutes import ChatMutes, Mute
from services.notices import Notice
from services.outbox import Channel, Outbox, OutboxItem, OutboxKind
from services.positions_config import WRITABLE, BookWrites
from services.settings import TelegramSettings
from services.severity import MutedCritical, Notify, Severity

log = logging.getLogger(__name__)

PERMANENT_ERRORS = ("chat not found", "bot was blocked", "user is deactivated", "bot was kicked")
BACKGROUND = frozenset({OutboxKind.UPDATE, OutboxKind.REMINDER, OutboxKind.CATCH_UP})


class TelegramDelivery(Deliverer):
    channel = Channel.TELEGRAM

    def __init__(
        self,
        bot: Bot,
        findings: FindingsStore,
        outbox: Outbox,
        *,
        exchange_orders: Mapping[str, bool],
        policy: AlertPolicy | None = None,
        mutes: ChatMutes | None = None,
        telegram: TelegramSettings | None = None,
        books: BookWrites = WRITABLE,
    ):
        super().__init__(findings, outbox)
        self.bot = bot
        self.buttons = ChatButtons(exchange_orders, telegram, books)
        self.policy = policy or AlertPolicy()
        self.mutes = mutes or ChatMutes(findings.pool)
        self.mute_critical = telegram.mute_critical if telegram is not None else MutedCritical.RING

    def _keyboard(self, finding: StoredFinding, chat_id: int) -> InlineKeyboardMarkup | None:
        """The buttons of this chat's copy: those its reader may press (bot.roles.reader_of)."""
        return self.buttons.finding(finding, chat_id)

    def rings(self, finding: StoredFinding) -> bool:
        """New risk rings: a loud kind or cause (a liquidation, whatever its kind), or any finding's growth beyond
        what a trader quietened, that is not info-level."""
        loud = self.policy.notify_for(finding) is Notify.LOUD or finding.details.growth is not None
        return loud and finding_texts.severity(finding) is not Severity.INFO

    def quieted(self, mute: Mute | None, severity: Severity) -> bool:
        """The mute decision: a mute quiets what its scope covers; a critical alert only when the setting says so.
        Nothing is ever held back: a quieted alert still arrives, silently."""
        if mute is None:
            return False
        if severity is Severity.CRITICAL:
            return self.mute_critical is MutedCritical.SILENT
        return mute.covers(severity)

    async def deliver(self, item: OutboxItem) -> None:
        """Deliver one item; a chat that can never receive it makes the error permanent."""
        try:
            with sending_as(Priority.DETAIL if item.kind in BACKGROUND else Priority.ALERT):
                await self._deliver(item)
        except (TelegramForbiddenError, TelegramNotFound) as exc:
            raise PermanentDeliveryError(str(exc)) from exc
        except TelegramBadRequest as exc:
            if any(reason in str(exc).lower() for reason in PERMANENT_ERRORS):
                raise PermanentDeliveryError(str(exc)) from exc
            raise

    async def _deliver(self, item: OutboxItem) -> None:
        chat_id, thread_id = split_address(item.destination)
        if item.kind is OutboxKind.UPDATE:
            finding = await self._finding(item)
            if finding is not None:
                await self.refresh(chat_id, finding)
            return
        if item.kind is OutboxKind.CONFIRMATION:
            await self.settle_question(chat_id, item.body)
            return
        if item.kind is OutboxKind.NOTICE:
            notice = Notice.from_body(item.body)
            silent = not notice.loud or self.quieted(await self.mutes.current(chat_id), Severity.CRITICAL)
            for chunk in texts.split_message(texts.notice_message(notice)):
                await self.bot.send_message(chat_id, chunk, message_thread_id=thread_id, disable_notification=silent)
        elif item.kind is OutboxKind.ALERT:
            finding = await self._finding(item)
            if finding is not None:  # one fixed before it went out still says what happened, quietly
                mute = await self.mutes.note_arrival(chat_id, item.destination, [finding.id])
                rings = finding.live and self.rings(finding)
                silent = not rings or self.quieted(mute, finding_texts.severity(finding))
                await self.send_finding(chat_id, finding, thread_id=thread_id, silent=silent)
        elif item.kind is OutboxKind.DIGEST:
            await self.send_digest(item, chat_id, thread_id)
        elif item.kind is OutboxKind.CATCH_UP:
            await self.send_catch_up(chat_id, thread_id, item)
        elif item.kind is OutboxKind.REMINDER:
            await self.send_reminder(chat_id, thread_id, item)
        else:
            log.warning("outbox item %s has an unknown kind %r; dropped", item.id, item.kind)

    async def _finding(self, item: OutboxItem) -> StoredFinding | None:
        finding = await self.findings.get(item.finding_id) if item.finding_id is not None else None
        if finding is None:
            log.warning("outbox item %s names an unknown finding %s; dropped", item.id, item.finding_id)
        return finding

    async def send_finding(
        self, chat_id: int, finding: StoredFinding, *, thread_id: int | None = None, silent: bool = True
    ) -> int:
        """Send a finding's message with its buttons and remember it, so later changes edit it; returns the id
        of the message that carries the buttons."""
        chunks = texts.split_message(finding_texts.finding_message(finding))
        message_id = 0
        for index, chunk in enumerate(chunks):
            markup = self._keyboard(finding, chat_id) if index == len(chunks) - 1 else None
            message = await self.bot.send_message(
                chat_id, chunk, reply_markup=markup, message_thread_id=thread_id, disable_notification=silent
            )
            message_id = message.message_id
            await self.findings.record_alert_message(chat_id, message_id, finding.id)
        return message_id

    async def send_digest(self, item: OutboxItem, chat_id: int, thread_id: int | None) -> None:
        """One message for many new findings, biggest first; it rings when one of them would have, and a mute
        would not quiet it."""
        ids = item.body.get("finding_ids", [])
        listed = [f for f in [await self.findings.get(i) for i in ids] if f is not None and f.live]
        if not listed:
            return
        mute = await self.mutes.note_arrival(chat_id, item.destination, [f.id for f in listed])
        text = finding_texts.digest_message(listed)
        markup = self.buttons.digest(int(item.body["digest_id"]), [f.id for f in listed], chat_id)
        silent = not any(self.rings(f) and not self.quieted(mute, finding_texts.severity(f)) for f in listed)
        await self.bot.send_message(
            chat_id, text, reply_markup=markup, message_thread_id=thread_id, disable_notification=silent
        )

    async def send_reminder(self, chat_id: int, thread_id: int | None, item: OutboxItem) -> None:
        """One silent message listing what is still open, a number to open each one's card; findings handled
        meanwhile are left out."""
        ids = item.body.get("finding_ids") or ([item.finding_id] if item.finding_id is not None else [])
        still = [f for f in [await self.findings.get(i) for i in ids] if f and f.state is FindingState.OPEN]
        if not still:
            return
        chunks = texts.split_message(finding_texts.reminder_message(still))
        for index, chunk in enumerate(chunks):
            markup = open_keyboard([f.id for f in still]) if index == len(chunks) - 1 else None
            await self.bot.send_message(
                chat_id, chunk, reply_markup=markup, message_thread_id=thread_id, disable_notification=True
            )

    async def send_catch_up(self, chat_id: int, thread_id: int | None, item: OutboxItem) -> None:
        """After a mute: one silent message listing what arrived meanwhile, as it stands now."""
        listed = [f for f in [await self.findings.get(int(i)) for i in item.body.get("finding_ids", [])] if f]
        if not listed:
            return
        since = datetime.fromisoformat(item.body["since"])
        for chunk in texts.split_message(finding_texts.catch_up_message(listed, since)):
            await self.bot.send_message(chat_id, chunk, message_thread_id=thread_id, disable_notification=True)

    async def settle_question(self, chat_id: int, body: Mapping[str, Any]) -> None:
        """A confirmation whose process stopped mid-fix: its question with what the re-read found, in place of
        Confirm / Cancel (an edit without a keyboard removes them)."""
        text = answers.question_and_result(body["question"], answers.interrupted_result(body["reason"]))
        await edit_quietly(self.bot.edit_message_text(text=text, chat_id=chat_id, message_id=int(body["message_id"])))

    async def refresh(self, chat_id: int, finding: StoredFinding) -> None:
        """Edit every message showing this finding in this chat to its current state."""
        text = texts.split_message(finding_texts.finding_message(finding))[-1]
        for message_id in await self.findings.alert_messages(finding.id, chat_id):
            await edit_quietly(
                self.bot.edit_message_text(
                    text=text, chat_id=chat_id, message_id=message_id, reply_markup=self._keyboard(finding, chat_id)
                )
            )
