"""The buttons on alerts. Details is for anyone allowed to look; the rest needs an operator. Fixes ask for
confirmation first; Snooze, Keep and Ignore only change reconbot's own alert state."""

from __future__ import annotations

from datetime import timedelta

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot import texts
from bot.callbacks import FindingAction, FindingButton
from bot.context import BotContext
from bot.keyboards import finding_keyboard
from bot.roles import Role, actor_name
from handlers.fixes import ask_confirmation
from services.confirmations import ADOPT_ORPHAN, CLOSE_GHOST, CLOSE_ORPHAN, SET_DB_QUANTITY
from services.findings import StoredFinding
from services.fixes import sizes_seen, sizes_target
from services.model import FindingKind

# Which buttons belong to which kind of finding; anything else is a forged or stale press.
BUTTONS = {
    FindingKind.ORPHAN: {
        FindingButton.ADOPT,
        FindingButton.CLOSE_ON_EXCHANGE,
        FindingButton.SNOOZE,
        FindingButton.DETAILS,
    },
    FindingKind.GHOST: {FindingButton.MARK_CLOSED, FindingButton.KEEP, FindingButton.DETAILS, FindingButton.SNOOZE},
    FindingKind.QUANTITY_MISMATCH: {
        FindingButton.SET_SIZE,
        FindingButton.IGNORE,
        FindingButton.DETAILS,
        FindingButton.SNOOZE,
    },
}


async def _finding_for(query: CallbackQuery, data: FindingAction, ctx: BotContext) -> StoredFinding | None:
    """The finding a button names, if the press still makes sense; otherwise answer why not."""
    finding = await ctx.runtime.findings.get(data.finding_id)
    if finding is None or data.action not in BUTTONS[finding.kind]:
        await query.answer("This button does not belong to any finding.", show_alert=True)
        return None
    if data.action is not FindingButton.DETAILS and not finding.live:
        await query.answer(f"Finding #{finding.id} is already {finding.state}; nothing to do.", show_alert=True)
        if isinstance(query.message, Message):
            await query.message.edit_reply_markup(reply_markup=None)
        return None
    return finding


async def details(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None:
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(texts.finding_details(finding))


async def quieten(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None:
        return
    by = actor_name(query.from_user.id, query.from_user.username)
    if callback_data.action is FindingButton.SNOOZE:
        until = ctx.runtime.monitor.now() + timedelta(seconds=ctx.settings.telegram.snooze_s)
        updated = await ctx.runtime.findings.set_state(
            finding.id, "snoozed", by=by, destinations=ctx.destinations, snoozed_until=until
        )
        answer = f"Snoozed until {texts.when(until)}."
    else:
        updated = await ctx.runtime.findings.set_state(finding.id, "acknowledged", by=by, destinations=ctx.destinations)
        answer = "Acknowledged: no more reminders for this finding."
    ctx.reconciler.wake()
    await query.answer(answer if updated else "It changed meanwhile; nothing to do.")
    if (
        updated is not None
        and isinstance(query.message, Message)
        and not await _edited_by_outbox(query.message, ctx, updated)
    ):
        await _show(query.message, updated, ctx)


async def _edited_by_outbox(message: Message, ctx: BotContext, finding: StoredFinding) -> bool:
    """An alert in an alert chat is edited through the outbox; any other message showing the finding (a reply
    to /findings or /scan) is edited here."""
    if str(message.chat.id) not in {d.address for d in ctx.destinations if d.channel == "telegram"}:
        return False
    return await ctx.runtime.findings.is_alert_message(message.chat.id, message.message_id, finding.id)


async def _show(message: Message, finding: StoredFinding, ctx: BotContext) -> None:
    keyboard = finding_keyboard(finding, exchange_orders=ctx.exchange_orders_allowed(finding.account))
    await message.edit_text(texts.split_message(texts.finding_message(finding))[-1], reply_markup=keyboard)


async def fix(query: CallbackQuery, callback_data: FindingAction, ctx: BotContext) -> None:
    finding = await _finding_for(query, callback_data, ctx)
    if finding is None or not isinstance(query.message, Message):
        return
    d = finding.details
    where = f"{finding.market} {finding.side.upper()} on {finding.account}"
    ids = finding.db_position_ids
    if callback_data.action is FindingButton.MARK_CLOSED:
        listing = ", ".join(f"#{i}" for i in ids)
        noun = "position" if len(ids) == 1 else "positions"
        question = f"Mark {noun} {listing} {finding.market} {finding.side.upper()} {d.get('db_quantity')} as closed?"
        action, target = CLOSE_GHOST, ",".join(ids)
    elif callback_data.action is FindingButton.ADOPT:
        question = f"Adopt {where} ({d.get('exchange_quantity')} contracts) into the DB as an active position?"
        action, target = ADOPT_ORPHAN, where
    elif callback_data.action is FindingButton.CLOSE_ON_EXCHANGE:
        if not ctx.exchange_orders_allowed(finding.account):
            await query.answer(f"{finding.account} does not allow exchange orders.", show_alert=True)
            return
        question = (
            f"Close {where} ({d.get('exchange_quantity')} contracts) on the exchange with a reduce-only market order?"
        )
        action, target = CLOSE_ORPHAN, where
    else:
        listing = ", ".join(f"#{i}" for i in ids)
        question = (
            f"Set position {listing} {finding.market} {finding.side.upper()} size from {d.get('db_quantity')} "
            f"to {d.get('exchange_quantity')} (the exchange's)?"
        )
        action, target = SET_DB_QUANTITY, sizes_target(sizes_seen(finding))
    await query.answer()
    await ask_confirmation(
        query.message, query.from_user, ctx, action=action, target=target, question=question, finding_id=finding.id
    )


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
                }
            )
        ),
        flags={"role": Role.OPERATOR},
    )(fix)
    return router
