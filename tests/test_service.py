"""`run` as a whole: scheduled checks, the life of findings, the durable outbox, auto-fix, start and stop.

Intervals are seconds, not minutes; everything else is real (aiogram, ccxt, PostgreSQL, SMTP)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import signal
import socket
import sqlite3
import ssl
import struct
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from pydantic import SecretStr

from app.service import start_service
from app.startup import StartupError
from services.fixes import GHOST_EXIT_REASON
from services.model import ALL_KINDS
from tests.chatops import ALERT_CHAT, OPERATOR, telegram_settings, without_presence
from tests.conftest import TELEGRAM_TOKEN
from tests.helpers import (
    delivery_replica,
    fetch_audit,
    fetch_positions_table,
    insert_positions,
    lock_holders,
    prepare_database,
    queue_rows,
    running,
    until,
)
from tests.helpers import position_row as row

ROOT = Path(__file__).resolve().parent.parent


def alert_chat(telegram):
    """The alert chat's messages, less the start and stop notices (tests/test_presence.py)."""
    return without_presence(telegram.messages(ALERT_CHAT))


def fast(**scan):
    return {"orphan_interval_s": 1, "reconcile_interval_s": 1, "jitter_s": 0, **scan}


async def outbox_rows(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM reconbot.outbox ORDER BY id")]
    finally:
        await conn.close()


async def test_both_jobs_run_at_start_and_share_one_snapshot(database_url, new_account, telegram):
    bybit = new_account("bybit")
    settings = telegram_settings(
        database_url, [bybit], telegram, scan=fast(orphan_interval_s=60, reconcile_interval_s=60)
    )
    async with running(settings) as service:
        await until(lambda: service.reconciler.last is not None)
        assert service.reconciler.last.result.kinds == ALL_KINDS
        await asyncio.sleep(0.5)
        # One check: the start-up probe and one confirmed read (no findings, so no second read).
        assert bybit.request_count("positions") == 2 * 3
        runs = service.scheduler.next_runs()
        assert set(runs) == {"orphan scan", "reconciliation"}


async def test_same_drift_is_one_alert_then_a_reminder(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    settings = telegram_settings(
        database_url, [bybit], telegram, scan=fast(), alerts={"remind_after_s": 2.5, "console": False}
    )
    async with running(settings) as service:
        await until(lambda: len(alert_chat(telegram)) >= 1)
        await asyncio.sleep(1.5)
        assert len(alert_chat(telegram)) == 1, "seen every second, announced once"
        await until(lambda: len(alert_chat(telegram)) >= 2, timeout=10)
        reminder = alert_chat(telegram)[1]
        assert reminder.text.startswith("⏰ Still open: 1")
        assert "Orphan AVLUSDT LONG" in reminder.text and reminder.silent, "one quiet list, not a second alert"
        assert reminder.button_texts == ["1"], "a number that opens its card, no fix buttons"
        assert service.scheduler.runs >= 3


async def test_snooze_silences_until_it_ends(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    settings = telegram_settings(
        database_url,
        [bybit],
        telegram,
        scan=fast(),
        alerts={"remind_after_s": 1, "console": False},
        telegram={"snooze_s": 3},
    )
    async with running(settings) as service:
        await until(lambda: alert_chat(telegram))
        [alert] = alert_chat(telegram)
        finding_id = int(alert.callback_data[0].split(":")[2])
        until_at = service.runtime.monitor.now()
        await service.runtime.findings.set_state(
            finding_id,
            "snoozed",
            by="tester",
            destinations=service.reconciler.destinations,
            snoozed_until=until_at + timedelta(seconds=3),
        )
        service.reconciler.wake()
        await until(lambda: "Snoozed by tester" in telegram.message(ALERT_CHAT, alert.message_id).text)
        await asyncio.sleep(2)
        assert len(alert_chat(telegram)) == 1, "no reminder while snoozed"
        await until(lambda: len(alert_chat(telegram)) >= 2, timeout=10)
        assert alert_chat(telegram)[1].text.startswith("⏰ Still open")
        assert "Snoozed" not in telegram.message(ALERT_CHAT, alert.message_id).text


async def test_resolution_edits_the_alert(database_url, new_account, telegram):
    binance = new_account("binance")
    await prepare_database(database_url)
    await insert_positions(database_url, [row(binance, "BTCUSDT", "long", "1")])
    settings = telegram_settings(database_url, [binance], telegram, scan=fast(), alerts={"console": False})
    async with running(settings):
        await until(lambda: alert_chat(telegram))
        [alert] = alert_chat(telegram)
        assert "Ghost position" in alert.text
        binance.set_position("BTCUSDT", "long", Decimal("1"), stop_loss=Decimal("60000"))
        await until(lambda: "Resolved" in telegram.message(ALERT_CHAT, alert.message_id).text)
        edited = telegram.message(ALERT_CHAT, alert.message_id)
        assert "drift no longer seen" in edited.text
        assert not edited.has_keyboard
        assert len(alert_chat(telegram)) == 1


async def test_unchecked_account_alerts_once_and_recovers_once(database_url, new_account, telegram):
    bybit = new_account("bybit")
    settings = telegram_settings(
        database_url, [bybit], telegram, scan=fast(), alerts={"unchecked_after": 2, "console": False}
    )
    async with running(settings) as service:
        bybit.fail("rate_limit", endpoint="positions")
        await until(lambda: any("not reachable since" in m.text for m in alert_chat(telegram)))
        [notice] = [m for m in alert_chat(telegram) if "not reachable" in m.text]
        assert notice.text.startswith(f"{bybit.name}: exchange not reachable since ")
        assert "rate limited" in notice.text
        runs = service.scheduler.runs
        await until(lambda: service.scheduler.runs >= runs + 2)
        assert sum("not reachable" in m.text for m in alert_chat(telegram)) == 1
        bybit.clear_faults()
        await until(lambda: any("reachable again" in m.text for m in alert_chat(telegram)))
        runs = service.scheduler.runs
        await until(lambda: service.scheduler.runs >= runs + 2)
        assert sum("reachable again" in m.text for m in alert_chat(telegram)) == 1


async def test_auto_fix_closes_confirmed_ghosts(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.set_position("ETHUSDT", "long", Decimal("0.5"))
    await prepare_database(database_url)
    ghost_id, mismatch_id = await insert_positions(
        database_url, [row(binance, "BTCUSDT", "long", "1"), row(binance, "ETHUSDT", "long", "1")]
    )
    settings = telegram_settings(
        database_url, [binance], telegram, scan=fast(auto_fix_ghosts=True), alerts={"console": False}
    )
    async with running(settings):
        await until(lambda: any("Fixed by reconbot (auto-fix)" in m.text for m in alert_chat(telegram)))
    rows = {r["id"]: r for r in await fetch_positions_table(database_url)}
    assert (rows[ghost_id]["status"], rows[ghost_id]["exit_reason"]) == ("closed", GHOST_EXIT_REASON)
    assert (rows[mismatch_id]["status"], rows[mismatch_id]["quantity"]) == ("active", Decimal("1")), (
        "size mismatches are never auto-fixed"
    )
    [entry] = await fetch_audit(database_url)
    assert (entry["actor"], entry["action"], entry["outcome"]) == ("reconbot (auto-fix)", "close_ghost", "done")


async def test_auto_fix_beyond_the_limit_asks_a_human(database_url, new_account, telegram):
    binance = new_account("binance")
    await prepare_database(database_url)
    await insert_positions(
        database_url, [row(binance, m, "long", "1") for m in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")]
    )
    settings = telegram_settings(
        database_url,
        [binance],
        telegram,
        scan=fast(auto_fix_ghosts=True, auto_fix_max_per_run=3),
        alerts={"console": False},
    )
    async with running(settings):
        await until(lambda: any("more than the auto-fix limit of 3" in m.text for m in alert_chat(telegram)))
    assert {r["status"] for r in await fetch_positions_table(database_url)} == {"active"}
    assert await fetch_audit(database_url) == []


async def test_a_failing_job_is_logged_and_runs_again(database_url, new_account, telegram, caplog):
    binance = new_account("binance")
    settings = telegram_settings(database_url, [binance], telegram, scan=fast(), alerts={"console": False})
    async with running(settings) as service:
        await until(lambda: service.reconciler.last is not None)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("ALTER TABLE positions RENAME TO positions_away")
            await until(lambda: service.scheduler.failures >= 1)
            await conn.execute("ALTER TABLE positions_away RENAME TO positions")
        finally:
            await conn.close()
        failures = service.scheduler.failures
        last = service.reconciler.last
        await until(lambda: service.reconciler.last is not last)
        assert service.scheduler.failures == failures, "it recovered"
    assert "scheduled" in caplog.text and "Traceback" in caplog.text


async def test_telegram_outage_keeps_alerts_queued_until_it_recovers(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    settings = telegram_settings(database_url, [bybit], telegram, scan=fast(), alerts={"console": False})
    async with running(settings) as service:
        telegram.fail(method="sendMessage", status=500, times=None)
        await until(lambda: service.reconciler.last is not None and service.reconciler.last.new)
        await until(lambda: service.chatops.delivery.failed >= 1, timeout=20)
        rows = await outbox_rows(database_url)
        assert rows[0]["attempts"] >= 1, "Telegram refused the first in line (the start notice)"
        assert [r["sent_at"] for r in rows if r["kind"] == "alert"] == [None], "the alert waits in the outbox"
        assert alert_chat(telegram) == []
        telegram.clear_faults()
        service.chatops.delivery.wake()
        await until(lambda: alert_chat(telegram), timeout=20)
        await asyncio.sleep(0.5)
        assert len(alert_chat(telegram)) == 1, "delivered once"
        assert [r["sent_at"] is not None for r in await outbox_rows(database_url) if r["kind"] == "alert"] == [True]


async def test_email_alerts_over_starttls(database_url, new_account, telegram, tmp_path):
    import trustme
    from aiosmtpd.controller import Controller

    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    received = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            received.append((session.ssl is not None, envelope.rcpt_tos, envelope.content.decode()))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port, tls_context=server_context, require_starttls=True)
    controller.start()
    try:
        bybit = new_account("bybit")
        bybit.set_position("AVLUSDT", "long", Decimal("86"))
        settings = telegram_settings(
            database_url,
            [bybit],
            telegram,
            scan=fast(),
            alerts={
                "console": False,
                "email": {
                    "host": "localhost",
                    "port": port,
                    "ca_file": str(ca_file),
                    "recipients": ["desk@example.com"],
                    "sender": "bot@example.com",
                },
            },
        )
        async with running(settings):
            await until(lambda: len(received) >= 2, timeout=20)  # watching started; the orphan
            bybit.set_position("AVLUSDT", "long", Decimal("258"))
            await until(lambda: len(received) >= 3, timeout=20)
            await asyncio.sleep(1.5)
    finally:
        controller.stop()
    received = [r for r in received if "Watching" not in r[2]]  # the start and stop notices
    tls, recipients, content = received[0]
    assert tls is True
    assert recipients == ["desk@example.com"]
    assert f"Subject: [reconbot] Orphan AVLUSDT LONG on {bybit.name}" in content
    assert "NO STOP LOSS" in content
    assert len(received) == 2, "a growth is one e-mail: the alert, no separate update"
    _tls, _recipients, grew = received[1]
    assert f"Subject: [reconbot] Grew: Orphan AVLUSDT LONG on {bybit.name}" in grew
    body = email.message_from_string(grew, policy=email.policy.default).get_content()
    assert body.startswith("Orphan position grew · AVLUSDT LONG 86 → 258 contracts (≈ 64.50 USDT) — alerted at 86")


async def test_startup_names_each_problem(database_url, new_account, telegram):
    good, bad = new_account("binance"), new_account("bybit")
    settings = telegram_settings(database_url, [good, bad], telegram)
    wrong_secret = settings.accounts[1].model_copy(update={"secret": SecretStr("x")})
    bad_settings = settings.model_copy(update={"accounts": [settings.accounts[0], wrong_secret]})
    await prepare_database(database_url)
    with pytest.raises(StartupError) as caught:
        await start_service(bad_settings, say=lambda _: None)
    assert caught.value.problems == [
        f"account {bad.name}: authentication failed (check the API key and secret): "
        + caught.value.problems[0].split(": ", 2)[2]
    ]

    wrong_token = settings.model_copy(
        update={"telegram": settings.telegram.model_copy(update={"token": SecretStr("123456:WRONG")})}
    )
    with pytest.raises(StartupError) as caught:
        await start_service(wrong_token, say=lambda _: None)
    assert caught.value.problems == ["telegram: the bot token was rejected (check RECONBOT_TELEGRAM__TOKEN)"]


def run_config(tmp_path, database_url, accounts, telegram, **scan):
    config = {
        "database": {"url": database_url},
        "accounts": [
            {
                "name": a.name,
                "exchange": a.exchange_id,
                "api_key": a.api_key,
                "secret": a.secret,
                "api_base_url": a.base_url,
                "timeout_s": 5,
            }
            for a in accounts
        ],
        "scan": {"grace_s": 0, "verify_delay_s": 0, **fast(**scan)},
        "telegram": {"api_base_url": telegram.base_url, "alert_chat_ids": [ALERT_CHAT], "operators": [OPERATOR]},
        "alerts": {"console": True},
        "ops": {"listen": "127.0.0.1:0"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def start_run(config):
    env = {**os.environ, "RECONBOT_TELEGRAM__TOKEN": TELEGRAM_TOKEN}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "main.py",
        "run",
        "--config",
        str(config),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(process, fragment, timeout=30.0):
    lines = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError("process ended:\n" + "".join(lines))
            lines.append(line)
            if fragment in line:
                return lines


async def test_outbox_survives_a_killed_process(tmp_path, database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await prepare_database(database_url)
    config = run_config(tmp_path, database_url, [bybit], telegram)
    telegram.fail(method="sendMessage", status=500, times=None)
    process = await start_run(config)
    try:
        await read_until(process, "NEW ALERT")
        await until(lambda: outbox_rows(database_url), timeout=20)
    finally:
        process.kill()
        await process.wait()
    assert alert_chat(telegram) == []
    telegram.clear_faults()
    process = await start_run(config)
    try:
        await until(lambda: alert_chat(telegram), timeout=30)
        await asyncio.sleep(2.5)  # more rounds: the same orphan is not announced again
    finally:
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 0, output
    alerts = [m for m in alert_chat(telegram) if "Orphan position" in m.text]
    assert len(alerts) == 1


async def test_sigterm_lets_the_running_check_finish(tmp_path, database_url, new_account, telegram):
    bybit = new_account("bybit")
    await prepare_database(database_url)
    config = run_config(tmp_path, database_url, [bybit], telegram, orphan_interval_s=60, reconcile_interval_s=60)
    process = await start_run(config)
    try:
        await read_until(process, "reconbot running")
        await until(lambda: bybit.request_count("positions") >= 6)
        bybit.fail("timeout", endpoint="positions", times=1)  # the next read hangs ~3 s (emulator delay)
        bybit.set_position("AVLUSDT", "long", Decimal("86"))
        telegram.user_sends(OPERATOR, "/scan", username="op")
        await until(lambda: bybit.faults == [] or bybit.request_count("positions") >= 7, timeout=20)
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), 40))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, output
    assert "stopping: finishing the running check" in output
    assert output.rstrip().endswith("stopped")
    assert output.index("stopping:") < output.index("NEW ALERT"), "the check in flight finished after SIGTERM"
    alerts = [m for m in alert_chat(telegram) if "Orphan position" in m.text]
    assert len(alerts) == 1, [m.text for m in alerts]


async def test_queued_alerts_arrive_in_order_after_an_outage(database_url, new_account, telegram):
    bybit = new_account("bybit")
    for market in ("AVLUSDT", "SOLUSDT", "XRPUSDT"):
        bybit.set_position(market, "long", Decimal("5"))
    settings = telegram_settings(database_url, [bybit], telegram, scan=fast(), alerts={"console": False})
    telegram.down = True
    async with running(settings) as service:
        await until(lambda: service.reconciler.last is not None and len(service.reconciler.last.live) == 3)
        queued = [r for r in await outbox_rows(database_url) if r["kind"] == "alert"]
        assert len(queued) == 3 and all(r["sent_at"] is None for r in queued)
        telegram.down = False
        service.chatops.delivery.wake()
        await until(lambda: len(alert_chat(telegram)) >= 3, timeout=40)
        order = [int(m.callback_data[0].split(":")[2]) for m in alert_chat(telegram)[:3]]
        assert order == [r["finding_id"] for r in queued], "in the order they were queued"


async def test_auto_fix_never_touches_an_unchecked_account(database_url, new_account, telegram):
    binance = new_account("binance")
    await prepare_database(database_url)
    await insert_positions(database_url, [row(binance, "BTCUSDT", "long", "1")])
    binance.fail("http_500", endpoint="positions")
    settings = telegram_settings(
        database_url, [binance], telegram, scan=fast(auto_fix_ghosts=True), alerts={"console": False}
    )
    async with running(settings) as service:
        runs = service.scheduler.runs
        await until(lambda: service.scheduler.runs >= runs + 3)
    assert (await fetch_positions_table(database_url))[0]["status"] == "active"
    assert await fetch_audit(database_url) == []


async def test_startup_refuses_without_the_positions_table(database_url, new_account, telegram):
    binance = new_account("binance")
    settings = telegram_settings(database_url, [binance], telegram)
    with pytest.raises(StartupError) as caught:
        await start_service(settings, say=lambda _: None)
    [problem] = caught.value.problems
    assert problem.startswith("database: positions table positions does not exist; run `python main.py migrate`")


async def test_health_and_metrics_over_http(database_url, new_account, telegram):
    bybit, binance = new_account("bybit"), new_account("binance")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    settings = telegram_settings(
        database_url,
        [bybit, binance],
        telegram,
        scan=fast(),
        alerts={"console": False},
        ops={"listen": "127.0.0.1:0", "stale_after_s": 2},
    )
    async with running(settings) as service, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{service.ops.port}"
        await until(lambda: alert_chat(telegram))
        async with http.get(f"{base}/healthz") as response:
            body = await response.json()
            assert response.status == 200, body
            assert body["status"] == "ok"
            assert set(body["accounts"]) == {bybit.name, binance.name}
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        assert f'reconbot_checks_total{{account="{bybit.name}",result="ok"}}' in text
        assert 'reconbot_open_findings{kind="orphan"} 1.0' in text
        assert 'reconbot_alerts_total{channel="telegram",outcome="sent"}' in text
        assert "reconbot_check_duration_seconds_count" in text
        assert "reconbot_outbox_depth 0.0" in text
        service.scheduler.shutdown()  # no more rounds: the last checks grow stale
        await asyncio.sleep(2.5)
        async with http.get(f"{base}/healthz") as response:
            body = await response.json()
            assert response.status == 503
            assert body["status"] == "stale"
            assert any(p.startswith(f"{bybit.name}: last check") for p in body["problems"])


async def test_stop_lets_a_scheduled_check_in_flight_finish(database_url, new_account, telegram):
    """APScheduler cancels running jobs on shutdown; the check itself must still finish and be filed."""
    bybit = new_account("bybit")
    settings = telegram_settings(
        database_url,
        [bybit],
        telegram,
        scan=fast(),
        alerts={"console": False},
        ops={"listen": None},
        account={"timeout_s": 10},
    )
    await prepare_database(database_url)
    service = await start_service(settings, say=lambda _: None)
    try:
        await until(lambda: service.reconciler.last is not None)
        bybit.set_position("AVLUSDT", "long", Decimal("86"))
        bybit.fail("timeout", endpoint="positions", times=1)  # the next scheduled read hangs ~3 s
        await until(lambda: not bybit.faults, timeout=10)
    finally:
        started = asyncio.get_running_loop().time()
        await service.stop(check_timeout_s=20, flush_timeout_s=3)
    assert asyncio.get_running_loop().time() - started > 1, "stop waited for the check"
    assert [f.key.market for f in service.reconciler.last.new] == ["AVLUSDT"], "the check in flight was filed"
    assert [m for m in alert_chat(telegram) if "AVLUSDT" in m.text], "and its alert flushed"


# -- start-up through what is transient ------------------------------------------------------------------------


class DatabaseProxy:
    """A TCP port in front of the test's PostgreSQL that refuses connections until opened: a database that is
    down at boot and comes up later. ``frozen`` holds every byte in both directions without closing anything:
    the network cut off, as far as either end can tell."""

    def __init__(self, database_url: str):
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(database_url)
        self.socket_dir = parse_qs(parts.query).get("host", [None])[0]
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.database = parts.path.lstrip("/")
        self.user = parts.username or "postgres"
        self.server: asyncio.Server | None = None
        self.open = False
        self.refusal: tuple[str, str] | None = None  # (SQLSTATE, message) answered to every new connection
        self._flowing = asyncio.Event()
        self._flowing.set()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    @frozen.setter
    def frozen(self, value: bool) -> None:
        if value:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusal is not None:
            await self._refuse(reader, writer, *self.refusal)
            return
        if not self.open:
            writer.close()
            return
        if self.socket_dir:
            upstream = await asyncio.open_unix_connection(f"{self.socket_dir}/.s.PGSQL.{self.target[1]}")
        else:
            upstream = await asyncio.open_connection(*self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await source.read(65536):
                    await self._flowing.wait()
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))

    @staticmethod
    async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, code: str, message: str) -> None:
        """What PostgreSQL answers a new connection while it starts or stops: it declines SSL/GSS, reads the
        startup packet, and sends a FATAL ErrorResponse with the SQLSTATE (protocol v3, "Message Formats")."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                length, request = struct.unpack("!ii", await reader.readexactly(8))
                if request not in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                    break
                writer.write(b"N")
            await reader.readexactly(length - 8)
            fields = b"".join(
                kind + value.encode() + b"\0"
                for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
            )
            writer.write(b"E" + struct.pack("!i", len(fields) + 5) + fields + b"\0")
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def ops_port(process) -> int:
    """The port ``run`` says its /healthz listens on."""
    lines = await read_until(process, "ops: GET /healthz")
    return int(lines[-1].rsplit(":", 1)[1])


async def terminate(process) -> str:
    """SIGTERM, and the rest of what it printed."""
    process.send_signal(signal.SIGTERM)
    return (await asyncio.wait_for(process.communicate(), 30))[0].decode()


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


@pytest.mark.parametrize(
    "refusal",
    [
        None,  # nothing listens: "cannot connect"
        ("57P03", "the database system is starting up"),
        ("57P03", "the database system is shutting down"),
        ("57P01", "terminating connection due to administrator command"),
    ],
    ids=["down", "starting-up", "shutting-down", "admin-shutdown"],
)
async def test_run_waits_for_a_database_that_is_not_up_yet(tmp_path, database_url, new_account, telegram, refusal):
    """Down, starting, stopping or restarting (the server's own SQLSTATE): waited for, never exit 3."""
    bybit = new_account("bybit")
    bybit.set_position("AVLUSDT", "long", Decimal("86"))
    await prepare_database(database_url)
    proxy = DatabaseProxy(database_url)
    proxy.refusal = refusal
    await proxy.start()
    config = run_config(tmp_path, proxy.url, [bybit], telegram)
    process = await start_run(config)
    try:
        port = await ops_port(process)
        waiting = (await read_until(process, "waiting: database: cannot connect to PostgreSQL"))[-1]
        assert "trying again in" in waiting and (refusal is None or refusal[1] in waiting), waiting
        status, body = await http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and '"status": "starting"' in body and "waiting for database" in body
        assert process.returncode is None, "still up, not exited"
        proxy.refusal, proxy.open = None, True
        await read_until(process, "reconbot running", timeout=90)
        await read_until(process, "NEW ALERT")
        await until(lambda: alert_chat(telegram), timeout=30)
        output = await terminate(process)
    finally:
        if process.returncode is None:
            process.kill()
        await proxy.stop()
    assert process.returncode == 0, output
    assert TELEGRAM_TOKEN not in output and bybit.secret not in output


async def test_run_waits_for_a_sqlite_file_its_bot_holds(tmp_path, database_url, new_account, telegram):
    """freqtrade holds its SQLite file with BEGIN EXCLUSIVE while it writes: a lock that passes, waited for."""
    from tests.test_reach import freqtrade_sqlite

    binance = new_account("binance")
    await prepare_database(database_url)
    freqtrade_sqlite(tmp_path / "tradesv3.sqlite")
    config = run_config(tmp_path, database_url, [binance], telegram)
    data = yaml.safe_load(config.read_text())
    data["positions"] = {"preset": "freqtrade", "url": "sqlite:///tradesv3.sqlite"}
    config.write_text(yaml.safe_dump(data))
    holder = sqlite3.connect(tmp_path / "tradesv3.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    process = await start_run(config)
    try:
        port = await ops_port(process)
        waiting = (await read_until(process, "waiting: ", timeout=60))[-1]
        assert "database is locked" in waiting and "trying again in" in waiting, waiting
        status, body = await http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and '"status": "starting"' in body
        assert process.returncode is None, "still up, not exited"
        holder.execute("COMMIT")
        await read_until(process, f"check account={binance.name} result=ok", timeout=90)
        output = await terminate(process)
    finally:
        holder.close()
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, output


async def test_run_logs_one_line_per_account_per_check_and_never_the_token(
    tmp_path, database_url, new_account, telegram
):
    bybit, binance = new_account("bybit"), new_account("binance")
    await prepare_database(database_url)
    config = run_config(tmp_path, database_url, [bybit, binance], telegram)
    process = await start_run(config)
    try:
        lines = await read_until(process, f"check account={binance.name} result=ok")
        process.send_signal(signal.SIGTERM)
        output = "".join(lines) + (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
    line = next(x for x in output.splitlines() if f"check account={bybit.name} " in x)
    for field in ("result=ok", "duration_ms=", "exchange_positions=0", "db_positions=0", "findings=0"):
        assert field in line, line
    assert TELEGRAM_TOKEN not in output


async def test_an_unreachable_bot_api_warns_without_the_token(tmp_path, database_url, new_account, telegram):
    bybit = new_account("bybit")
    await prepare_database(database_url)
    config = run_config(tmp_path, database_url, [bybit], telegram)
    data = yaml.safe_load(config.read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    data["telegram"]["api_base_url"] = f"http://127.0.0.1:{closed_port}"
    config.write_text(yaml.safe_dump(data))
    process = await start_run(config)
    try:
        lines = await read_until(process, "reconbot running")
        process.send_signal(signal.SIGTERM)
        output = "".join(lines) + (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
    assert "warning: telegram is not reachable now" in output
    assert TELEGRAM_TOKEN not in output and TELEGRAM_TOKEN.split(":")[1] not in output


async def test_a_malformed_bot_api_url_is_a_config_error_without_the_token(
    tmp_path, database_url, new_account, telegram
):
    bybit = new_account("bybit")
    config = run_config(tmp_path, database_url, [bybit], telegram)
    data = yaml.safe_load(config.read_text())
    data["telegram"]["api_base_url"] = "http://127.0.0.1:notaport"
    config.write_text(yaml.safe_dump(data))
    process = await start_run(config)
    output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 3
    assert "telegram.api_base_url: must be an http:// or https:// URL" in output
    assert TELEGRAM_TOKEN not in output


# -- the delivery loop at rest ----------------------------------------------------------------------------------


async def test_an_idle_deliverer_sleeps_until_an_alert_is_queued(db):
    """With nothing to send, the deliverer sends the database (next to) nothing; an alert queued by another
    process (another replica's check) still wakes it at once, through LISTEN/NOTIFY."""
    queries: list[object] = []
    sends: list[int] = []
    async with delivery_replica(db, "idle-replica", sends, on_query=queries.append) as deliverer:
        await until(lambda: lock_holders(db, deliverer.lock_key))
        await asyncio.sleep(0.5)
        before = len(queries)
        await asyncio.sleep(3)
        assert len(queries) - before <= 1, f"{len(queries) - before} statements in 3 s of idleness"
        [queued] = await queue_rows(db, deliverer.channel, ["desk"], 1)
        await until(lambda: sends, timeout=2)
        assert sends == [queued]
