"""Drains the outbox into Telegram: new alerts with their buttons, edits when a finding changes, reminders
and notices. The loop, ordering and retries are the shared ``services.delivery.Deliverer``."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramNotFound
from aiogram.types import InlineKeyboardMarkup

from bot import texts
from bot.flood import urgent
from bot.keyboards import finding_keyboard
from bot.replies import edit_quietly
from services.delivery import Deliverer, PermanentDeliveryError
from services.findings import FindingsStore, StoredFinding
from services.model import FindingState
from services.notices import Notice
from services.outbox import Channel, Outbox, OutboxItem, OutboxKind

log = logging.getLogger(__name__)

PERMANENT_ERRORS = ("chat not found", "bot was blocked", "user is deactivated", "bot was kicked")


class TelegramDelivery(Deliverer):
    channel = Channel.TELEGRAM

    def __init__(self, bot: Bot, findings: FindingsStore, outbox: Outbox, *, exchange_orders: dict[str, bool]):
        super().__init__(findings, outbox)
        self.bot = bot
        self.exchange_orders = exchange_orders

    def _keyboard(self, finding: StoredFinding) -> InlineKeyboardMarkup | None:
        return finding_keyboard(finding, exchange_orders=self.exchange_orders.get(finding.account, False))

    async def deliver(self, item: OutboxItem) -> None:
        """Deliver one item; a chat that can never receive it makes the error permanent."""
        try:
            with urgent():
                await self._deliver(item)
        except (TelegramForbiddenError, TelegramNotFound) as exc:
            raise PermanentDeliveryError(str(exc)) from exc
        except TelegramBadRequest as exc:
            if any(reason in str(exc).lower() for reason in PERMANENT_ERRORS):
                raise PermanentDeliveryError(str(exc)) from exc
            raise

    async def _deliver(self, item: OutboxItem) -> None:
        chat_id = int(item.destination)
        if item.kind is OutboxKind.NOTICE:
            for chunk in texts.split_message(texts.notice_message(Notice.from_body(item.body))):
                await self.bot.send_message(chat_id, chunk)
            return
        finding = await self.findings.get(item.finding_id) if item.finding_id is not None else None
        if finding is None:
            log.warning("outbox item %s names an unknown finding %s; dropped", item.id, item.finding_id)
            return
        if item.kind is OutboxKind.ALERT:
            await self.send_finding(chat_id, finding)
        elif item.kind is OutboxKind.REMINDER:
            if finding.state is FindingState.OPEN:
                await self.send_finding(chat_id, finding, prefix="⏰ <b>Still open</b>")
        elif item.kind is OutboxKind.UPDATE:
            await self.refresh(chat_id, finding)
        else:
            log.warning("outbox item %s has an unknown kind %r; dropped", item.id, item.kind)

    async def send_finding(self, chat_id: int, finding: StoredFinding, *, prefix: str | None = None) -> int:
        """Send a finding's message with its buttons and remember it, so later changes edit it; returns the id
        of the message that carries the buttons."""
        text = texts.finding_message(finding)
        if prefix:
            text = f"{prefix}\n{text}"
        chunks = texts.split_message(text)
        message_id = 0
        for index, chunk in enumerate(chunks):
            markup = self._keyboard(finding) if index == len(chunks) - 1 else None
            message = await self.bot.send_message(chat_id, chunk, reply_markup=markup)
            message_id = message.message_id
            await self.findings.record_alert_message(chat_id, message_id, finding.id)
        return message_id

    async def refresh(self, chat_id: int, finding: StoredFinding) -> None:
        """Edit every message announcing this finding in this chat to its current state."""
        text = texts.split_message(texts.finding_message(finding))[-1]
        for message_id in await self.findings.alert_messages(finding.id, chat_id):
            await edit_quietly(
                self.bot.edit_message_text(
                    text=text, chat_id=chat_id, message_id=message_id, reply_markup=self._keyboard(finding)
                )
            )
