"""/scan and /reconcile: check now and answer with one message, what this check found and what is still open,
as a findings table ("Checking…" becomes the answer). New findings also reach the alert chats as alerts."""

from __future__ import annotations

from datetime import datetime

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import answers
from bot.callbacks import TableView
from bot.commands import role_flag
from bot.context import BotContext
from bot.findings_table import CheckFacts
from bot.tables import CHECK_TITLES, table_for
from handlers.tables import show_in
from services.findings import FiledCheck
from services.model import RECONCILIATION, SCAN_KINDS, FindingKind


def facts_of(filed: FiledCheck, kinds: frozenset[FindingKind], view: TableView, now: datetime) -> CheckFacts:
    """What this check saw, for its answer's heading: what it found of its kinds, and which was new."""
    result = filed.result
    return CheckFacts(
        title=CHECK_TITLES[view],
        at=result.started_at or now,
        accounts=len(result.accounts),
        found=sum(1 for f in filed.live if f.kind in kinds),
        pending=len(result.pending),
        unchecked=tuple((a.account, a.error or "") for a in result.unchecked),
        new_from=min((f.id for f in filed.new), default=0),
    )


async def _check(message: Message, ctx: BotContext, kinds: frozenset[FindingKind], view: TableView) -> None:
    checking = await message.answer(answers.checking(len(ctx.settings.accounts)))
    filed = await ctx.reconciler.check(kinds)
    facts = facts_of(filed, kinds, view, ctx.runtime.monitor.now())
    await show_in(checking, ctx, table_for(view, facts), facts)


async def scan(message: Message, ctx: BotContext) -> None:
    await _check(message, ctx, SCAN_KINDS, TableView.SCAN)


async def reconcile(message: Message, ctx: BotContext) -> None:
    await _check(message, ctx, RECONCILIATION, TableView.RECONCILE)


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="checks")
    router.message(Command("scan"), flags=role_flag("scan"))(scan)
    router.message(Command("reconcile"), flags=role_flag("reconcile"))(reconcile)
    return router
