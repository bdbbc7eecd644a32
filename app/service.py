"""The composition root: everything `run` starts, built from settings — the runtime (database, gateways,
monitor, fixes), the alert channels (Telegram when a token is set, e-mail, the console), the scheduler and the
ops server — and stopped gracefully in the reverse order. The CLI, the demo and the benchmarks start reconbot
through here.

The chats hear whether anyone is watching: one quiet notice when watching starts (before the first check), one when
it stops gracefully (after the last check and fix, before the outbox is flushed), and a loud one from the
watchdog when the held accounts go without checks.
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
from services.notices import Notice, NoticeKind
from services.ops import Metrics, OpsServer
from services.reconciler import AutoFix, Reconciler
from services.runtime import Runtime
from services.scheduler import CheckScheduler
from services.settings import Settings
from services.shards import ShardClaims
from services.triggers import AccountChecks, DbPoller
from services.watchdog import CheckWatchdog

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
    watchdog: CheckWatchdog | None = None

    @property
    def replica(self) -> str | None:
        """This process's name in notices, when several replicas share the accounts."""
        return self.claims.name if self.claims is not None and self.claims.replicas > 1 else None

    async def say_stopped(self) -> None:
        """Queue the notice that watching stopped (or that the other replicas carry on)."""
        others = self.claims.replicas - 1 if self.claims is not None else 0
        try:
            await self.reconciler.notify(Notice(NoticeKind.STOPPED, count=others or None, replica=self.replica))
        except Exception as exc:  # the database is gone: nothing could deliver it anyway
            log.warning("could not queue the stop notice (%s)", type(exc).__name__)

    async def stop(self, *, check_timeout_s: float = 30.0, flush_timeout_s: float = 10.0) -> None:
        """Graceful stop: no new work, let a running check finish, say so, flush the outbox, close everything."""
        if self.watchdog is not None:
            await self.watchdog.stop()
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
        await self.say_stopped()
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
    owned = tuple(claims.owned())
    await reconciler.notify(Notice(NoticeKind.STARTED, accounts=owned, replica=service.replica))
    scheduler.start()
    start_triggers(service, say)
    scan = settings.scan
    service.watchdog = CheckWatchdog(
        runtime.findings.account_checks,
        claims.owned,
        reconciler.notify,
        interval_s=min(scan.orphan_interval_s, scan.reconcile_interval_s),
        stall_after_s=scan.stall_threshold_s,
        replica=lambda: service.replica,
    )
    service.watchdog.start()
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
