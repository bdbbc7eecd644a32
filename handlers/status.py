"""/status, /positions (and its page buttons) and /findings (a findings table): looking, which viewers may do."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot import answers
from bot.callbacks import PositionsPage, TableView
from bot.commands import role_flag
from bot.context import BotContext
from bot.paging import page_keyboard
from bot.replies import answer_long, edit_quietly
from bot.tables import table_for
from handlers.tables import send_table


async def status(message: Message, ctx: BotContext) -> None:
    checks = await ctx.runtime.findings.account_checks()
    live = await ctx.runtime.findings.live()
    shards = await ctx.shards() if ctx.shards is not None else None
    await answer_long(message, answers.status_message(ctx.settings.accounts, checks, live, ctx.next_runs(), shards))


async def positions(message: Message, command: CommandObject, ctx: BotContext) -> None:
    names = [a.name for a in ctx.settings.accounts]
    wanted = (command.args or "").split()
    if len(wanted) > 1 or (wanted and wanted[0] not in names):
        await message.answer(answers.positions_usage(names))
        return
    snapshots = await ctx.runtime.monitor.reader.read_shared(wanted or names)
    for name, snapshot in snapshots.items():
        pages = answers.positions_pages(snapshot)
        await message.answer(pages[0], reply_markup=page_keyboard(names.index(name), 0, len(pages)))


async def turn_page(query: CallbackQuery, callback_data: PositionsPage, ctx: BotContext) -> None:
    """Show another page of a /positions table in place, from a fresh read; a page or account that is not
    there (any more) is answered and the table stays as it is."""
    accounts = ctx.settings.accounts
    if not isinstance(query.message, Message):
        await query.answer(answers.STALE_BUTTON, show_alert=True)
        return
    if callback_data.account >= len(accounts):
        await query.answer(answers.NO_SUCH_ACCOUNT, show_alert=True)
        return
    account = accounts[callback_data.account]
    snapshot = (await ctx.runtime.monitor.reader.read_shared([account.name]))[account.name]
    if not snapshot.checked:
        await query.answer(answers.not_read(account.name, snapshot.error), show_alert=True)
        return
    pages = answers.positions_pages(snapshot)
    if callback_data.page >= len(pages):
        await query.answer(answers.no_such_page(callback_data.page, len(pages)), show_alert=True)
        return
    await query.answer()
    keyboard = page_keyboard(callback_data.account, callback_data.page, len(pages))
    await edit_quietly(query.message.edit_text(pages[callback_data.page], reply_markup=keyboard))


async def findings(message: Message, ctx: BotContext) -> None:
    """Every live finding in one table, biggest first: never a card each (those are a tap away)."""
    await send_table(message, ctx, table_for(TableView.FINDINGS))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="status")
    router.message(Command("status"), flags=role_flag("status"))(status)
    router.message(Command("positions"), flags=role_flag("positions"))(positions)
    router.message(Command("findings"), flags=role_flag("findings"))(findings)
    router.callback_query(PositionsPage.filter(), flags=role_flag("positions"))(turn_page)
    return router
