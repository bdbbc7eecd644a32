"""The buttons on a digest: Show all (anyone allowed to look) sends each listed finding with its own buttons,
behind any operator's answer in the chat; Snooze all (operators) snoozes those still open."""

from __future__ import annotations

from datetime import timedelta

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot import answers
from bot.callbacks import DigestAction, DigestChoice
from bot.context import BotContext
from bot.flood import in_background
from bot.roles import Role, name_of, record_of
from bot.showing import show_finding
from services.model import FindingState


async def show_all(query: CallbackQuery, callback_data: DigestAction, ctx: BotContext) -> None:
    live = [f for f in await ctx.runtime.findings.digest(callback_data.digest_id) if f.live]
    if not live:
        await query.answer(answers.DIGEST_GONE, show_alert=True)
        return
    await query.answer(answers.showing(len(live)))
    if isinstance(query.message, Message):
        with in_background():
            for finding in live:
                await show_finding(query.message.bot, query.message.chat.id, finding, ctx)  # type: ignore[arg-type]


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
