"""The buttons on alerts. Details and a digest's numbers are for anyone allowed to look; the rest needs an
operator. Fixes ask for confirmation first; Snooze and Acknowledge (and its undo) only change reconbot's own
alert state."""

from __future__ import annotations

from datetime import timedelta

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot import answers, finding_texts, texts
from bot.callbacks import LEGACY_ACKNOWLEDGE, FindingAction, FindingButton
from bot.context import BotContext
from bot.flood import in_background
from bot.keyboards import EXCHANGE_ORDER_BUTTONS, buttons_for, finding_keyboard
from bot.replies import edit_quietly
from bot.roles import Role, actor_name
from bot.showing import show_finding
from handlers.fixes import ask_confirmation
from services.findings import StoredFinding
from services.fixes import plan_for_finding
from services.model import FindingState
from services.plans import FixAction

LOOKING = frozenset({FindingButton.DETAILS, FindingButton.SHOW})
QUIETING = frozenset({FindingButton.SNOOZE, FindingButton.ACKNOWLEDGE, FindingButton.UNACKNOWLEDGE})


def pressed(data: FindingAction) -> FindingButton:
    """The button as it is handled today (Keep and Ignore on older alerts acknowledge)."""
    return FindingButton.ACKNOWLEDGE if data.action in LEGACY_ACKNOWLEDGE else data.action


async def _finding_for(query: CallbackQuery, data: FindingAction, ctx: BotContext) -> StoredFinding | None:
    """The finding a button names, if the press still makes sense; otherwise answer why not."""
    finding = await ctx.runtime.findings.get(data.finding_id)
    acknowledged = finding is not None and finding.state is FindingState.ACKNOWLEDGED
    offered = set(buttons_for(finding.kind, exchange_orders=True, acknowledged=acknowledged)) if finding else set()
    if finding is None or pressed(data) not in offered | LOOKING:
        await query.answer(answers.NOT_A_BUTTON_OF_FINDING, show_alert=True)
        return None
    if pressed(data) not in LOOKING and not finding.live:
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
        await query.message.answer(finding_texts.details_message(finding))


async def show(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    """A digest's number: the finding with its own buttons, behind any operator's answer in this chat."""
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None or not isinstance(query.message, Message):
        return
    await query.answer()
    with in_background():
        await show_finding(query.message.bot, query.message.chat.id, finding, ctx)  # type: ignore[arg-type]


async def quieten(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None:
        return
    by = actor_name(query.from_user.id, query.from_user.username)
    store = ctx.runtime.findings
    if pressed(callback_data) is FindingButton.SNOOZE:
        until = ctx.runtime.monitor.now() + timedelta(seconds=ctx.settings.telegram.snooze_s)
        updated = await store.set_state(
            finding.id, FindingState.SNOOZED, by=by, destinations=ctx.destinations, snoozed_until=until
        )
        answer = answers.snoozed_until(until)
    elif pressed(callback_data) is FindingButton.UNACKNOWLEDGE:
        updated = await store.set_state(finding.id, FindingState.OPEN, by=None, destinations=ctx.destinations)
        answer = answers.UNACKNOWLEDGED
    else:
        updated = await store.set_state(finding.id, FindingState.ACKNOWLEDGED, by=by, destinations=ctx.destinations)
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
    """A tracked message (an alert, or a copy shown with buttons) is edited through the outbox; any other is
    edited here."""
    return await ctx.runtime.findings.is_alert_message(message.chat.id, message.message_id, finding.id)


async def _show(message: Message, finding: StoredFinding, ctx: BotContext) -> None:
    keyboard = finding_keyboard(finding, exchange_orders=ctx.exchange_orders_allowed(finding.account))
    await edit_quietly(
        message.edit_text(texts.split_message(finding_texts.finding_message(finding))[-1], reply_markup=keyboard)
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
    await query.answer(answers.PREPARING_QUESTION)
    await ask_confirmation(query.message, query.from_user, ctx, plan=plan, finding_id=finding.id)


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="alerts")
    router.callback_query(FindingAction.filter(F.action == FindingButton.DETAILS), flags={"role": Role.VIEWER})(details)
    router.callback_query(FindingAction.filter(F.action == FindingButton.SHOW), flags={"role": Role.VIEWER})(show)
    router.callback_query(
        FindingAction.filter(F.action.in_(QUIETING | LEGACY_ACKNOWLEDGE)), flags={"role": Role.OPERATOR}
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
