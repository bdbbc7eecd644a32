"""Live streams as triggers, end to end: the loopback venues push position and order changes on their private
WebSocket streams (Binance's user data stream, Bybit's /v5/private), real ccxt.pro clients hear them, and the
account is checked through reconbot's own REST read within seconds — confirmed, filed and sent to the loopback
Bot API. Polling stays the safety net: a dropped stream raises a notice, the account is polled, and the stream
comes back with a full check."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from decimal import Decimal

import aiohttp
import asyncpg
import pytest
import yaml

from app.service import start_service
from services.model import ALL_KINDS
from services.settings import AccountSettings, OpsSettings
from services.streams import EXCERPT_CHARS, Backoff, StreamState, excerpt
from services.venues import Gateway, gateway_for
from tests.chatops import ALERT_CHAT, telegram_settings, without_presence
from tests.helpers import account_config, cli, config_dict, insert_positions, prepare_database, running, until
from tests.helpers import position_row as row

SLOW = {
    "orphan_interval_s": 3600,
    "reconcile_interval_s": 3600,
    "jitter_s": 0,
    "grace_s": 0,
    "require_stop_loss": False,
}
FAST_CONFIRM = {"verify_delay_s": 0.2, "stream_settle_s": 0.1, "db_poll_s": 0.3}


def ws_base(account) -> str:
    return "ws" + account.base_url[4:]


def streaming(database_url, accounts, telegram, *, scan=None, ws=True, **overrides):
    settings = telegram_settings(
        database_url,
        accounts,
        telegram,
        scan={**SLOW, **FAST_CONFIRM, **(scan or {})},
        alerts={"console": False},
        ops=OpsSettings(listen="127.0.0.1:0"),
        **overrides,
    )
    if ws:
        accounts_by_name = {a.name: a for a in accounts}
        updated = [a.model_copy(update={"ws_base_url": ws_base(accounts_by_name[a.name])}) for a in settings.accounts]
        settings = settings.model_copy(update={"accounts": updated})
    return settings


def texts(telegram) -> list[str]:
    """The alert chat, less the start and stop notices (tests/test_presence.py)."""
    return [m.text for m in without_presence(telegram.messages(ALERT_CHAT))]


async def settled(service, account_name: str) -> None:
    """The start-up checks are done and the account's stream is up (and its connect check ran)."""
    stream = service.streams.streams[account_name]
    await until(lambda: stream.state is StreamState.UP)
    await until(lambda: service.checks.runs >= 1 and service.checks.due_in(account_name) is None)
    await service.reconciler.wait_idle(10)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_a_liquidation_reaches_the_phone_in_seconds(database_url, new_account, telegram, venue):
    account = new_account(venue)
    account.set_position("BTCUSDT", "long", Decimal("0.5"), entry_price=Decimal("62000"))
    await prepare_database(database_url)
    await insert_positions(database_url, [row(account, "BTCUSDT", "long", "0.5")])
    async with running(streaming(database_url, [account], telegram)) as service:
        await settled(service, account.name)
        assert texts(telegram) == [], "the books match"
        started = time.monotonic()
        account.close_position("BTCUSDT", "long", cause="liquidation", price="55000")
        await until(lambda: any("was liquidated" in t for t in texts(telegram)))
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"{elapsed:.2f}s: the stream, not the hourly schedule, found it"
        assert service.scheduler.runs == 2, "only the start-up runs of the two jobs"
        [alert] = texts(telegram)
        assert "GHOST" in alert.upper() and "BTCUSDT" in alert


