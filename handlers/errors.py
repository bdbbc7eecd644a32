"""The last resort: an update whose handler failed is logged with its traceback, and the person is answered
politely (a button press always gets its answer), never left with a spinning button or silence."""

from __future__ import annotations

import contextlib
import logging

from aiogram.types import ErrorEvent

from bot import answers

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent) -> bool:
    update = event.update
    log.error("update %s failed: %s", update.update_id, event.exception, exc_info=event.exception)
    with contextlib.suppress(Exception):
        if update.callback_query is not None:
            await update.callback_query.answer(answers.APOLOGY, show_alert=True)
        elif update.message is not None:
            await update.message.answer(answers.APOLOGY)
    return True
