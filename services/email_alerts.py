"""Alerts by e-mail over SMTP (STARTTLS by default), drained from the outbox like every channel."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from services import plain_text
from services.delivery import Deliverer, PermanentDeliveryError
from services.findings import FindingsStore
from services.model import FindingState
from services.notices import Notice
from services.outbox import Channel, Outbox, OutboxItem, OutboxKind
from services.settings import EmailSettings

PREFIXES = {OutboxKind.ALERT: "", OutboxKind.REMINDER: "Still open:", OutboxKind.UPDATE: "Update:"}
STATE_PREFIXES = {FindingState.RESOLVED: "Resolved:", FindingState.FIXED: "Fixed:"}


class EmailDelivery(Deliverer):
    channel = Channel.EMAIL

    def __init__(self, findings: FindingsStore, outbox: Outbox, settings: EmailSettings):
        super().__init__(findings, outbox)
        self.settings = settings

    async def compose(self, item: OutboxItem) -> EmailMessage | None:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = item.destination
        if item.kind is OutboxKind.NOTICE:
            text = plain_text.notice_text(Notice.from_body(item.body))
            message["Subject"] = f"[reconbot] {text.splitlines()[0][:120] if text else 'notice'}"
            message.set_content(text)
            return message
        if item.kind in (OutboxKind.DIGEST, OutboxKind.REMINDER) and item.finding_id is None:
            return await self._compose_list(message, item)
        finding = await self.findings.get(item.finding_id) if item.finding_id is not None else None
        if finding is None:
            return None
        if item.kind is OutboxKind.REMINDER and finding.state is not FindingState.OPEN:
            return None
        prefix = PREFIXES.get(item.kind, "")
        if item.kind is OutboxKind.ALERT and finding.details.growth is not None:
            prefix = "Grew:"
        if item.kind is OutboxKind.UPDATE:
            prefix = STATE_PREFIXES.get(finding.state, "Update:")
        message["Subject"] = plain_text.subject(finding, prefix)
        message.set_content(plain_text.finding_text(finding))
        return message

    async def _compose_list(self, message: EmailMessage, item: OutboxItem) -> EmailMessage | None:
        """A digest of new findings or a reminder of open ones: one e-mail listing them, biggest first."""
        found = [await self.findings.get(i) for i in item.body.get("finding_ids", [])]
        wanted = FindingState.OPEN if item.kind is OutboxKind.REMINDER else None
        listed = [f for f in found if f is not None and f.live and (wanted is None or f.state is wanted)]
        if not listed:
            return None
        head = "Still open" if item.kind is OutboxKind.REMINDER else "New findings"
        message["Subject"] = f"[reconbot] {head}: {plain_text.counts(listed)}"
        message.set_content("\n\n".join(plain_text.finding_text(f) for f in listed))
        return message

    async def deliver(self, item: OutboxItem) -> None:
        message = await self.compose(item)
        if message is not None:
            await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        settings = self.settings
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
                if settings.starttls:
                    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
                    smtp.starttls(context=context)
                if settings.username and settings.password:
                    smtp.login(settings.username, settings.password.get_secret_value())
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentDeliveryError(f"recipient refused: {exc.recipients}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise RuntimeError(f"SMTP authentication failed ({exc.smtp_code})") from None