async def test_an_event_the_rest_read_does_not_confirm_raises_nothing(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("ETHUSDT", "long", Decimal("2"), entry_price=Decimal("3000"), stop_loss=2800)
    await prepare_database(database_url)
    await insert_positions(database_url, [row(bybit, "ETHUSDT", "long", "2")])
    async with running(streaming(database_url, [bybit], telegram)) as service:
        await settled(service, bybit.name)
        runs = service.checks.runs
        bybit.set_position_stops("ETHUSDT", "long", stop_loss=2850)  # an order event; the books still match
        await until(lambda: service.checks.runs > runs)
        await service.reconciler.wait_idle(10)
        await asyncio.sleep(0.3)
        assert texts(telegram) == []
        assert service.streams.streams[bybit.name].events >= 1


async def test_an_orphan_is_reported_when_its_grace_window_ends(database_url, new_account, telegram):
    binance = new_account("binance")
    await prepare_database(database_url)
    scan = {"grace_s": 1.5, "verify_delay_s": 5}  # the booked re-check is the second sighting: no third read
    async with running(streaming(database_url, [binance], telegram, scan=scan)) as service:
        await settled(service, binance.name)
        started = time.monotonic()
        binance.set_position("SOLUSDT", "short", Decimal("10"), entry_price=Decimal("150"))
        await until(lambda: service.checks.due_in(binance.name) is not None and service.checks.runs >= 2)
        await until(lambda: any("SOLUSDT" in t for t in texts(telegram)))
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 1.5 + 3, f"{elapsed:.2f}s: at the end of the grace window, not the next poll"


async def test_a_row_the_bot_closes_is_seen_within_seconds(database_url, new_account, telegram):
    bybit = new_account("bybit")
    bybit.set_position("XRPUSDT", "long", Decimal("100"), entry_price=Decimal("0.5"))
    await prepare_database(database_url)
    [pid] = await insert_positions(database_url, [row(bybit, "XRPUSDT", "long", "100")])
    async with running(streaming(database_url, [bybit], telegram)) as service:
        await settled(service, bybit.name)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE positions SET status = 'closed', updated_at = now() WHERE id = $1", int(pid))
        finally:
            await conn.close()
        await until(lambda: any("XRPUSDT" in t for t in texts(telegram)))
        assert service.db_poller.polls >= 2
        assert bybit.requests  # the DB poll itself costs no exchange request: only the triggered check read


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_a_dropped_stream_raises_a_notice_polling_goes_on_and_it_comes_back(
    database_url, new_account, telegram, venue
):
    account = new_account(venue)
    await prepare_database(database_url)
    settings = streaming(
        database_url,
        [account],
        telegram,
        # a grace longer than a slow start-up on a busy machine, whose own notices would be mistaken for these
        scan={"stream_grace_s": 3, "orphan_interval_s": 1, "reconcile_interval_s": 1},
    )
    async with running(settings) as service:
        stream = service.streams.streams[account.name]
        stream.backoff = Backoff(first_s=0.2, most_s=1.0)  # reconnect attempts within a second, not a minute
        await until(lambda: stream.state is StreamState.UP)
        connects, listen_key = stream.connects, account.listen_key
        account.stream_fault("unavailable")  # no new connection is accepted ...
        account.stream_fault("drop", times=1)  # ... and the open one is dropped
        await until(lambda: any("live stream down since" in t for t in texts(telegram)))
        [down] = [t for t in texts(telegram) if "live stream down" in t]
        assert down.startswith(f"{account.name}: live stream down since ") and "polling every 1 s" in down
        runs = service.scheduler.runs
        await until(lambda: service.scheduler.runs > runs)  # polling goes on
        account.set_position("BTCUSDT", "long", Decimal("1"))
        await until(lambda: any("BTCUSDT" in t for t in texts(telegram)))  # found by polling
        checks = service.checks.runs
        account.clear_stream_faults()
        await until(lambda: any("live stream back" in t for t in texts(telegram)), timeout=40)
        assert stream.connects == connects + 1
        await until(lambda: service.checks.runs > checks)  # the reconnect check
        assert sum("live stream down" in t for t in texts(telegram)) == 1, "one notice per outage"
        for secret in (account.api_key, account.secret, listen_key):
            assert not secret or not any(secret in t for t in texts(telegram))


async def test_an_expired_listen_key_is_replaced(database_url, new_account, telegram):
    binance = new_account("binance")
    await prepare_database(database_url)
    async with running(streaming(database_url, [binance], telegram)) as service:
        await settled(service, binance.name)
        first = binance.listen_key
        binance.stream_fault("expire_silent", times=1)  # Binance sends listenKeyExpired and goes quiet
        await until(lambda: binance.listen_key not in (None, first))
        await until(lambda: service.streams.streams[binance.name].state is StreamState.UP)
        binance.set_position("ETHUSDT", "long", Decimal("1"))
        await until(lambda: any("ETHUSDT" in t for t in texts(telegram)))


async def test_the_listen_key_is_kept_alive(database_url, new_account, telegram):
    binance = new_account("binance")
    binance.listen_key_ttl_s = 0.6
    await prepare_database(database_url)
    settings = streaming(database_url, [binance], telegram)
    await prepare_database(database_url)
    service = await start_service(settings, say=lambda _line: None)
    try:
        gateway = service.runtime.gateways[binance.name]
        gateway.listen_key_keepalive_s = 0.2
        stream = service.streams.streams[binance.name]
        await stream.stop()  # restart it with the short keep-alive
        stream.start()
        await until(lambda: stream.state is StreamState.UP)
        key, connects = binance.listen_key, stream.connects
        await asyncio.sleep(1.5)  # more than twice the key's lifetime
        assert (binance.listen_key, stream.connects, stream.state) == (key, connects, StreamState.UP)
        puts = [r for r in binance.requests if (r.method, r.path) == ("PUT", "/fapi/v1/listenKey")]
        assert len(puts) >= 4
    finally:
        await service.stop(check_timeout_s=10, flush_timeout_s=2)


async def test_stop_closes_every_stream(database_url, new_account, telegram):
    accounts = [new_account("binance"), new_account("bybit")]
    await prepare_database(database_url)
    settings = streaming(database_url, accounts, telegram)
    service = await start_service(settings, say=lambda _line: None)
    for account in accounts:
        await until(lambda account=account: service.streams.streams[account.name].state is StreamState.UP)
        assert len(account.open_streams) == 1
    await service.stop(check_timeout_s=10, flush_timeout_s=2)
    for account in accounts:
        await until(lambda account=account: not account.open_streams)
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(("stream ", "checks ", "db poller"))]
    assert left == []


