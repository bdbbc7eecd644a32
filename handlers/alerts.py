"""The buttons on alerts. Details is for anyone allowed to look; the rest needs an operator. Fixes ask for
confirmation first; Snooze, Keep and Ignore only change reconbot's own alert state."""

from __future__ import annotations

from datetime import timedelta

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot import answers, texts
from bot.callbacks import FindingAction, FindingButton
from bot.context import BotContext
from bot.keyboards import EXCHANGE_ORDER_BUTTONS, buttons_for, finding_keyboard
from bot.replies import edit_quietly
from bot.roles import Role, actor_name
from handlers.fixes import ask_confirmation
from services.findings import StoredFinding
from services.fixes import plan_for_finding
from services.model import FindingState
from services.outbox import Channel
from services.plans import FixAction


async def _finding_for(query: CallbackQuery, data: FindingAction, ctx: BotContext) -> StoredFinding | None:
    """The finding a button names, if the press still makes sense; otherwise answer why not."""
    finding = await ctx.runtime.findings.get(data.finding_id)
    offered = buttons_for(finding.kind, exchange_orders=True) if finding is not None else ()
    if finding is None or data.action not in offered:
        await query.answer(answers.NOT_A_BUTTON_OF_FINDING, show_alert=True)
        return None
    if data.action is not FindingButton.DETAILS and not finding.live:
        await query.answer(answers.already_settled(finding), show_alert=True)
        if isinstance(query.message, Message) and query.message.reply_markup is not None:
            await edit_quietly(query.message.edit_reply_markup(reply_markup=None))
        return None
    return finding


async def details(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None:
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(texts.details_message(finding))


async def quieten(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None:
        return
    by = actor_name(query.from_user.id, query.from_user.username)
    if callback_data.action is FindingButton.SNOOZE:
        until = ctx.runtime.monitor.now() + timedelta(seconds=ctx.settings.telegram.snooze_s)
        updated = await ctx.runtime.findings.set_state(
            finding.id, FindingState.SNOOZED, by=by, destinations=ctx.destinations, snoozed_until=until
        )
        answer = answers.snoozed_until(until)
    else:
        updated = await ctx.runtime.findings.set_state(
            finding.id, FindingState.ACKNOWLEDGED, by=by, destinations=ctx.destinations
        )
        answer = answers.ACKNOWLEDGED
    ctx.reconciler.wake()
    await query.answer(answer if updated else answers.CHANGED_MEANWHILE)
    if (
        updated is not None
        and isinstance(query.message, Message)
        and not await _edited_by_outbox(query.message, ctx, updated)
    ):
        await _show(query.message, updated, ctx)


async def _edited_by_outbox(message: Message, ctx: BotContext, finding: StoredFinding) -> bool:
    """An alert in an alert chat is edited through the outbox; any other message showing the finding (a reply
    to /findings or /scan) is edited here."""
    if str(message.chat.id) not in {d.address for d in ctx.destinations if d.channel is Channel.TELEGRAM}:
        return False
    return await ctx.runtime.findings.is_alert_message(message.chat.id, message.message_id, finding.id)


async def _show(message: Message, finding: StoredFinding, ctx: BotContext) -> None:
    keyboard = finding_keyboard(finding, exchange_orders=ctx.exchange_orders_allowed(finding.account))
    await edit_quietly(
        message.edit_text(texts.split_message(texts.finding_message(finding))[-1], reply_markup=keyboard)
    )


FIX_BUTTONS = {
    FindingButton.MARK_CLOSED: FixAction.CLOSE_GHOST,
    FindingButton.ADOPT: FixAction.ADOPT_ORPHAN,
    FindingButton.CLOSE_ON_EXCHANGE: FixAction.CLOSE_ORPHAN,
    FindingButton.SET_SIZE: FixAction.SET_DB_QUANTITY,
    FindingButton.CANCEL_ORDER: FixAction.CANCEL_ORDERS,
}


async def fix(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None or not isinstance(query.message, Message):
        return
    if callback_data.action in EXCHANGE_ORDER_BUTTONS and not ctx.exchange_orders_allowed(finding.account):
        await query.answer(answers.orders_not_allowed(finding.account), show_alert=True)
        return
    plan = plan_for_finding(finding, FIX_BUTTONS[callback_data.action])
    if plan is None:
        await query.answer(answers.NOT_FIXABLE_THAT_WAY, show_alert=True)
        return
    await query.answer()
    await ask_confirmation(query.message, query.from_user, ctx, plan=plan, finding_id=finding.id)


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="alerts")
    router.callback_query(FindingAction.filter(F.action == FindingButton.DETAILS), flags={"role": Role.VIEWER})(details)
    router.callback_query(
        FindingAction.filter(F.action.in_({FindingButton.SNOOZE, FindingButton.KEEP, FindingButton.IGNORE})),
        flags={"role": Role.OPERATOR},
    )(quieten)
    router.callback_query(
        FindingAction.filter(
            F.action.in_(
                {
                    FindingButton.ADOPT,
                    FindingButton.CLOSE_ON_EXCHANGE,
                    FindingButton.MARK_CLOSED,
                    FindingButton.SET_SIZE,
                    FindingButton.CANCEL_ORDER,
                }
            )
        ),
        flags={"role": Role.OPERATOR},
    )(fix)
    return router
