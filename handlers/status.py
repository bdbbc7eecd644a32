"""/status, /positions and /findings: looking, which viewers may do."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import answers, texts
from bot.commands import role_flag
from bot.context import BotContext
from bot.keyboards import finding_keyboard
from bot.replies import answer_long


async def status(message: Message, ctx: BotContext) -> None:
    checks = await ctx.runtime.findings.account_checks()
    live = await ctx.runtime.findings.live()
    await answer_long(message, answers.status_message(ctx.settings.accounts, checks, live, ctx.next_runs()))


async def positions(message: Message, command: CommandObject, ctx: BotContext) -> None:
    names = [a.name for a in ctx.settings.accounts]
    wanted = (command.args or "").split()
    if len(wanted) > 1 or (wanted and wanted[0] not in names):
        await message.answer(answers.positions_usage(names))
        return
    snapshots = await ctx.runtime.monitor.reader.read_shared(wanted or names)
    for snapshot in snapshots.values():
        for block in answers.positions_messages(snapshot):
            await message.answer(block)


async def findings(message: Message, ctx: BotContext) -> None:
    live = await ctx.runtime.findings.live()
    if not live:
        await message.answer(answers.NO_FINDINGS)
        return
    await message.answer(answers.findings_count(len(live)))
    for finding in live:
        keyboard = finding_keyboard(finding, exchange_orders=ctx.exchange_orders_allowed(finding.account))
        await answer_long(message, texts.finding_message(finding), keyboard)


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="status")
    router.message(Command("status"), flags=role_flag("status"))(status)
    router.message(Command("positions"), flags=role_flag("positions"))(positions)
    router.message(Command("findings"), flags=role_flag("findings"))(findings)
    return router
