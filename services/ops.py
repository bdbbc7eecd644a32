"""Health and metrics over HTTP: ``GET /healthz`` for a supervisor, ``GET /metrics`` for Prometheus.

/healthz answers 200 while every account's last check is recent and 503 naming the stale ones. The metrics
live in a registry of their own: checks by account and result, check duration, open findings by kind,
alerts sent and failed by channel, and the outbox depth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.findings import FiledCheck, FindingsStore
from services.live_streams import StreamStatus
from services.model import LIVE_STATES, FindingKind
from services.outbox import Outbox
from services.shards import ShardStatus
from services.streams import StreamState

log = logging.getLogger(__name__)


class Metrics:
    """Prometheus instruments, fed by a reconciler listener, the deliverers and each scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "reconbot_checks",
            "Account checks by result (ok or unchecked).",
            ["account", "result"],
            registry=self.registry,
        )
        self.check_duration = Histogram(
            "reconbot_check_duration_seconds",
            "Wall time of one confirmed check, both reads included.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.open_findings = Gauge(
            "reconbot_open_findings",
            "Open, snoozed and acknowledged findings by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "reconbot_alerts",
            "Outbox deliveries by channel and outcome (sent or failed).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.outbox_depth = Gauge("reconbot_outbox_depth", "Alerts waiting to be delivered.", registry=self.registry)
        self.stream_state = Gauge(
            "reconbot_stream_state",
            "Each account's live stream: 1 for its current state (off, connecting, up, down), 0 for the others.",
            ["account", "state"],
            registry=self.registry,
        )
        self.shards_held = Gauge("reconbot_shards_held", "Account shards this replica checks.", registry=self.registry)
        self.replicas = Gauge("reconbot_replicas", "reconbot replicas sharing this database.", registry=self.registry)
        self.stream_events = Gauge(
            "reconbot_stream_events", "Events heard on each account's live stream.", ["account"], registry=self.registry
        )
        self.stream_connects = Gauge(
            "reconbot_stream_connects", "Times each account's live stream came up.", ["account"], registry=self.registry
        )
        self.stream_unreadable = Gauge(
            "reconbot_stream_unreadable_frames",
            "Frames on each account's live stream that could not be read and were skipped (the account was checked).",
            ["account"],
            registry=self.registry,
        )

    def on_shards(self, status: ShardStatus) -> None:
        self.shards_held.set(len(status.held))
        self.replicas.set(status.replicas)

    def on_streams(self, statuses: Sequence[StreamStatus]) -> None:
        for status in statuses:
            for state in StreamState:
                self.stream_state.labels(status.account, str(state)).set(1 if status.state is state else 0)
            self.stream_events.labels(status.account).set(status.events)
            self.stream_connects.labels(status.account).set(status.connects)
            self.stream_unreadable.labels(status.account).set(status.unreadable_frames)

    def on_check(self, filed: FiledCheck) -> None:
        """A reconciler listener."""
        result = filed.result
        for status in result.accounts:
            self.checks.labels(status.account, status.status).inc()
        if result.started_at and result.finished_at:
            self.check_duration.observe((result.finished_at - result.started_at).total_seconds())

    def on_delivery(self, channel: str, sent: bool) -> None:
        self.alerts.labels(channel, "sent" if sent else "failed").inc()


class OpsServer:
    """A small aiohttp server in reconbot's own event loop."""

    def __init__(
        self,
        metrics: Metrics,
        findings: FindingsStore | None,
        outbox: Outbox | None,
        accounts: Sequence[str],
        stale_after_s: float,
    ):
        self.metrics = metrics
        self.findings = findings
        self.outbox = outbox
        self.accounts = list(accounts)
        self.stale_after_s = stale_after_s
        self.waiting_for: str | None = "starting"
        self.streams: Callable[[], list[StreamStatus]] | None = None
        self.shards: Callable[[], Awaitable[ShardStatus]] | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def attach(self, findings: FindingsStore, outbox: Outbox) -> None:
        """The database answers: health now comes from each account's last check."""
        self.findings = findings
        self.outbox = outbox
        self.waiting_for = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_page)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("ops: /healthz and /metrics on %s:%s", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy when every account has been checked within ``stale_after_s``; failed checks count as checks.
        While start-up waits (for the database, say), unhealthy with what it waits for."""
        if self.findings is None or self.waiting_for is not None:
            return False, {"status": "starting", "problems": [self.waiting_for or "starting"], "accounts": {}}
        checks = await self.findings.account_checks()
        now = datetime.now(UTC)
        accounts: dict[str, object] = {}
        problems = []
        for name in self.accounts:
            check = checks.get(name)
            if check is None:
                problems.append(f"{name}: not checked yet")
                accounts[name] = {"status": "never checked"}
                continue
            age = (now - check["checked_at"]).total_seconds()
            accounts[name] = {
                "last_check": check["checked_at"].isoformat(),
                "age_s": round(age, 1),
                "result": "ok" if check["ok"] else "unchecked",
                "error": check["error"],
            }
            if age > self.stale_after_s:
                problems.append(f"{name}: last check {age:.0f}s ago (more than {self.stale_after_s:.0f}s)")
        body: dict[str, object] = {
            "status": "ok" if not problems else "stale",
            "problems": problems,
            "accounts": accounts,
        }
        if self.shards is not None:
            shards = await self.shards()
            body["shards"] = {
                "held": list(shards.held),
                "of": shards.shards,
                "replicas": shards.replicas,
                "holders": {h.replica: list(h.shards) for h in shards.holders},
            }
        if self.streams is not None:  # informational: a stream that is down leaves the account polled
            body["streams"] = {
                s.account: {"state": str(s.state), "since": s.since.isoformat(), "error": s.error}
                for s in self.streams()
            }
        return not problems, body

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            healthy, body = await self.health()
        except Exception as exc:
            healthy, body = False, {"status": "error", "problems": [f"database: {type(exc).__name__}"]}
        return web.Response(
            status=200 if healthy else 503, text=json.dumps(body, indent=2), content_type="application/json"
        )

    async def metrics_page(self, request: web.Request) -> web.Response:
        if self.findings is not None and self.outbox is not None:
            await self._refresh(self.findings, self.outbox)
        if self.streams is not None:
            self.metrics.on_streams(self.streams())
        if self.shards is not None:
            self.metrics.on_shards(await self.shards())
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _refresh(self, findings: FindingsStore, outbox: Outbox) -> None:
        try:
            counts = dict.fromkeys((k.value for k in FindingKind), 0)
            for row in await findings.pool.fetch(
                "SELECT kind, count(*) AS n FROM reconbot.findings WHERE state = ANY($1::text[]) GROUP BY kind",
                [str(s) for s in LIVE_STATES],
            ):
                counts[row["kind"]] = row["n"]
            for kind, n in counts.items():
                self.metrics.open_findings.labels(kind).set(n)
            self.metrics.outbox_depth.set(await outbox.depth())
        except Exception:
            log.warning("metrics: could not refresh from the database", exc_info=True)
