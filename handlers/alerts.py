"""The buttons on alerts. Details and a digest's numbers are for anyone allowed to look; the rest needs an
operator. Fixes ask for confirmation first; Snooze and Acknowledge (and its undo) only change reconbot's own
alert state."""

from __future__ import annotations

import logging
from datetime import timedelta

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, EphemeralMessageParameters, Message

from bot import answers, detail_texts, finding_texts, texts
from bot.callbacks import LEGACY_ACKNOWLEDGE, FindingAction, FindingButton
from bot.context import BotContext
from bot.flood import in_background
from bot.keyboards import EXCHANGE_ORDER_BUTTONS, buttons_for
from bot.replies import edit_quietly
from bot.roles import Role, name_of, record_of
from bot.showing import show_finding
from handlers.fixes import ask_confirmation
from services.findings import StoredFinding
from services.fixes import plan_for_finding
from services.model import FindingState
from services.plans import FixAction

log = logging.getLogger(__name__)
LOOKING = frozenset({FindingButton.DETAILS, FindingButton.HIDE_DETAILS, FindingButton.SHOW})
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
    """Details opens the finding's details in place, under the alert, silently. In a group only the presser
    sees them: an ephemeral message in place of the alert, for them alone (the Bot API allows one within 15
    seconds of a press); where Telegram refuses one, and in a private chat, the alert itself is edited (an edit
    rings nobody). Hide details closes them again."""
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None:
        return
    message = query.message
    if not isinstance(message, Message):
        await query.answer()
        return
    if message.ephemeral_message_id is not None:  # Hide details, on the view the presser alone sees
        await query.answer()
        hiding = _bot_of(message).delete_ephemeral_message(
            message.chat.id, query.from_user.id, message.ephemeral_message_id
        )
        await edit_quietly(hiding)
        return
    opening = callback_data.action is FindingButton.DETAILS
    if opening and message.chat.type in GROUPS and await _details_to_presser(query, message, finding, ctx):
        return
    await query.answer()
    await _show(message, finding, ctx, details=opening)


GROUPS = ("group", "supergroup")


def _bot_of(message: Message) -> Bot:
    assert message.bot is not None
    return message.bot


async def _details_to_presser(query: CallbackQuery, message: Message, finding: StoredFinding, ctx: BotContext) -> bool:
    """Show the alert with its details to the presser alone, in place of the group's alert; False when Telegram
    refuses (the press is too old, an older server)."""
    only_them = EphemeralMessageParameters(
        receiver_user_id=query.from_user.id, callback_query_id=query.id, replace_callback_query_message=True
    )
    try:
        await _bot_of(message).send_message(
            message.chat.id,
            _alert_text(finding, details=True),
            reply_markup=ctx.buttons.details_view(finding, query.from_user.id),
            disable_notification=True,
            ephemeral_message_parameters=only_them,
        )
    except TelegramBadRequest as exc:
        log.info("details of finding #%s: no ephemeral message (%s); shown in place", finding.id, exc)
        return False
    await query.answer()
    return True


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
    by, actor = name_of(query.from_user), f"telegram {record_of(query.from_user)}"
    store = ctx.runtime.findings
    if pressed(callback_data) is FindingButton.SNOOZE:
        length = timedelta(seconds=ctx.settings.telegram.snooze_s)
        until = ctx.runtime.monitor.now() + length
        updated = await store.set_state(
            finding.id, FindingState.SNOOZED, by=by, destinations=ctx.destinations, snoozed_until=until, actor=actor
        )
        answer = answers.snoozed_until(until, length)
    elif pressed(callback_data) is FindingButton.UNACKNOWLEDGE:
        updated = await store.set_state(
            finding.id, FindingState.OPEN, by=None, destinations=ctx.destinations, actor=actor
        )
        answer = answers.UNACKNOWLEDGED
    else:
        updated = await store.set_state(
            finding.id, FindingState.ACKNOWLEDGED, by=by, destinations=ctx.destinations, actor=actor
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
    """A tracked message (an alert, or a copy shown with buttons) is edited through the outbox; any other is
    edited here."""
    return await ctx.runtime.findings.is_alert_message(message.chat.id, message.message_id, finding.id)


async def _show(message: Message, finding: StoredFinding, ctx: BotContext, *, details: bool = False) -> None:
    """Edit a message to show the finding as it is now, with its details or without."""
    keyboard = ctx.buttons.finding(finding, message.chat.id, details=details)
    await edit_quietly(message.edit_text(_alert_text(finding, details=details), reply_markup=keyboard))


def _alert_text(finding: StoredFinding, *, details: bool) -> str:
    """The alert as its message with buttons shows it (the last part of a long one), with or without details."""
    text = texts.split_message(finding_texts.finding_message(finding))[-1]
    return detail_texts.with_details(text, finding) if details else text


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
    router.callback_query(
        FindingAction.filter(F.action.in_({FindingButton.DETAILS, FindingButton.HIDE_DETAILS})),
        flags={"role": Role.VIEWER},
    )(details)
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
