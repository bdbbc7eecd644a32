"""The aiogram Bot reconbot talks through: the configured Bot API server, HTML by default, every call paced
and retried by flood control, and silent unless the sender says it rings."""

from __future__ import annotations

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.utils.backoff import BackoffConfig

from bot.flood import FloodControl
from bot.silence import SilentUnlessSaid
from services.settings import TelegramSettings

DEFAULT_BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.5, jitter=0.1)


def build_bot(settings: TelegramSettings, flood_control: BaseRequestMiddleware | None = None) -> Bot:
    """A Bot for the configured server, sending HTML, with every call paced and retried."""
    if settings.token is None:
        raise ValueError("telegram.token is not set (RECONBOT_TELEGRAM__TOKEN)")
    api = TelegramAPIServer.from_base(settings.api_base_url) if settings.api_base_url else None
    session = AiohttpSession(api=api) if api else AiohttpSession()
    session.middleware(flood_control or FloodControl())
    session.middleware(SilentUnlessSaid())
    return Bot(
        settings.token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