async def test_an_account_without_a_websocket_base_polls_and_says_so_once(database_url, new_account, telegram):
    bybit = new_account("bybit")
    lines: list[str] = []
    settings = streaming(database_url, [bybit], telegram, ws=False, scan={"stream_grace_s": 0})
    async with running(settings, lines) as service:
        assert service.streams.streams == {}
        assert (
            lines.count(f"{bybit.name}: no live stream (api_base_url is set without ws_base_url); polled every 3600s")
            == 1
        )
        await asyncio.sleep(0.3)
        await service.streams.review()
        assert not any("live stream" in t for t in texts(telegram))
        assert bybit.open_streams == []


async def test_health_and_metrics_show_each_stream(database_url, new_account, telegram):
    binance, bybit = new_account("binance"), new_account("bybit")
    await prepare_database(database_url)
    settings = streaming(database_url, [binance, bybit], telegram)
    async with running(settings) as service:
        await settled(service, binance.name)
        await settled(service, bybit.name)
        base = f"http://127.0.0.1:{service.ops.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                body = await response.json()
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
        assert {name: s["state"] for name, s in body["streams"].items()} == {binance.name: "up", bybit.name: "up"}
        assert f'reconbot_stream_state{{account="{bybit.name}",state="up"}} 1.0' in metrics
        assert f'reconbot_stream_state{{account="{bybit.name}",state="down"}} 0.0' in metrics
        assert binance.api_key not in metrics and binance.secret not in metrics


