"""``python main.py run``: the bot and the scheduled checks in one long-lived process.

Start-up checks the database (applying reconbot's own migrations), every account's keys with a read-only
call, and the bot token, and names each problem. SIGTERM or SIGINT stops it gracefully: no new work, the
running check may finish (bounded), the outbox is flushed, then every connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

from bot.app import ChatOps, build_bot, telegram_destinations
from bot.context import BotContext
from services import migrations
from services.console import ConsoleAlerts
from services.database import DatabaseError
from services.delivery import Deliverer
from services.email_alerts import EmailDelivery, email_destinations
from services.exchange import ExchangeUnavailable
from services.findings import AlertPolicy
from services.ops import Metrics, OpsServer
from services.reconciler import AutoFix, Reconciler
from services.runtime import Runtime
from services.scheduler import CheckScheduler
from services.settings import Settings

log = logging.getLogger(__name__)

Say = Callable[[str], None]
FATAL_EXCHANGE_ERRORS = ("authentication failed", "permission denied", "account suspended")


class StartupError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Service:
    """Everything ``run`` starts, so tests and the demo can drive it too."""

    settings: Settings
    runtime: Runtime
    reconciler: Reconciler
    scheduler: CheckScheduler
    chatops: ChatOps | None = None
    deliverers: list[Deliverer] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    metrics: Metrics | None = None
    ops: OpsServer | None = None

    async def stop(self, *, check_timeout_s: float = 30.0, flush_timeout_s: float = 10.0) -> None:
        """Graceful stop: no new work, let a running check finish, flush the outbox, close everything."""
        self.scheduler.shutdown()
        if self.ops is not None:
            await self.ops.stop()
        if self.chatops is not None:
            await self.chatops.stop_polling()
        finished = await self.scheduler.wait_running(check_timeout_s)
        if not finished or not await self.reconciler.wait_idle(check_timeout_s):
            log.warning("a check was still running after %ss; stopping anyway", check_timeout_s)
        for deliverer in self.deliverers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(deliverer.drain(), flush_timeout_s)
        if self.chatops is not None:
            await self.chatops.stop(flush_timeout_s=flush_timeout_s)
        for deliverer in self.deliverers:
            deliverer.stop()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(task, 5.0)
        await self.runtime.close()


async def _check_accounts(runtime: Runtime, say: Say) -> list[str]:
    """A read-only call per account: wrong keys stop the start, an unreachable venue only warns."""
    problems = []

    async def probe(name: str) -> None:
        try:
            positions = await runtime.gateways[name].positions()
        except ExchangeUnavailable as exc:
            if exc.reason.startswith(FATAL_EXCHANGE_ERRORS):
                problems.append(f"account {name}: {exc.reason}")
            else:
                say(f"warning: account {name} is not reachable now ({exc.reason}); it will be retried each round")
            return
        say(f"account {name}: keys work, {len(positions)} open position(s)")

    await asyncio.gather(*(probe(name) for name in runtime.gateways))
    return problems


async def start_service(
    settings: Settings, *, say: Say = print, console: Say | None = None, clients: dict | None = None
) -> Service:
    """Check everything, then start; StartupError lists every problem found."""
    runtime = Runtime(settings, require_schema=False, clients=clients)
    try:
        await runtime.start()
    except DatabaseError as exc:
        raise StartupError([f"database: {exc}"]) from None
    try:
        async with runtime.database.pool.acquire() as conn:
            for migration in await migrations.apply_migrations(conn):
                say(f"database: applied migration {migration.version} ({migration.description})")
        say(f"database: {runtime.database.description}, schema version {migrations.LATEST_VERSION}")
        problems = await _check_accounts(runtime, say)
        bot = None
        if settings.telegram.enabled:
            bot = build_bot(settings.telegram)
            try:
                me = await bot.get_me()
                say(f"telegram: token works, bot @{me.username}")
            except TelegramUnauthorizedError:
                problems.append("telegram: the bot token was rejected (check RECONBOT_TELEGRAM__TOKEN)")
            except TelegramNetworkError as exc:
                say(f"warning: telegram is not reachable now ({exc}); alerts stay queued until it is")
            if not settings.telegram.alert_chat_ids:
                say("warning: telegram.alert_chat_ids is empty; alerts reach nobody on Telegram")
            if not settings.telegram.operators:
                say("warning: telegram.operators is empty; nobody can approve fixes")
        if problems:
            if bot is not None:
                await bot.session.close()
            raise StartupError(problems)
    except BaseException:
        await runtime.close()
        raise

    destinations = telegram_destinations(settings) + email_destinations(settings.alerts.email)
    metrics = Metrics()
    console_alerts = ConsoleAlerts(console) if console else ConsoleAlerts()
    listeners = [metrics.on_check, *([console_alerts] if settings.alerts.console else [])]
    reconciler = Reconciler(
        runtime,
        destinations,
        listeners,
        policy=AlertPolicy(timedelta(seconds=settings.alerts.remind_after_s), settings.alerts.unchecked_after),
        auto_fix=AutoFix(settings.scan.auto_fix_ghosts, settings.scan.auto_fix_max_per_run),
    )
    scheduler = CheckScheduler(reconciler, settings.scan)
    service = Service(settings, runtime, reconciler, scheduler, metrics=metrics)
    try:
        if settings.ops.address is not None:
            scan = settings.scan
            stale_after = settings.ops.stale_after_s or 3 * min(scan.orphan_interval_s, scan.reconcile_interval_s) + 30
            service.ops = OpsServer(
                metrics, runtime.findings, runtime.outbox, [a.name for a in settings.accounts], stale_after
            )
            await service.ops.start(*settings.ops.address)
            say(f"ops: GET /healthz and /metrics on {settings.ops.address[0]}:{service.ops.port}")
    except OSError as exc:
        await runtime.close()
        if bot is not None:
            await bot.session.close()
        raise StartupError([f"ops.listen {settings.ops.listen}: {exc.strerror or exc}"]) from None
    if bot is not None:
        service.chatops = ChatOps(BotContext(settings, runtime, reconciler, scheduler.next_runs), bot)
        service.chatops.delivery.on_result = metrics.on_delivery
        await service.chatops.start()
    if settings.alerts.email is not None:
        email = EmailDelivery(runtime.findings, runtime.outbox, settings.alerts.email)
        email.on_result = metrics.on_delivery
        reconciler.wakeups.append(email.wake)
        service.deliverers.append(email)
        service.tasks.append(asyncio.create_task(email.run(), name="email-delivery"))
    scheduler.start()
    scan = settings.scan
    say(
        f"reconbot running: {len(settings.accounts)} account(s), orphan scan every {scan.orphan_interval_s:g}s, "
        f"reconciliation every {scan.reconcile_interval_s:g}s"
    )
    return service


async def run_service(settings: Settings, *, say: Say = print, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); 0 after a clean stop, 3 when start-up failed."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        service = await start_service(settings, say=say)
    except StartupError as exc:
        for problem in exc.problems:
            say(f"problem: {problem}")
        return 3
    await stop.wait()
    say("stopping: finishing the running check and flushing alerts …")
    await service.stop()
    say("stopped")
    return 0
