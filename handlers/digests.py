"""The buttons on a digest: Show all (anyone allowed to look) answers with one table of the findings it lists
that are still open, behind any operator's answer in the chat; Snooze all (operators) snoozes those still
open."""

from __future__ import annotations

from datetime import timedelta

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot import answers
from bot.callbacks import DigestAction, DigestChoice, TableView
from bot.context import BotContext
from bot.flood import in_background
from bot.roles import Role, name_of, record_of
from bot.tables import table_for
from handlers.tables import send_table
from services.model import FindingState


async def show_all(query: CallbackQuery, callback_data: DigestAction, ctx: BotContext) -> None:
    """The digest's findings still open as one table (each a tap away), never a card each."""
    live = [f for f in await ctx.runtime.findings.digest(callback_data.digest_id) if f.live]
    if not live or not isinstance(query.message, Message):
        await query.answer(answers.DIGEST_GONE, show_alert=True)
        return
    await query.answer()
    with in_background():
        await send_table(query.message, ctx, table_for(TableView.DIGEST, digest_id=callback_data.digest_id))


async def snooze_all(query: CallbackQuery, callback_data: DigestAction, ctx: BotContext) -> None:
    by, actor = name_of(query.from_user), f"telegram {record_of(query.from_user)}"
    length = timedelta(seconds=ctx.settings.telegram.snooze_s)
    until = ctx.runtime.monitor.now() + length
    snoozed = 0
    for finding in await ctx.runtime.findings.digest(callback_data.digest_id):
        if finding.state is FindingState.OPEN:
            updated = await ctx.runtime.findings.set_state(
                finding.id,
                FindingState.SNOOZED,
                by=by,
                destinations=ctx.destinations,
                snoozed_until=until,
                actor=actor,
            )
            snoozed += updated is not None
    ctx.reconciler.wake()
    await query.answer(answers.snoozed_many(snoozed, until, length))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="digests")
    router.callback_query(DigestAction.filter(F.choice == DigestChoice.SHOW_ALL), flags={"role": Role.VIEWER})(show_all)
    router.callback_query(DigestAction.filter(F.choice == DigestChoice.SNOOZE_ALL), flags={"role": Role.OPERATOR})(
        snooze_all
    )
    return router
