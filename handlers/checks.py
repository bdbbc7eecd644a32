"""/scan and /reconcile: check now and answer with what was found, or all clear."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import answers, texts
from bot.commands import role_flag
from bot.context import BotContext
from bot.replies import answer_long
from bot.showing import show_finding
from services.announcements import biggest_first
from services.model import RECONCILIATION, SCAN_KINDS, FindingKind


async def _check(message: Message, ctx: BotContext, kinds: frozenset[FindingKind], title: str) -> None:
    await message.answer(answers.checking(len(ctx.settings.accounts)))
    filed = await ctx.reconciler.check(kinds)
    found = [f for f in filed.live if f.kind in kinds]
    await answer_long(message, texts.check_summary(filed.result, title, found))
    alerted_here = message.chat.id in ctx.settings.telegram.alert_chats
    alerted_ids = {f.id for f in (*filed.new, *filed.grown)}
    for finding in biggest_first(found):
        if alerted_here and finding.id in alerted_ids:
            continue  # this chat receives it as an alert (or in a digest) from the outbox
        await show_finding(message.bot, message.chat.id, finding, ctx)  # type: ignore[arg-type]


async def scan(message: Message, ctx: BotContext) -> None:
    await _check(message, ctx, SCAN_KINDS, answers.SCAN_TITLE)


async def reconcile(message: Message, ctx: BotContext) -> None:
    await _check(message, ctx, RECONCILIATION, answers.RECONCILE_TITLE)


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="checks")
    router.message(Command("scan"), flags=role_flag("scan"))(scan)
    router.message(Command("reconcile"), flags=role_flag("reconcile"))(reconcile)
    return router
