"""The composition root: everything `run` starts, built from settings — the runtime (database, gateways,
monitor, fixes), the alert channels (Telegram when a token is set, e-mail, the console), the scheduler and the
ops server — and stopped gracefully in the reverse order. The CLI, the demo and the benchmarks start reconbot
through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiogram.client.session.middlewares.base import BaseRequestMiddleware

from app.startup import Say, StartupError, check_accounts, check_telegram, open_runtime, settle_interrupted
from app.telegram import ChatOps
from bot.context import BotContext
from services.console import ConsoleAlerts
from services.delivery import Deliverer
from services.email_alerts import EmailDelivery
from services.findings import AlertPolicy
from services.live_streams import LiveStreams
from services.ops import Metrics, OpsServer
from services.reconciler import AutoFix, Reconciler
from services.runtime import Runtime
from services.scheduler import CheckScheduler
from services.settings import Settings
from services.shards import ShardClaims
from services.triggers import AccountChecks, DbPoller

log = logging.getLogger(__name__)


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
    checks: AccountChecks | None = None
    streams: LiveStreams | None = None
    db_poller: DbPoller | None = None
    claims: ShardClaims | None = None

    async def stop(self, *, check_timeout_s: float = 30.0, flush_timeout_s: float = 10.0) -> None:
        """Graceful stop: no new work, let a running check finish, flush the outbox, close everything."""
        self.scheduler.shutdown()
        if self.claims is not None:
            self.claims.on_change = None
        if self.streams is not None:
            await self.streams.stop()  # every socket closed, listenKeys forgotten
        if self.db_poller is not None:
            await self.db_poller.stop()
        if self.checks is not None:
            await self.checks.stop()
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
        if self.claims is not None:
            await self.claims.stop()  # the shards go back at once, for the other replicas to take
        await self.runtime.close()


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
    runtime = await open_runtime(settings, say, clients)
    try:
        problems = await check_accounts(runtime, say)
        if not problems:
            await settle_interrupted(runtime, say)
        bot = await check_telegram(settings, say, problems, flood_control)
        if problems:
            if bot is not None:
                await bot.session.close()
            raise StartupError(problems)
    except BaseException:
        await runtime.close()
        raise

    destinations = runtime.destinations
    metrics = metrics or Metrics()
    console_alerts = ConsoleAlerts(console) if console else ConsoleAlerts()
    listeners = [metrics.on_check, *([console_alerts] if settings.alerts.console else [])]
    reconciler = Reconciler(
        runtime,
        destinations,
        listeners,
        policy=AlertPolicy.from_settings(settings.alerts),
        auto_fix=AutoFix(settings.scan.auto_fix_ghosts, settings.scan.auto_fix_max_per_run),
    )
    claims = ShardClaims(
        runtime.database.connect,
        runtime.database.pool,
        [a.name for a in settings.accounts],
        settings.scale.shards,
        settings.scale.claim_interval_s,
    )
    scheduler = CheckScheduler(reconciler, settings.scan, claims.owned)
    scheduler.every(
        "settle interrupted fixes",
        settings.scan.settle_interval_s,
        lambda: runtime.fixes.settle_interrupted(runtime.confirmations),
    )
    service = Service(settings, runtime, reconciler, scheduler, metrics=metrics, claims=claims)
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
        context = BotContext(settings, runtime, reconciler, scheduler.next_runs, claims.status)
        service.chatops = ChatOps(context, bot)
        service.chatops.delivery.on_result = metrics.on_delivery
        await service.chatops.start()
    if settings.alerts.email is not None:
        email = EmailDelivery(runtime.findings, runtime.outbox, settings.alerts.email)
        email.on_result = metrics.on_delivery
        reconciler.wakeups.append(email.wake)
        service.deliverers.append(email)
        service.tasks.append(asyncio.create_task(email.run(), name="email-delivery"))
    await claims.start()
    scheduler.start()
    start_triggers(service, say)
    scan = settings.scan
    streaming = len(service.streams.streams) if service.streams else 0
    say(
        f"reconbot running: {len(settings.accounts)} account(s), orphan scan every {scan.orphan_interval_s:g}s, "
        f"reconciliation every {scan.reconcile_interval_s:g}s, {streaming} live stream(s)"
    )
    return service


def start_triggers(service: Service, say: Say) -> None:
    """Checks between the scheduled ones: on stream events, on DB changes, at the end of a grace window."""
    runtime, scan = service.runtime, service.settings.scan
    claims = service.claims
    owns = claims.owns if claims is not None else (lambda _name: True)
    checks = service.checks = AccountChecks(
        service.reconciler, lambda name: runtime.monitor.grace_s(runtime.gateways[name].account), owns
    )
    if scan.db_poll_s > 0:
        service.db_poller = DbPoller(runtime.repository, service.settings.accounts, checks, scan.db_poll_s)
        service.db_poller.start()
    streams = service.streams = LiveStreams(runtime.gateways, checks, scan, service.reconciler.notify, say, owns)
    streams.start()
    if service.ops is not None:
        service.ops.streams = streams.statuses
        service.ops.shards = claims.status if claims is not None else None
    if claims is not None:

        async def on_claims_changed(gained: set[str], lost: set[str]) -> None:
            await streams.retarget()
            for name in gained:  # taken over from a replica that left: check them now, not at the next round
                checks.request(name)

        claims.on_change = on_claims_changed