async def test_streams_off_polls_every_account(database_url, new_account, telegram):
    binance = new_account("binance")
    lines: list[str] = []
    async with running(streaming(database_url, [binance], telegram, scan={"streams": False}), lines) as service:
        assert service.streams.streams == {}
        assert [s.state for s in service.streams.statuses()] == [StreamState.OFF]
        assert not any("no live stream" in line for line in lines), "turned off on purpose: nothing to say"
        assert binance.open_streams == []


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_ws_base_url_rebases_every_websocket_url_and_keeps_the_paths(new_account, venue):
    account = new_account(venue)
    settings = AccountSettings(**account_config(account, ws_base_url="wss://proxy.example:9443/"))
    gateway = gateway_for(settings)
    client = gateway.create_stream_client()
    stock = gateway.stream_class({}).urls["api"]

    def strings(tree, path=()):
        if isinstance(tree, dict):
            for key, value in tree.items():
                yield from strings(value, (*path, key))
        elif isinstance(tree, str):
            yield path, tree

    rebased = dict(strings(client.urls["api"]))
    for path, url in strings(stock):
        if url.startswith(("ws://", "wss://")):
            path_part = url.split("://", 1)[1].partition("/")[2]
            assert rebased[path] == f"wss://proxy.example:9443/{path_part}".rstrip("/"), (path, url)
        elif url.startswith(("http://", "https://")):
            assert rebased[path].startswith(account.base_url), (path, url)
    assert client.options["watchPositions"]["fetchPositionsSnapshot"] is False


async def test_grace_is_an_account_setting(tmp_path, db, new_account, capsys):
    patient, prompt = new_account("bybit"), new_account("bybit")
    for account in (patient, prompt):
        account.set_position("BTCUSDT", "long", Decimal("1"))
    config = config_dict(db, [patient, prompt])
    config["accounts"][0]["grace_s"] = 3600
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    _code, out, _ = await cli(capsys, "scan", "--config", path, "--json")
    report = json.loads(out)
    assert [f["account"] for f in report["findings"] if f["kind"] == "orphan"] == [prompt.name]
    assert report["pending"] == [{"account": patient.name, "symbol": "BTCUSDT", "side": "long"}]


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_the_stream_event_is_the_first_of_the_two_reads(database_url, new_account, telegram, venue):
    """A finding on the market and side the stream announced is confirmed by the one REST read it triggered;
    no second read ``verify_delay_s`` later (set to 30 s here, far beyond the wait)."""
    account = new_account(venue)
    account.set_position("ETHUSDT", "short", Decimal("4"), entry_price=Decimal("3000"))
    await prepare_database(database_url)
    await insert_positions(database_url, [row(account, "ETHUSDT", "short", "4")])
    async with running(streaming(database_url, [account], telegram, scan={"verify_delay_s": 30})) as service:
        await settled(service, account.name)
        since = time.time()
        account.close_position("ETHUSDT", "short", cause="adl", qty="1.5", price="2900")
        await until(lambda: any("ETHUSDT" in t for t in texts(telegram)), timeout=5)
        [alert] = texts(telegram)
        assert "auto-deleveraging" in alert, "a size cut by ADL says so"
        position_reads = [r for r in account.requests_since(since) if r.endpoint == "positions"]
        assert 1 <= len(position_reads) <= 3, "one read per category, no confirming second read"


