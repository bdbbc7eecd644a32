"""What `run` checks before it starts: the database (reconbot's own migrations are applied), every account's
keys with one read-only call, and the bot token. Each problem is named; what may pass by itself (a database
that is not up yet, starting, stopping or restarting, a SQLite file its trading bot holds locked) is marked
transient, so `run` waits for it instead of exiting. Then, before the first check, confirmed fixes the last
process left unfinished are settled by a re-read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.exceptions import TelegramNetworkError, TelegramServerError, TelegramUnauthorizedError

from bot.client import build_bot
from services import migrations
from services.database import TRANSIENT_ERRORS, DatabaseError, DatabaseUnreachable, describe
from services.runtime import Runtime
from services.settings import Settings
from services.venues import AuthFailed, VenueError

Say = Callable[[str], None]


class StartupError(Exception):
    """Start-up cannot go on; ``transient`` when waiting may help (the database is not answering yet)."""

    def __init__(self, problems: list[str], *, transient: bool = False):
        super().__init__("\n".join(problems))
        self.problems = problems
        self.transient = transient


async def open_runtime(settings: Settings, say: Say, clients: dict | None = None) -> Runtime:
    """The database and the accounts' gateways, reconbot's own tables brought up to date."""
    runtime = Runtime(settings, require_schema=False, clients=clients)
    try:
        await runtime.start()
    except DatabaseUnreachable as exc:
        raise StartupError([f"database: {exc}"], transient=True) from None
    except DatabaseError as exc:
        raise StartupError([f"database: {exc}"]) from None
    except TRANSIENT_ERRORS as exc:  # the server went away after it let us in (a restart)
        raise StartupError([f"database: {describe(exc)}"], transient=True) from None
    try:
        async with runtime.database.pool.acquire() as conn:
            for migration in await migrations.apply_migrations(conn):
                say(f"database: applied migration {migration.version} ({migration.description})")
        say(f"database: {runtime.database.description}, schema version {migrations.LATEST_VERSION}")
    except TRANSIENT_ERRORS as exc:
        await runtime.close()
        raise StartupError([f"database: {describe(exc)}"], transient=True) from None
    except BaseException:
        await runtime.close()
        raise
    return runtime


async def check_accounts(runtime: Runtime, say: Say) -> list[str]:
    """A read-only call per account: rejected keys stop the start, an unreachable venue only warns."""
    problems = []

    async def probe(name: str) -> None:
        try:
            positions = await runtime.gateways[name].positions()
        except VenueError as exc:
            if isinstance(exc, AuthFailed):
                problems.append(f"account {name}: {exc.reason}")
            else:
                say(f"warning: account {name} is not reachable now ({exc.reason}); it will be retried each round")
            return
        say(f"account {name}: keys work, {len(positions)} open position(s)")

    await asyncio.gather(*(probe(name) for name in runtime.gateways))
    return problems


async def settle_interrupted(runtime: Runtime, say: Say) -> None:
    """Settle confirmed fixes that a stopped process left unfinished, before any check can file their findings
    as drift no longer seen; one that cannot be re-read now is retried every ``scan.settle_interval_s``."""
    for settled in await runtime.fixes.settle_interrupted(runtime.confirmations):
        fix = f"confirmed fix #{settled.confirmation_id} ({settled.action}) did not finish before the last stop"
        if not settled.recorded:
            every = runtime.settings.scan.settle_interval_s
            say(f"warning: {fix} and cannot be re-read now ({settled.reason}); retried every {every:g}s")
        elif settled.found is None:
            say(f"warning: {fix}; settled without a re-read: {settled.reason}")
        else:
            say(f"warning: {fix}; settled by a re-read: {settled.found} ({settled.reason})")


async def check_telegram(
    settings: Settings, say: Say, problems: list[str], flood_control: BaseRequestMiddleware | None = None
) -> Bot | None:
    """The bot, when a token is configured; a rejected token is a problem, an unreachable Telegram a warning."""
    if not settings.telegram.enabled:
        return None
    bot = build_bot(settings.telegram, flood_control)
    try:
        me = await bot.get_me()
        say(f"telegram: token works, bot @{me.username}")
    except TelegramUnauthorizedError:
        problems.append("telegram: the bot token was rejected (check RECONBOT_TELEGRAM__TOKEN)")
    except (TelegramNetworkError, TelegramServerError, OSError) as exc:
        say(f"warning: telegram is not reachable now ({type(exc).__name__}); alerts stay queued until it is")
    if not settings.telegram.alert_chat_ids:
        say("warning: telegram.alert_chat_ids is empty; alerts reach nobody on Telegram")
    if not settings.telegram.operators:
        say("warning: telegram.operators is empty; nobody can approve fixes")
    return bot
