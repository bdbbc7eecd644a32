"""Showing a finding with its buttons anywhere (a reply to /findings, /scan, /reconcile, a digest's number):
the message is tracked like an alert, so when the finding is fixed or resolved every copy is edited. Its buttons
are those the chat's reader may press (a viewer's private copy has no operator buttons)."""

from __future__ import annotations

from aiogram import Bot

from bot import finding_texts
from bot.context import BotContext
from bot.texts import split_message
from services.findings import StoredFinding


async def show_finding(bot: Bot, chat_id: int, finding: StoredFinding, ctx: BotContext) -> None:
    """Send the finding (its buttons on the last part) and remember the message for later edits."""
    chunks = split_message(finding_texts.finding_message(finding))
    keyboard = ctx.buttons.finding(finding, chat_id)
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        sent = await bot.send_message(chat_id, chunk, reply_markup=keyboard if last else None)
        if last and keyboard is not None:
            await ctx.runtime.findings.record_alert_message(chat_id, sent.message_id, finding.id)