async def test_sigterm_closes_every_stream_cleanly(tmp_path, database_url, new_account, telegram):
    from tests.test_service import read_until, run_config, start_run

    accounts = [new_account("binance"), new_account("bybit")]
    await prepare_database(database_url)
    path = run_config(tmp_path, database_url, accounts, telegram, orphan_interval_s=3600, reconcile_interval_s=3600)
    config = yaml.safe_load(path.read_text())
    for entry, account in zip(config["accounts"], accounts, strict=True):
        entry["ws_base_url"] = ws_base(account)
    path.write_text(yaml.safe_dump(config))
    process = await start_run(path)
    try:
        lines = await read_until(process, "reconbot running")
        assert "2 live stream(s)" in lines[-1]
        for account in accounts:
            await until(lambda account=account: len(account.open_streams) == 1)
        process.send_signal(signal.SIGTERM)
        output = "".join(lines) + (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, output
    assert output.rstrip().endswith("stopped")
    for account in accounts:
        assert account.open_streams == []
    for noise in ("Traceback", "Task was destroyed", "Unclosed", "Exception ignored"):
        assert noise not in output, output


async def test_checks_of_different_accounts_run_side_by_side(database_url, new_account, telegram):
    first, second = new_account("bybit"), new_account("binance")
    await prepare_database(database_url)
    settings = streaming(database_url, [first, second], telegram, scan={"verify_delay_s": 1.0}, ws=False)
    async with running(settings) as service:
        await service.reconciler.wait_idle(10)
        for account in (first, second):
            account.set_position("AVLUSDT", "long", Decimal("86"))
        a, b = await asyncio.gather(*(service.reconciler.check(ALL_KINDS, [x.name]) for x in (first, second)))
        assert a.result.started_at < b.result.finished_at and b.result.started_at < a.result.finished_at
        first.set_position("SOLUSDT", "long", Decimal("1"))
        c, d = await asyncio.gather(*(service.reconciler.check(ALL_KINDS, [first.name]) for _ in range(2)))
        earlier, later = sorted((c.result, d.result), key=lambda r: r.started_at)
        assert later.started_at >= earlier.finished_at, "checks of one account never overlap"


async def test_bybit_asks_once_whether_the_account_is_unified(database_url, new_account, telegram):
    bybit = new_account("bybit")
    await prepare_database(database_url)
    async with running(streaming(database_url, [bybit], telegram)) as service:
        stream = service.streams.streams[bybit.name]
        await until(lambda: stream.state is StreamState.UP)
        bybit.stream_fault("drop", times=1)
        await until(lambda: stream.connects == 2 and stream.state is StreamState.UP, timeout=15)
    asked = [r.path for r in bybit.requests if r.path in ("/v5/user/query-api", "/v5/account/info")]
    assert sorted(asked) == ["/v5/account/info", "/v5/user/query-api"], "once for the account, not per watcher"


def test_backoff_grows_with_jitter_up_to_its_cap_and_resets():
    backoff = Backoff(first_s=1.0, most_s=8.0)
    delays = [backoff.next_s() for _ in range(6)]
    for delay, ceiling in zip(delays, (1, 2, 4, 8, 8, 8), strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_s() <= 1.0


# -- frames reconbot cannot read, silence, and what a reconnect leaves behind -----------------------------------

HOSTILE = [
    ("binance", "malformed"),  # JSON cut off mid-object
    ("binance", "overflow"),  # an ACCOUNT_UPDATE position with "pa":"1e400"
    ("binance", "array"),  # a JSON array as the whole frame
    ("bybit", "malformed"),
    ("bybit", "overflow"),  # a position push with size 1e400
    ("bybit", "null_row"),  # an order push with data [null]
]


async def ops_page(service, path: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{service.ops.port}{path}") as response:
        return await response.text()


async def health(service) -> dict:
    return json.loads(await ops_page(service, "/healthz"))


@pytest.mark.parametrize(("venue", "kind"), HOSTILE)
async def test_a_frame_that_cannot_be_read_is_logged_once_and_skipped(
    database_url, new_account, telegram, caplog, venue, kind
):
    """ccxt's receive loop ends on any exception in its message handler; the stream would stay "up" and deaf.
    reconbot logs the frame (bounded, redacted), skips it, checks the account, and hears the next event."""
    account = new_account(venue)
    await prepare_database(database_url)
    async with running(streaming(database_url, [account], telegram)) as service:
        await settled(service, account.name)
        stream = service.streams.streams[account.name]
        connects, listen_key, runs = stream.connects, account.listen_key, service.checks.runs
        caplog.clear()
        caplog.set_level("INFO", logger="services.streams")
        account.stream_fault(kind, times=1)
        await until(lambda: service.checks.runs > runs, timeout=5)  # a frame it could not read may have been news
        account.stream_fault(kind, times=1)  # a second one within the minute is counted, not logged again
        await until(lambda: stream.unreadable_frames == 2, timeout=5)
        account.set_position("SOLUSDT", "short", Decimal("10"), entry_price=Decimal("150"))
        await until(lambda: any("SOLUSDT" in t for t in texts(telegram)), timeout=5)
        assert (stream.state, stream.connects) == (StreamState.UP, connects), "skipped, not reconnected"
        assert (await health(service))["streams"][account.name]["state"] == "up"
        logged = [r.getMessage() for r in caplog.records if "could not read" in r.getMessage()]
        assert len(logged) == 1, logged
        assert logged[0].startswith(f"{account.name}: live stream: skipped a frame ccxt could not read (")
        assert len(logged[0]) <= 400
        for secret in (account.api_key, account.secret, listen_key):
            assert not secret or secret not in caplog.text
        assert "Exception in callback" not in caplog.text
        metrics = await ops_page(service, "/metrics")
        assert f'reconbot_stream_unreadable_frames{{account="{account.name}"}} 2.0' in metrics


def test_an_unreadable_frame_is_logged_bounded_and_without_secrets():
    key = "Kx7" + "a" * 61  # a listenKey
    frame = '{"e":"listenKeyExpired","listenKey":"' + key + '",\n  "E":"' + "9" * 400
    line = excerpt(frame, ("secret-1", key))
    assert key not in line and "***" in line
    assert line.endswith(f"… ({len(frame)} chars)") and len(line) <= EXCERPT_CHARS + 20
    assert "\n" not in line and "  " not in line
    assert excerpt("[]", ()) == "[]"


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_a_mute_stream_is_down_within_its_ping_interval_and_comes_back(
    database_url, new_account, telegram, monkeypatch, venue
):
    """A socket that stays open but says nothing (not even a pong) is down after the venue's ping interval and a
    margin; a new socket that says nothing is not up; the outage is reported after ``scan.stream_grace_s``; the
    stream comes back with a full check and hears the next event."""
    monkeypatch.setattr(Gateway, "stream_ping_s", 0.5)
    account = new_account(venue)
    await prepare_database(database_url)
    grace_s = 3.0
    async with running(streaming(database_url, [account], telegram, scan={"stream_grace_s": grace_s})) as service:
        stream = service.streams.streams[account.name]
        stream.backoff = Backoff(first_s=0.2, most_s=0.5)
        stream.connect_timeout_s = 20.0  # the muted reconnect gives up after this, well after the notice arrived
        await settled(service, account.name)
        connects = stream.connects
        account.stream_fault("stall", times=2)  # the open socket falls mute, and so does the next one
        muted = time.monotonic()
        await until(lambda: stream.state is not StreamState.UP, timeout=10)
        elapsed = time.monotonic() - muted
        assert elapsed < 0.5 * 1.5 + 1.5, f"{elapsed:.2f}s: down after the ping interval and a margin"
        status = (await health(service))["streams"][account.name]
        assert status["state"] == "down" and "silent" in status["error"], status
        await until(lambda: any("live stream down since" in t for t in texts(telegram)), timeout=20)
        noticed = time.monotonic() - muted
        assert noticed >= grace_s, f"{noticed:.2f}s: not before scan.stream_grace_s"
        assert (stream.state, stream.connects) == (StreamState.DOWN, connects), "the mute reconnect is not up"
        assert (await health(service))["streams"][account.name]["state"] == "down"
        checks = service.checks.runs
        await until(lambda: any("live stream back" in t for t in texts(telegram)), timeout=40)
        assert stream.connects == connects + 1
        await until(lambda: service.checks.runs > checks)  # the reconnect check
        account.set_position("SOLUSDT", "short", Decimal("10"), entry_price=Decimal("150"))
        await until(lambda: any("SOLUSDT" in t for t in texts(telegram)), timeout=5)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_reconnects_leave_no_ccxt_client_behind(database_url, new_account, telegram, venue):
    """Each reconnect builds a new ccxt.pro client; the old one must be freed (ccxt's Binance listenKey keep-alive
    timer held every old client for 20 minutes, about 0.8 MiB each)."""
    import gc

    account = new_account(venue)
    await prepare_database(database_url)
    async with running(streaming(database_url, [account], telegram)) as service:
        stream = service.streams.streams[account.name]
        stream.backoff = Backoff(first_s=0.01, most_s=0.02)
        await until(lambda: stream.state is StreamState.UP)
        stream_class = service.runtime.gateways[account.name].stream_class
        for n in range(2, 12):
            account.drop_streams()
            await until(lambda n=n: stream.connects == n and stream.state is StreamState.UP)
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, stream_class)]
        assert len(alive) <= 1, f"{len(alive)} ccxt.pro clients alive after 10 reconnects"
