"""Two-tap fixes: /closeghost and the Confirm / Cancel buttons every fix goes through."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, User
from pydantic import ValidationError

from bot import answers, texts
from bot.callbacks import ConfirmAction, ConfirmChoice
from bot.commands import role_flag
from bot.context import BotContext
from bot.flood import interactive
from bot.keyboards import CLOSEGHOST_ARGUMENT, confirm_keyboard
from bot.replies import edit_quietly
from bot.roles import Role, name_of, record_of
from services.confirmations import Claim
from services.fixes import FixOutcome
from services.plans import FixPlan

log = logging.getLogger(__name__)
OPERATE = {"role": Role.OPERATOR}


async def ask_confirmation(
    message: Message, user: User, ctx: BotContext, *, plan: FixPlan, finding_id: int | None = None
) -> None:
    """Send the question with Confirm / Cancel; nothing changes until Confirm, and Confirm applies this plan. A
    plan the trading bot's table cannot take (read-only) is refused at once, with the bot's own remedy. The
    operator is waiting for it: it goes first in the chat's lane, ahead of edits and reminders queued there."""
    refused = await ctx.runtime.fixes.refused_early(plan, f"telegram {record_of(user)}")
    if refused is not None:
        await message.answer(answers.fix_refused_early(refused))
        return
    question = texts.fix_question(plan)
    confirmation = await ctx.runtime.confirmations.create(
        plan=plan, question=question, user_id=user.id, chat_id=message.chat.id, finding_id=finding_id
    )
    minutes = ctx.settings.telegram.confirm_ttl_s / 60
    who = name_of(user)
    with interactive():
        await message.answer(
            answers.confirmation_question(question, minutes, who), reply_markup=confirm_keyboard(confirmation.id)
        )


async def closeghost(message: Message, command: CommandObject, ctx: BotContext) -> None:
    args = (command.args or "").split()
    if len(args) != 1 or not CLOSEGHOST_ARGUMENT.match(args[0]):
        await message.answer(answers.CLOSEGHOST_USAGE)
        return
    if await ctx.runtime.repository.get(args[0]) is None:
        await message.answer(answers.no_such_position(args[0]))
        return
    assert message.from_user is not None
    plan = await ctx.runtime.fixes.plan_close_ghost(args[0], f"telegram {record_of(message.from_user)}")
    if isinstance(plan, FixOutcome):
        await message.answer(answers.fix_refused_early(plan))
        return
    await ask_confirmation(message, message.from_user, ctx, plan=plan)


async def _claim(query: CallbackQuery, ctx: BotContext, confirmation_id: int, outcome: str) -> Claim | None:
    """Use the confirmation once; otherwise answer why not. Someone else's confirmation, or one already used,
    keeps its message as it is; an expired one says so in place of its buttons. The question's message is
    remembered with the claim, so it can be edited even if this process stops before the fix ends."""
    user = query.from_user
    message_id = query.message.message_id if query.message is not None else None
    claim = await ctx.runtime.confirmations.claim(confirmation_id, user.id, outcome, record_of(user), message_id)
    if claim.confirmation is None:
        refused = answers.claim_refused(claim)
        await query.answer(refused, show_alert=True)
        if isinstance(query.message, Message) and claim.expired:
            await edit_quietly(query.message.edit_text(texts.quote(refused)))
        return None
    return claim


async def cancel(query: CallbackQuery, callback_data: ConfirmAction, ctx: BotContext) -> None:
    claim = await _claim(query, ctx, callback_data.confirmation_id, "cancelled")
    if claim is None or claim.confirmation is None:
        return
    confirmation = claim.confirmation
    await query.answer(answers.CANCELLED)
    if isinstance(query.message, Message):
        await edit_quietly(
            query.message.edit_text(answers.question_and_result(confirmation.question, answers.CANCELLED))
        )


async def confirm(query: CallbackQuery, callback_data: ConfirmAction, ctx: BotContext) -> None:
    claim = await _claim(query, ctx, callback_data.confirmation_id, "confirmed")
    if claim is None or claim.confirmation is None:
        return
    confirmation, lease = claim.confirmation, claim.lease
    shown, actor = name_of(query.from_user), record_of(query.from_user)
    message = query.message if isinstance(query.message, Message) else None
    try:
        await query.answer(answers.RECHECKING)
        plan = confirmation.plan
    except ValidationError:
        log.error("confirmation #%s holds a payload that is not a plan; refused", confirmation.id)
        if lease is not None:
            await lease.release(settled=True)  # nothing was applied, nor can be
        if message is not None:
            await message.edit_text(answers.question_and_result(confirmation.question, answers.DAMAGED_CONFIRMATION))
        return
    except BaseException:
        if lease is not None:
            await lease.release()
        raise
    outcome = await ctx.runtime.fixes.apply(
        plan,
        f"telegram {actor}",
        finding_id=confirmation.finding_id,
        confirmation_id=confirmation.id,
        shown_as=shown,
        lease=lease,
    )
    ctx.reconciler.wake()
    result = answers.fix_result(outcome)
    log.info("confirmation #%s by %s: %s", confirmation.id, actor, result)
    if message is not None:
        with interactive():
            await edit_quietly(message.edit_text(answers.question_and_result(confirmation.question, result)))


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="fixes")
    router.message(Command("closeghost"), flags=role_flag("closeghost"))(closeghost)
    router.callback_query(ConfirmAction.filter(F.choice == ConfirmChoice.CANCEL), flags=OPERATE)(cancel)
    router.callback_query(ConfirmAction.filter(F.choice == ConfirmChoice.CONFIRM), flags=OPERATE)(confirm)
    return router
