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

from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.exceptions import TelegramNetworkError, TelegramServerError, TelegramUnauthorizedError

from bot.app import ChatOps, build_bot, telegram_destinations
from bot.context import BotContext
from services import audit, migrations
from services.console import ConsoleAlerts
from services.database import DatabaseError, DatabaseUnreachable
from services.delivery import Deliverer
from services.email_alerts import EmailDelivery, email_destinations
from services.findings import AlertPolicy
from services.ops import Metrics, OpsServer
from services.reconciler import AutoFix, Reconciler
from services.redaction import redact
from services.runtime import Runtime
from services.scheduler import CheckScheduler
from services.settings import Settings
from services.venues import AuthFailed, VenueError

log = logging.getLogger(__name__)

Say = Callable[[str], None]
STARTUP_RETRY_MIN_S = 1.0
STARTUP_RETRY_MAX_S = 60.0


class StartupError(Exception):
    """Start-up cannot go on; ``transient`` when waiting may help (the database is not answering yet)."""

    def __init__(self, problems: list[str], *, transient: bool = False):
        super().__init__("\n".join(problems))
        self.problems = problems
        self.transient = transient


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
        if not await self.runtime.fixes.drain(check_timeout_s):
            log.warning("a confirmed fix was still running after %ss; audited as interrupted", check_timeout_s)
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
        except VenueError as exc:
            if isinstance(exc, AuthFailed):
                problems.append(f"account {name}: {exc.reason}")
            else:
                say(f"warning: account {name} is not reachable now ({exc.reason}); it will be retried each round")
            return
        say(f"account {name}: keys work, {len(positions)} open position(s)")

    await asyncio.gather(*(probe(name) for name in runtime.gateways))
    return problems


def stale_after_s(settings: Settings) -> float:
    scan = settings.scan
    return settings.ops.stale_after_s or 3 * min(scan.orphan_interval_s, scan.reconcile_interval_s) + 30


def new_ops_server(settings: Settings, metrics: Metrics) -> OpsServer:
    """/healthz and /metrics, started before anything else so a supervisor sees what start-up waits for."""
    return OpsServer(metrics, None, None, [a.name for a in settings.accounts], stale_after_s(settings))


async def start_service(
    settings: Settings,
    *,
    say: Say = print,
    console: Say | None = None,
    clients: dict | None = None,
    ops: OpsServer | None = None,
    metrics: Metrics | None = None,
    flood_control: BaseRequestMiddleware | None = None,
) -> Service:
    """Check everything, then start; StartupError lists every problem found. ``ops``, when given, is an ops
    server already listening (``run`` starts it first); otherwise one is started here if configured."""
    runtime = Runtime(settings, require_schema=False, clients=clients)
    try:
        await runtime.start()
    except DatabaseUnreachable as exc:
        raise StartupError([f"database: {exc}"], transient=True) from None
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
        if problems:
            if bot is not None:
                await bot.session.close()
            raise StartupError(problems)
    except BaseException:
        await runtime.close()
        raise

    await audit.record_interrupted_confirmations(runtime.database.pool)
    destinations = telegram_destinations(settings) + email_destinations(settings.alerts.email)
    metrics = metrics or Metrics()
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
        if ops is None and settings.ops.address is not None:
            ops = new_ops_server(settings, metrics)
            await ops.start(*settings.ops.address)
            say(f"ops: GET /healthz and /metrics on {settings.ops.address[0]}:{ops.port}")
    except OSError as exc:
        await runtime.close()
        if bot is not None:
            await bot.session.close()
        raise StartupError([f"ops.listen {settings.ops.listen}: {exc.strerror or exc}"]) from None
    if ops is not None:
        ops.attach(runtime.findings, runtime.outbox)
        service.ops = ops
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
    """Run until SIGTERM/SIGINT (or ``stop`` is set); 0 after a clean stop, 3 when start-up failed for good.

    What is transient at start-up (the database not answering yet) is waited for with backoff while /healthz
    says so; a bad config or rejected keys end the process with 3, which the shipped unit does not restart."""
    say = redacting(say, settings.secrets())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()
    ops = None
    if settings.ops.address is not None:
        ops = new_ops_server(settings, metrics)
        try:
            await ops.start(*settings.ops.address)
        except OSError as exc:
            say(f"problem: ops.listen {settings.ops.listen}: {exc.strerror or exc}")
            return 3
        say(f"ops: GET /healthz and /metrics on {settings.ops.address[0]}:{ops.port}")
    delay = STARTUP_RETRY_MIN_S
    while True:
        try:
            service = await start_service(settings, say=say, ops=ops, metrics=metrics)
            break
        except StartupError as exc:
            if not exc.transient:
                for problem in exc.problems:
                    say(f"problem: {problem}")
                if ops is not None:
                    await ops.stop()
                return 3
            if ops is not None:
                ops.waiting_for = f"waiting for database: {exc.problems[0].removeprefix('database: ')}"
            say(f"waiting: {exc.problems[0]}; trying again in {delay:g}s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            if ops is not None:
                await ops.stop()
            say("stopped before start-up finished")
            return 0
        delay = min(STARTUP_RETRY_MAX_S, delay * 2)
    await stop.wait()
    say("stopping: finishing the running check and any confirmed fix, and flushing alerts …")
    await service.stop()
    say("stopped")
    return 0


def redacting(say: Say, secrets: tuple[str, ...]) -> Say:
    """Everything ``run`` prints passes the same secret filter as its log lines."""

    def filtered(text: str) -> None:
        say(redact(text, secrets))

    return filtered
