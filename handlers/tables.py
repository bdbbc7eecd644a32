"""Findings tables: the one answer to /findings, /scan, /reconcile and a digest's Show all, its page and Refresh
buttons (the table edited in place from the store), and the numbers that open one finding's card. Looking,
which viewers may do."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from bot import answers
from bot.callbacks import FindingsTable, OpenFinding
from bot.context import BotContext
from bot.findings_table import CheckFacts
from bot.paging import table_keyboard
from bot.replies import edit_quietly
from bot.roles import Role
from bot.showing import show_finding
from bot.tables import render

LOOK = {"role": Role.VIEWER}


async def send_table(message: Message, ctx: BotContext, table: FindingsTable) -> None:
    """Answer in the message's chat (and topic) with the table's first page and its buttons."""
    page = await render(ctx, table)
    if isinstance(page, str):
        await message.answer(page)
        return
    await message.answer(page.text, reply_markup=table_keyboard(table, page))


async def show_in(message: Message, ctx: BotContext, table: FindingsTable, facts: CheckFacts) -> None:
    """Turn ``message`` (a "Checking…" just sent) into a check's table: one message for the whole answer."""
    page = await render(ctx, table, facts)
    assert not isinstance(page, str), "the first page of the live findings always exists"
    await edit_quietly(message.edit_text(page.text, reply_markup=table_keyboard(table, page)))


async def turn(query: CallbackQuery, callback_data: FindingsTable, ctx: BotContext) -> None:
    """Another page, or the same one refreshed, as the store holds it now; a page or digest that is not there
    (any more) is answered and the table stays as it is."""
    if not isinstance(query.message, Message):
        await query.answer(answers.STALE_BUTTON, show_alert=True)
        return
    page = await render(ctx, callback_data)
    if isinstance(page, str):
        await query.answer(page, show_alert=True)
        return
    await query.answer()
    await edit_quietly(query.message.edit_text(page.text, reply_markup=table_keyboard(callback_data, page)))


async def open_card(query: CallbackQuery, callback_data: OpenFinding, ctx: BotContext) -> None:
    """That finding's card with its own buttons, in the chat and topic the number was pressed in."""
    finding = await ctx.runtime.findings.get(callback_data.finding_id)
    if finding is None or not isinstance(query.message, Message):
        await query.answer(answers.FINDING_GONE, show_alert=True)
        return
    await query.answer()
    message = query.message
    thread = message.message_thread_id if message.is_topic_message else None
    await show_finding(message.bot, message.chat.id, finding, ctx, thread)  # type: ignore[arg-type]


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="tables")
    router.callback_query(FindingsTable.filter(), flags=LOOK)(turn)
    router.callback_query(OpenFinding.filter(), flags=LOOK)(open_card)
    return router
