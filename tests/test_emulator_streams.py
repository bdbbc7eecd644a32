"""Private WebSocket streams of the exchange emulator (Binance USDⓈ-M user data stream, Bybit v5 private),
read by real ``ccxt.pro`` clients whose REST and WebSocket URLs point at an emulated account, and by raw
aiohttp WebSockets where the exact frames matter."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import ccxt.pro
import pytest
import pytest_asyncio
from ccxt.base.errors import AuthenticationError, ExchangeError, NetworkError, RequestTimeout

from emulator.exchange import EmulatedAccount, ExchangeEmulator

pytestmark = pytest.mark.asyncio(loop_scope="session")

_names = itertools.count(1)
_HOST = re.compile(r"^(https?|wss?)://[^/]+")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def emu() -> AsyncIterator[ExchangeEmulator]:
    emulator = ExchangeEmulator(timeout_delay_s=2.0)
    await emulator.start(host="127.0.0.1", port=0)
    try:
        yield emulator
    finally:
        await emulator.stop()


def new_account(emu: ExchangeEmulator, venue: str, *, hedge_mode: bool = False) -> EmulatedAccount:
    number = next(_names)
    return emu.add_account(
        f"streams-{venue}-{number}", venue=venue, api_key=f"k{number}", secret=f"s{number}", hedge_mode=hedge_mode
    )


# ------------------------------------------------------------------------------------------- helpers


def rebase_urls(tree: Any, http_base: str, ws_base: str) -> Any:
    """Point every REST (``https?``) and WebSocket (``wss?``) URL of a ccxt ``urls`` tree at the emulator,
    keeping the paths (Binance's linear base must still end in ``/ws``)."""
    if isinstance(tree, dict):
        return {key: rebase_urls(value, http_base, ws_base) for key, value in tree.items()}
    if isinstance(tree, str):
        match = _HOST.match(tree)
        if match:
            return (ws_base if match.group(1).startswith("ws") else http_base) + tree[match.end() :]
    return tree


class ProBinanceUsdm(ccxt.pro.binanceusdm):
    """ccxt picks Binance's error table by host; behind a rebased URL, go by the path (as reconbot does)."""

    def get_exceptions_by_url(self, url, exactOrBroad):
        tables = super().get_exceptions_by_url(url, exactOrBroad)
        if not tables and url and "/fapi/" in url:
            return self.safe_dict(self.safe_dict(self.exceptions, "linear", {}), exactOrBroad, {})
        return tables


def pro_client(account: EmulatedAccount, *, keep_alive_ms: int | None = None, **options: Any) -> Any:
    """A ccxt.pro client of the account's venue, REST and WS rebased onto the account, no position snapshot."""
    cls = ProBinanceUsdm if account.venue == "binance" else ccxt.pro.bybit
    config_options: dict[str, Any] = {
        "fetchCurrencies": False,
        "watchPositions": {"fetchPositionsSnapshot": False},
        **options,
    }
    if account.venue == "bybit":
        config_options.setdefault("fetchMarkets", {"types": ["linear", "inverse"]})
    client = cls(
        {"apiKey": account.api_key, "secret": account.secret, "enableRateLimit": False, "options": config_options}
    )
    client.has["fetchCurrencies"] = False
    client.urls["api"] = rebase_urls(client.urls["api"], account.base_url, "ws" + account.base_url[4:])
    if keep_alive_ms is not None:
        client.streaming["keepAlive"] = keep_alive_ms
    return client


async def close_pro(client: Any) -> None:
    """Close a pro client. ccxt leaves the Binance keep-alive timer running; forgetting the listenKey first makes
    it a no-op (otherwise a PUT after ``close()`` reopens an aiohttp session that nobody closes)."""
    linear = client.options.get("linear")
    if isinstance(linear, dict):
        linear["listenKey"] = None
    await client.close()


@contextlib.asynccontextmanager
async def pro(account: EmulatedAccount, **kwargs: Any) -> AsyncIterator[Any]:
    client = pro_client(account, **kwargs)
    try:
        yield client
    finally:
        await close_pro(client)


async def until(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def started(account: EmulatedAccount, call: Awaitable[Any], streams: int = 1) -> asyncio.Task[Any]:
    """Run a watch call in a task and wait until the account has ``streams`` open streams."""
    task = asyncio.ensure_future(call)
    try:
        await until(lambda: len(account.open_streams) >= streams or task.done())
    except AssertionError:
        task.cancel()
        raise
    if task.done():
        task.result()  # raise what the watch raised
    return task


async def result(task: asyncio.Task[Any], timeout: float = 3.0) -> Any:
    return await asyncio.wait_for(task, timeout)


def binance_headers(account: EmulatedAccount) -> dict[str, str]:
    return {"X-MBX-APIKEY": account.api_key}


async def listen_key(session: aiohttp.ClientSession, account: EmulatedAccount) -> str:
    async with session.post(f"{account.base_url}/fapi/v1/listenKey", headers=binance_headers(account)) as response:
        assert response.status == 200
        return (await response.json())["listenKey"]


def ws_url(account: EmulatedAccount, path: str) -> str:
    return "ws" + account.base_url[4:] + path


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> Any:
    message = await ws.receive(timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


def bybit_auth(account: EmulatedAccount, *, secret: str | None = None, expires_in_ms: int = 10000) -> dict[str, Any]:
    expires = str(int(time.time() * 1000) + expires_in_ms)
    signature = hmac.new(
        (secret or account.secret).encode(), f"GET/realtime{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return {"op": "auth", "args": [account.api_key, expires, signature]}


async def bybit_socket(
    session: aiohttp.ClientSession, account: EmulatedAccount, topics: list[str]
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(ws_url(account, "/v5/private"))
    await ws.send_json(bybit_auth(account))
    assert (await frame(ws))["success"] is True
    await ws.send_json({"op": "subscribe", "req_id": "7", "args": topics})
    ack = await frame(ws)
    assert ack["success"] is True and ack["req_id"] == "7"
    return ws


# ------------------------------------------------------------------------------ Binance: listenKey REST


async def test_binance_listen_key_lifecycle(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    url = f"{account.base_url}/fapi/v1/listenKey"
    async with aiohttp.ClientSession() as session:
        async with session.post(url) as response:  # no API key
            assert (response.status, await response.json()) == (
                401,
                {"code": -2014, "msg": "API-key format invalid."},
            )
        async with session.put(url, headers=binance_headers(account)) as response:  # nothing to keep alive yet
            assert (response.status, await response.json()) == (
                400,
                {"code": -1125, "msg": "This listenKey does not exist."},
            )
        first = await listen_key(session, account)  # unsigned: the API key is enough
        assert len(first) == 64 and first.isalnum() and account.listen_key == first
        assert await listen_key(session, account) == first  # a POST while valid returns the same key
        async with session.put(url, headers=binance_headers(account)) as response:
            assert (response.status, await response.json()) == (200, {})
        async with session.ws_connect(ws_url(account, f"/ws/{first}")) as ws:
            await until(lambda: account.open_streams)
            async with session.delete(url, headers=binance_headers(account)) as response:
                assert (response.status, await response.json()) == (200, {})
            message = await ws.receive(1.0)  # DELETE closes the stream of the key
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 1000)
        assert account.listen_key is None
        async with session.put(url, headers=binance_headers(account)) as response:
            assert response.status == 400
        second = await listen_key(session, account)
        assert second != first
    posts = [r for r in account.requests if r.path == "/fapi/v1/listenKey"]
    assert [r.method for r in posts] == ["POST", "PUT", "POST", "POST", "PUT", "DELETE", "PUT", "POST"]
    assert {r.endpoint for r in posts} == {"account"} and all(r.weight == 1 for r in posts)


async def test_binance_listen_key_expires_and_is_kept_alive(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.listen_key_ttl_s = 0.3
    url = f"{account.base_url}/fapi/v1/listenKey"
    async with aiohttp.ClientSession() as session:
        key = await listen_key(session, account)
        for _ in range(4):  # PUT every 0.15 s keeps it for 0.6 s
            await asyncio.sleep(0.15)
            async with session.put(url, headers=binance_headers(account)) as response:
                assert response.status == 200
        assert account.listen_key == key
        async with session.ws_connect(ws_url(account, f"/private/ws?listenKey={key}")) as ws:
            await asyncio.sleep(0.4)  # no keepalive: the key expires, the stream says so and falls silent
            expired = await frame(ws)
            assert expired == {"e": "listenKeyExpired", "E": expired["E"], "listenKey": key}
            assert expired["E"].isdigit()  # Binance sends this event time as a string
            assert account.listen_key is None
            account.set_position("BTCUSDT", "long", "0.01")
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(0.2)
            assert not ws.closed
        async with session.put(url, headers=binance_headers(account)) as response:
            assert (response.status, (await response.json())["code"]) == (400, -1125)
        async with session.ws_connect(ws_url(account, f"/private/ws?listenKey={key}")) as ws:
            message = await ws.receive(1.0)  # the expired key is closed at once
            assert (message.type, message.data, message.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "Invalid listenKey")
        assert await listen_key(session, account) != key


# ------------------------------------------------------------------------------ Binance: frames on the wire


async def test_binance_frames_follow_the_state(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    account.set_position("ETHUSDT", "short", "2", entry_price="3500")
    async with aiohttp.ClientSession() as session:
        key = await listen_key(session, account)
        async with session.ws_connect(ws_url(account, f"/private/ws?listenKey={key}")) as ws, pro(account) as client:
            await until(lambda: account.open_streams)
            account.set_position("BTCUSDT", "long", "0.010", entry_price="60000", mark_price="60150")
            update = await frame(ws)
            assert update["e"] == "ACCOUNT_UPDATE" and update["E"] == update["T"]
            assert update["a"] == {
                "m": "ADJUSTMENT",
                "B": [],
                "P": [
                    {
                        "s": "BTCUSDT",
                        "pa": "0.010",
                        "ep": "60000.0",
                        "bep": "60024.00000000",
                        "cr": "0",
                        "up": "1.50000000",
                        "mt": "cross",
                        "iw": "0",
                        "ps": "BOTH",
                        "ma": "USDT",
                    }
                ],
            }  # only the changed symbol: ETHUSDT is not repeated
            await client.create_order("BTC/USDT:USDT", "market", "sell", 0.004)
            new, traded, update = await frame(ws), await frame(ws), await frame(ws)
            assert (new["e"], new["o"]["x"], new["o"]["X"], new["o"]["o"]) == (
                "ORDER_TRADE_UPDATE",
                "NEW",
                "NEW",
                "MARKET",
            )
            order = traded["o"]
            assert (order["x"], order["X"], order["S"], order["q"], order["z"], order["l"]) == (
                "TRADE",
                "FILLED",
                "SELL",
                "0.004",
                "0.004",
                "0.004",
            )
            assert (order["ap"], order["L"], order["rp"], order["ps"], order["i"]) == (
                "60150.0",
                "60150.0",
                "0.60000000",
                "BOTH",
                int(account.orders[-1].order_id),
            )
            assert update["a"]["m"] == "ORDER"
            assert update["a"]["B"] == [
                {"a": "USDT", "wb": "10000.60000000", "cw": "10000.60000000", "bc": "0.00000000"}
            ]
            assert [(p["s"], p["pa"], p["ps"]) for p in update["a"]["P"]] == [("BTCUSDT", "0.006", "BOTH")]
            stop = account.place_protective_order(
                "BTCUSDT", "sell", "stop_market", trigger_price="59000", quantity="0.006", service="classic"
            )
            placed = await frame(ws)
            assert placed["e"] == "ORDER_TRADE_UPDATE"
            assert {k: placed["o"][k] for k in ("o", "x", "X", "sp", "q", "R", "cp", "wt", "i")} == {
                "o": "STOP_MARKET",
                "x": "NEW",
                "X": "NEW",
                "sp": "59000.0",
                "q": "0.006",
                "R": True,
                "cp": False,
                "wt": "CONTRACT_PRICE",
                "i": int(stop.order_id),
            }
            algo = account.place_protective_order(
                "BTCUSDT", "sell", "take_profit_market", trigger_price="70000", close_position=True
            )
            placed = (await frame(ws))["o"]
            assert (placed["aid"], placed["o"], placed["X"], placed["tp"], placed["cp"], placed["at"]) == (
                int(algo.order_id),
                "TAKE_PROFIT_MARKET",
                "NEW",
                "70000.0",
                True,
                "CONDITIONAL",
            )
            await client.cancel_order(stop.order_id, "BTC/USDT:USDT")
            cancelled = await frame(ws)
            assert (cancelled["e"], cancelled["o"]["x"], cancelled["o"]["X"]) == (
                "ORDER_TRADE_UPDATE",
                "CANCELED",
                "CANCELED",
            )
            with account.change_reason("FUNDING_FEE"):
                account.set_balance("USDT", "9999.5")
            funding = await frame(ws)
            assert funding["a"] == {
                "m": "FUNDING_FEE",
                "B": [{"a": "USDT", "wb": "9999.50000000", "cw": "9999.50000000", "bc": "-1.10000000"}],
                "P": [],
            }
            account.remove_position("BTCUSDT", "long")  # the unattached algo TP stays; the position goes
            flat = await frame(ws)
            assert [(p["s"], p["pa"], p["ep"], p["ps"]) for p in flat["a"]["P"]] == [
                ("BTCUSDT", "0.000", "0.0", "BOTH")
            ]
            account.set_position("BTCUSDT", "long", "0.010", entry_price="60000", mark_price="61000")
            await frame(ws)
            account.set_position("BTCUSDT", "long", "0.010", entry_price="60000", mark_price="62000")
            with pytest.raises(asyncio.TimeoutError):  # Binance pushes no update for a mark price move
                await ws.receive(0.2)


async def test_binance_hedge_mode_rows_and_legacy_path(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance", hedge_mode=True)
    async with aiohttp.ClientSession() as session:
        key = await listen_key(session, account)
        async with session.ws_connect(ws_url(account, f"/ws/{key}")) as ws:
            await until(lambda: account.open_streams)
            account.set_position("BTCUSDT", "long", "0.5", entry_price="60000")
            account.set_position("BTCUSDT", "short", "0.2", entry_price="61000", stop_loss="63000")
            long_update, short_update, stop = await frame(ws), await frame(ws), await frame(ws)
            assert [(p["ps"], p["pa"]) for p in long_update["a"]["P"]] == [("LONG", "0.500")]
            assert [(p["ps"], p["pa"], p["ep"]) for p in short_update["a"]["P"]] == [("SHORT", "-0.200", "61000.0")]
            assert (stop["e"], stop["o"]["o"], stop["o"]["ps"], stop["o"]["cp"]) == (
                "ALGO_UPDATE",
                "STOP_MARKET",
                "SHORT",
                True,
            )
            account.remove_position("BTCUSDT", "short")  # the attached stop-loss expires with it
            gone, expired = await frame(ws), await frame(ws)
            assert [(p["ps"], p["pa"]) for p in gone["a"]["P"]] == [("SHORT", "0.000")]
            assert (expired["e"], expired["o"]["X"]) == ("ALGO_UPDATE", "EXPIRED")
        async with session.ws_connect(ws_url(account, f"/private/ws?listenKey={key}&events=ACCOUNT_UPDATE")) as ws:
            await until(lambda: account.open_streams)
            account.set_position("ETHUSDT", "long", "1", stop_loss="3000")
            only = await frame(ws)
            assert only["e"] == "ACCOUNT_UPDATE"  # the ALGO_UPDATE of the stop-loss is filtered out
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(0.2)
        async with session.ws_connect(ws_url(account, "/private/ws?listenKey=nonsense")) as ws:
            message = await ws.receive(1.0)
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 1008)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url(account, "/private/ws"))
        assert refused.value.status == 400


# --------------------------------------------------------------------------------- Binance through ccxt.pro


async def test_binance_watch_positions_and_orders(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    async with pro(account) as client:
        positions = await started(account, client.watch_positions())
        orders = asyncio.ensure_future(client.watch_orders())
        account.set_position("BTCUSDT", "long", "0.010", entry_price="60000", mark_price="60150")
        [position] = await result(positions)
        assert (position["symbol"], position["side"], position["contracts"], position["entryPrice"]) == (
            "BTC/USDT:USDT",
            "long",
            0.01,
            60000.0,
        )
        assert (position["unrealizedPnl"], position["marginMode"], position["hedged"]) == (1.5, "cross", False)
        assert position["markPrice"] is None  # Binance's stream carries no mark price (ccxt issue #27618)
        assert not orders.done()  # a position change is no order
        positions = asyncio.ensure_future(client.watch_positions())
        await client.create_order("BTC/USDT:USDT", "market", "sell", 0.01)
        [order] = await result(orders)  # NEW and TRADE arrive together; the watcher sees the filled order
        assert (order["status"], order["type"], order["side"], order["filled"], order["average"]) == (
            "closed",
            "market",
            "sell",
            0.01,
            60150.0,
        )
        assert order["id"] == account.orders[-1].order_id
        [flat] = await result(positions)
        assert (flat["side"], flat["contracts"]) == ("both", 0.0)  # one-way flat row
        assert len(account.open_streams) == 1  # both watchers share the one socket of the listenKey
        [stream] = account.open_streams
        assert stream["path"] == "/private/ws" and stream["listen_key"] == account.listen_key


async def test_binance_hedge_mode_through_ccxt(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance", hedge_mode=True)
    async with pro(account) as client:
        positions = await started(account, client.watch_positions())
        account.set_position("ETHUSDT", "short", "1.5", entry_price="3500")
        [short] = await result(positions)
        assert (short["side"], short["contracts"], short["hedged"], short["info"]["ps"]) == (
            "short",
            1.5,
            True,
            "SHORT",
        )
        orders = asyncio.ensure_future(client.watch_orders())
        tp = account.place_protective_order(
            "ETHUSDT", "buy", "take_profit_market", trigger_price="3000", close_position=True, position_side="short"
        )
        [order] = await result(orders)
        assert (order["id"], order["status"], order["side"], order["triggerPrice"]) == (
            tp.order_id,
            "open",
            "buy",
            3000.0,
        )


async def test_binance_ccxt_keeps_the_listen_key_alive_only_once(emu: ExchangeEmulator) -> None:
    """ccxt.pro 4.5.90 (Python) sends one keep-alive PUT and never reschedules it: its rescheduling loop reads
    each ws Client with ``safe_dict``, which yields None for a Client object. The key then expires
    ``listen_key_ttl_s`` after that PUT unless a later watch call re-POSTs (20 min + 10 s after the last)."""
    account = new_account(emu, "binance")
    account.listen_key_ttl_s = 0.4
    async with pro(account, listenKeyRefreshRate=100) as client:
        positions = await started(account, client.watch_positions())
        key = account.listen_key
        await asyncio.sleep(0.3)
        puts = [r for r in account.requests if (r.method, r.path) == ("PUT", "/fapi/v1/listenKey")]
        assert len(puts) == 1 and account.listen_key == key  # extended by the PUT at 0.1 s
        account.set_position("SOLUSDT", "long", "3")
        [position] = await result(positions)
        assert position["contracts"] == 3.0
        await until(lambda: account.listen_key is None, 1.0)  # no second PUT: expired 0.4 s after the first
        assert [r.method for r in account.requests if r.path == "/fapi/v1/listenKey"] == ["POST", "PUT"]


async def test_binance_ping_frames_are_answered(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    async with pro(account, keep_alive_ms=100) as client:
        positions = await started(account, client.watch_positions())
        await asyncio.sleep(0.5)  # ccxt pings every 100 ms and times out after 200 ms without a pong
        [stream] = account.open_streams
        assert stream["pings_answered"] >= 3 and not positions.done()
        account.set_position("BTCUSDT", "short", "0.1")
        assert (await result(positions))[0]["side"] == "short"


@pytest.mark.parametrize("how", ["lifetime", "expire_silent"])
async def test_binance_expired_listen_key_goes_silent_for_ccxt(emu: ExchangeEmulator, how: str) -> None:
    account = new_account(emu, "binance")
    if how == "lifetime":
        account.listen_key_ttl_s = 0.3
    async with pro(account) as client:  # ccxt refreshes every 20 minutes: far too late
        positions = await started(account, client.watch_positions())
        if how == "lifetime":
            await asyncio.sleep(0.5)
        else:
            account.stream_fault("expire_silent", times=1)
        assert account.listen_key is None and len(account.open_streams) == 1  # still connected ...
        account.set_position("BTCUSDT", "long", "0.1")
        with pytest.raises(asyncio.TimeoutError):  # ... but ccxt ignores listenKeyExpired and hears nothing more
            await asyncio.wait_for(asyncio.shield(positions), 0.3)
        positions.cancel()


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("drop", NetworkError, "closing code 1001"),
        ("reset", NetworkError, "closing code 1006"),
        ("expire", NetworkError, "closing code 1000"),
    ],
)
async def test_binance_live_faults_surface_in_ccxt(
    emu: ExchangeEmulator, kind: str, error: type[Exception], message: str
) -> None:
    account = new_account(emu, "binance")
    async with pro(account) as client:
        positions = await started(account, client.watch_positions())
        orders = asyncio.ensure_future(client.watch_orders())
        account.stream_fault(kind, times=1)
        for watcher in (positions, orders):
            with pytest.raises(error, match=message):
                await result(watcher)
        await until(lambda: not account.open_streams)
        if kind == "expire":  # the cached key is dead: the redial is refused until ccxt asks for a new key
            with pytest.raises(NetworkError, match="closing code 1008"):
                await result(asyncio.ensure_future(client.watch_positions()))
            client.options["linear"]["lastAuthenticatedTime"] = 0
        positions = await started(account, client.watch_positions())  # the next call redials
        account.set_position("ETHUSDT", "long", "1")
        assert (await result(positions))[0]["contracts"] == 1.0


async def test_binance_stall_and_hostile_frames_end_in_a_keepalive_timeout(emu: ExchangeEmulator) -> None:
    """A stalled link stops answering ping frames. A cut-off frame, ``"pa":"1e400"`` or a JSON array raises inside
    ccxt's receive callback, which ends its receive loop: pongs go unread, so all end as a keepalive timeout."""
    for kind in ("stall", "malformed", "overflow", "array"):
        account = new_account(emu, "binance")
        async with pro(account, keep_alive_ms=100) as client:
            positions = await started(account, client.watch_positions())
            account.stream_fault(kind, times=1)
            account.set_position("BTCUSDT", "long", "0.1")  # never heard
            with pytest.raises(RequestTimeout, match="ping-pong keepalive missing"):
                await result(positions, 2.0)
            await until(lambda account=account: not account.open_streams)


async def test_binance_refusals_surface_in_ccxt(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    async with pro(account) as client:
        account.stream_fault("refuse_auth", times=1)  # the listenKey POST is refused
        with pytest.raises(AuthenticationError, match="-2015"):
            await result(asyncio.ensure_future(client.watch_positions()))
        account.stream_fault("refuse_listen_key", times=1)  # the key is refused at the handshake
        with pytest.raises(NetworkError, match="closing code 1008"):
            await result(asyncio.ensure_future(client.watch_positions()))
        account.stream_fault("unavailable", times=1)  # the WS side is down, REST still answers
        with pytest.raises(NetworkError, match="404"):
            await result(asyncio.ensure_future(client.watch_positions()))
        assert (await client.fetch_balance())["USDT"]["total"] == 10000.0
        await asyncio.sleep(0.25)  # ccxt's dial backoff after a failed handshake
        positions = await started(account, client.watch_positions())
        account.set_position("BTCUSDT", "long", "0.1")
        assert (await result(positions))[0]["contracts"] == 0.1


# ---------------------------------------------------------------------------------- Bybit: frames on the wire


async def test_bybit_auth_subscribe_ping_on_the_wire(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(account, "/v5/private")) as ws:
        await ws.send_json({"op": "subscribe", "req_id": "1", "args": ["position"]})
        early = await frame(ws)
        assert (early["success"], early["ret_msg"], early["op"], early["req_id"]) == (
            False,
            "Request not authorized",
            "subscribe",
            "1",
        )
        await ws.send_json(bybit_auth(account, secret="wrong"))
        refused = await frame(ws)
        assert refused == {"success": False, "ret_msg": "Params Error", "op": "auth", "conn_id": refused["conn_id"]}
        await ws.send_json(bybit_auth(account, expires_in_ms=-1000))  # expired
        assert (await frame(ws))["success"] is False
        await ws.send_json(bybit_auth(account))
        accepted = await frame(ws)
        assert accepted == {"success": True, "ret_msg": "", "op": "auth", "conn_id": refused["conn_id"]}
        await ws.send_json({"req_id": 3, "op": "ping"})
        pong = await frame(ws)
        assert (pong["op"], pong["req_id"], pong["conn_id"]) == ("pong", "3", accepted["conn_id"])
        assert pong["args"][0].isdigit()
        await ws.send_json({"op": "subscribe", "req_id": 4, "args": ["position", "order.linear", "wallet"]})
        assert await frame(ws) == {
            "success": True,
            "ret_msg": "",
            "op": "subscribe",
            "conn_id": accepted["conn_id"],
            "req_id": "4",
        }
        await ws.send_json({"op": "subscribe", "args": ["greeks.nonsense"]})
        assert (await frame(ws))["success"] is False
        [stream] = account.open_streams
        assert stream["authenticated"] and stream["topics"] == ["position", "order.linear", "wallet"]


async def test_bybit_frames_follow_the_state(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    async with aiohttp.ClientSession() as session, pro(account) as client:
        ws = await bybit_socket(session, account, ["position", "order", "execution"])
        account.set_position("BTCUSDT", "long", "0.010", entry_price="60000", mark_price="60100")
        pushed = await frame(ws)
        assert (pushed["topic"], len(pushed["id"]) > 10, isinstance(pushed["creationTime"], int)) == (
            "position",
            True,
            True,
        )
        [row] = pushed["data"]
        assert {
            k: row[k] for k in ("category", "symbol", "side", "size", "positionIdx", "entryPrice", "markPrice")
        } == {
            "category": "linear",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "size": "0.010",
            "positionIdx": 0,
            "entryPrice": "60000",
            "markPrice": "60100.0",
        }
        assert set(row) >= {"unrealisedPnl", "liqPrice", "leverage", "positionValue", "createdTime", "updatedTime"}
        account.set_position("BTCUSDT", "long", "0.010", entry_price="60000", mark_price="60200")
        with pytest.raises(asyncio.TimeoutError):  # a mark price move alone is not pushed
            await ws.receive(0.2)
        account.set_position("BTCUSDT", "long", "0.010", entry_price="60000", mark_price="60100")
        await client.create_order("BTC/USDT:USDT", "market", "sell", 0.01)
        order, execution, position = await frame(ws), await frame(ws), await frame(ws)
        assert [order["topic"], execution["topic"], position["topic"]] == ["order", "execution", "position"]
        [filled] = order["data"]
        assert (filled["orderStatus"], filled["orderType"], filled["side"], filled["cumExecQty"]) == (
            "Filled",
            "Market",
            "Sell",
            "0.010",
        )
        assert (filled["avgPrice"], filled["closedPnl"]) == ("60100", "1.00000000")
        assert execution["data"][0]["execQty"] == "0.010" and execution["data"][0]["orderId"] == filled["orderId"]
        assert [(r["side"], r["size"]) for r in position["data"]] == [("", "0.000")]  # one-way flat row
        account.set_position("ETHUSDT", "short", "1")
        await frame(ws)
        tp = account.place_protective_order("ETHUSDT", "buy", "take_profit_market", trigger_price="3000", quantity="1")
        placed = await frame(ws)
        assert (placed["topic"], placed["data"][0]["orderId"], placed["data"][0]["orderStatus"]) == (
            "order",
            tp.order_id,
            "Untriggered",
        )
        account.set_position_stops("ETHUSDT", "short", stop_loss="3900")
        stops = [await frame(ws), await frame(ws)]
        by_topic = {f["topic"]: f["data"] for f in stops}
        assert by_topic["position"][0]["stopLoss"] == "3900.00"  # the row shows the new stop ...
        assert by_topic["order"][0]["stopOrderType"] == "StopLoss"  # ... and its conditional order
        account.cancel_protective_order(tp.order_id)
        cancelled = (await frame(ws))["data"][0]
        assert (cancelled["orderStatus"], cancelled["cancelType"]) == ("Deactivated", "CancelByUser")
        await ws.close()


async def test_bybit_hedge_mode_and_categories(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit", hedge_mode=True)
    async with aiohttp.ClientSession() as session:
        ws = await bybit_socket(session, account, ["position.inverse", "wallet"])
        account.set_position("BTCUSDT", "long", "0.5")  # linear: only the wallet moves
        wallet = await frame(ws)
        assert wallet["topic"] == "wallet" and wallet["data"][0]["accountType"] == "UNIFIED"
        account.set_position("BTCUSD", "short", "100")
        frames = {f["topic"]: f for f in [await frame(ws), await frame(ws)]}
        [row] = frames["position.inverse"]["data"]
        assert (row["category"], row["symbol"], row["positionIdx"], row["side"], row["size"]) == (
            "inverse",
            "BTCUSD",
            2,
            "Sell",
            "100",
        )
        await ws.close()


# ----------------------------------------------------------------------------------- Bybit through ccxt.pro


async def test_bybit_watch_positions_and_orders(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    async with pro(account) as client:
        positions = await started(account, client.watch_positions())
        await until(lambda: "position" in account.open_streams[0]["topics"])
        orders = asyncio.ensure_future(client.watch_orders())
        await until(lambda: "order" in account.open_streams[0]["topics"])
        assert len(account.open_streams) == 1  # one /v5/private connection carries every topic
        account.set_position("ETHUSDT", "long", "2", entry_price="3500", mark_price="3550")
        [position] = await result(positions)
        assert (position["symbol"], position["side"], position["contracts"], position["entryPrice"]) == (
            "ETH/USDT:USDT",
            "long",
            2.0,
            3500.0,
        )
        assert (position["markPrice"], position["unrealizedPnl"], position["leverage"]) == (3550.0, 100.0, 10.0)
        positions = asyncio.ensure_future(client.watch_positions())
        await client.create_order("ETH/USDT:USDT", "market", "sell", 2, params={"reduceOnly": True})
        [order] = await result(orders)
        assert (order["status"], order["type"], order["side"], order["filled"], order["reduceOnly"]) == (
            "closed",
            "market",
            "sell",
            2.0,
            True,
        )
        [flat] = await result(positions)
        assert (flat["side"], flat["contracts"]) == (None, 0.0)


async def test_bybit_hedge_mode_through_ccxt(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit", hedge_mode=True)
    async with pro(account) as client:
        positions = await started(account, client.watch_positions())
        await until(lambda: account.open_streams[0]["topics"])
        account.set_position("BTCUSDT", "short", "0.5")
        [short] = await result(positions)
        assert (short["side"], short["contracts"], short["hedged"], short["info"]["positionIdx"]) == (
            "short",
            0.5,
            True,
            2,
        )


async def test_bybit_pings_are_answered(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    async with pro(account, keep_alive_ms=100) as client:
        positions = await started(account, client.watch_positions())
        await asyncio.sleep(0.5)  # text pings every 100 ms; 200 ms without a pong would be a timeout
        [url] = [u for u in client.clients if u.endswith("/v5/private")]
        assert client.clients[url].lastPong is not None and not positions.done()
        account.set_position("BTCUSDT", "long", "0.1")
        assert (await result(positions))[0]["side"] == "long"


async def test_bybit_auth_failure_surfaces_as_exchange_error_and_leaves_the_client_stuck(
    emu: ExchangeEmulator,
) -> None:
    account = new_account(emu, "bybit")
    async with pro(account) as client:
        account.stream_fault("refuse_auth", times=1)
        with pytest.raises(ExchangeError, match="Params Error") as refused:
            await result(asyncio.ensure_future(client.watch_positions()))
        assert not isinstance(refused.value, AuthenticationError)  # the real shape has no retCode
        with pytest.raises(asyncio.TimeoutError):  # ccxt keeps the connection marked as authenticated
            await asyncio.wait_for(client.watch_positions(), 0.3)
        assert account.open_streams[0]["authenticated"] is False
    async with pro(account) as client:  # a new client authenticates
        positions = await started(account, client.watch_positions())
        await until(lambda: account.open_streams and account.open_streams[0]["topics"])
        account.set_position("BTCUSDT", "long", "0.1")
        assert (await result(positions))[0]["contracts"] == 0.1


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("drop", NetworkError, "closing code 1001"),
        ("reset", NetworkError, "closing code 1006"),
        ("stall", RequestTimeout, "ping-pong keepalive missing"),
        ("malformed", RequestTimeout, "ping-pong keepalive missing"),
        ("overflow", RequestTimeout, "ping-pong keepalive missing"),
        ("null_row", RequestTimeout, "ping-pong keepalive missing"),
    ],
)
async def test_bybit_live_faults_surface_in_ccxt(
    emu: ExchangeEmulator, kind: str, error: type[Exception], message: str
) -> None:
    account = new_account(emu, "bybit")
    async with pro(account, keep_alive_ms=100) as client:
        positions = await started(account, client.watch_positions())
        await until(lambda: account.open_streams[0]["topics"])
        account.stream_fault(kind, times=1)
        with pytest.raises(error, match=message):
            await result(positions)
        await until(lambda: not account.open_streams)
        positions = await started(account, client.watch_positions())  # redial, re-auth, re-subscribe
        await until(lambda: account.open_streams[0]["topics"])
        account.set_position("ETHUSDT", "short", "1")
        assert (await result(positions))[0]["side"] == "short"


async def test_bybit_unavailable_streams_leave_rest_working(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "bybit")
    account.stream_fault("unavailable")  # until cleared
    async with pro(account) as client:
        for _ in range(2):
            with pytest.raises(NetworkError, match="404"):
                await result(asyncio.ensure_future(client.watch_positions()))
        assert (await client.fetch_balance())["USDT"]["total"] == 10000.0
        account.clear_stream_faults()
        await asyncio.sleep(0.45)  # ccxt's dial backoff (0.1 s, 0.2 s, ...) after failed handshakes
        positions = await started(account, client.watch_positions())
        await until(lambda: account.open_streams[0]["topics"])
        account.set_position("BTCUSDT", "long", "0.1")
        assert (await result(positions))[0]["contracts"] == 0.1


# ------------------------------------------------------------------------------------ both venues, control


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_clean_close_leaves_no_tasks_and_no_streams(emu: ExchangeEmulator, venue: str) -> None:
    account = new_account(emu, venue)
    before = asyncio.all_tasks()
    client = pro_client(account, keep_alive_ms=100, listenKeyRefreshRate=100)
    positions = await started(account, client.watch_positions())
    orders = asyncio.ensure_future(client.watch_orders())
    await asyncio.sleep(0.05)
    await close_pro(client)
    for watcher in (positions, orders):
        with pytest.raises(asyncio.CancelledError):  # pending watches are cancelled, not failed
            await watcher
    await until(lambda: not account.open_streams)
    requests = len(account.requests)
    await asyncio.sleep(0.3)  # the Binance keep-alive timer fires and finds no key: nothing is reopened
    assert len(account.requests) == requests and client.session is None
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert leaked == []


async def test_stream_faults_are_checked_and_listed(emu: ExchangeEmulator) -> None:
    bybit = new_account(emu, "bybit")
    with pytest.raises(ValueError, match="unknown stream fault 'expire' for bybit"):
        bybit.stream_fault("expire")
    with pytest.raises(ValueError, match="unknown stream fault 'array' for bybit"):
        bybit.stream_fault("array")
    with pytest.raises(ValueError, match="unknown stream fault 'null_row' for binance"):
        new_account(emu, "binance").stream_fault("null_row")
    with pytest.raises(ValueError, match="times"):
        bybit.stream_fault("drop", times=0)
    bybit.stream_fault("refuse_auth", times=2)
    bybit.stream_fault("unavailable")
    assert [f.to_dict() for f in bybit.stream_faults] == [
        {"kind": "refuse_auth", "times": 2},
        {"kind": "unavailable", "times": None},
    ]
    bybit.clear_stream_faults()
    assert bybit.stream_faults == [] and bybit.drop_streams() == 0


async def test_control_api_for_streams(emu: ExchangeEmulator) -> None:
    account = new_account(emu, "binance")
    control = f"{emu.base_url}/_emulator/{account.name}"
    async with aiohttp.ClientSession() as session:
        key = await listen_key(session, account)
        async with session.ws_connect(ws_url(account, f"/private/ws?listenKey={key}")) as ws:
            await until(lambda: account.open_streams)
            async with session.get(f"{control}/streams") as response:
                listing = await response.json()
            assert listing["listen_key"] == key
            assert [(s["venue"], s["path"], s["listen_key"]) for s in listing["open"]] == [
                ("binance", "/private/ws", key)
            ]
            async with session.post(f"{control}/stream-faults", json={"kind": "malformed", "times": 1}) as response:
                assert (await response.json())["fault"] == {"kind": "malformed", "times": 0}
            message = await ws.receive(1.0)
            with pytest.raises(ValueError):
                json.loads(message.data)  # a frame cut off mid-object
            async with session.post(f"{control}/stream-faults", json={"kind": "stall"}) as response:
                assert response.status == 200
            account.set_position("BTCUSDT", "long", "0.1")
            with pytest.raises(asyncio.TimeoutError):  # stalled: nothing is sent, pings go unanswered
                await ws.receive(0.2)
            async with session.get(f"{control}/stream-faults") as response:
                assert await response.json() == [{"kind": "stall", "times": None}]
            async with session.delete(f"{control}/stream-faults") as response:
                assert response.status == 200
            account.set_position("BTCUSDT", "long", "0.2")
            assert (await frame(ws))["a"]["P"][0]["pa"] == "0.200"  # resumed; what it missed stays missed
            async with session.delete(f"{control}/streams", json={"code": 4000}) as response:
                assert await response.json() == {"ok": True, "dropped": 1}
            message = await ws.receive(1.0)
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 4000)
        async with session.post(f"{control}/stream-faults", json={"kind": "bogus"}) as response:
            assert response.status == 400


async def test_stopping_the_emulator_closes_its_streams() -> None:
    emulator = ExchangeEmulator()
    await emulator.start(host="127.0.0.1", port=0)
    account = emulator.add_account("stopping", venue="bybit", api_key="k", secret="s")
    try:
        async with pro(account) as client:
            positions = await started(account, client.watch_positions())
            started_at = time.monotonic()
            await emulator.stop()
            with pytest.raises(NetworkError, match="closing code 1001"):
                await result(positions)
            assert time.monotonic() - started_at < 1.5 and not account.open_streams
    finally:
        if emulator.running:
            await emulator.stop()


async def test_a_forced_close_is_published_to_the_streams():
    """Closing with a cause (history) and publishing to streams are one state change."""
    from emulator.exchange import ExchangeEmulator

    emulator = ExchangeEmulator()
    account = emulator.add_account("hist-streams", venue="bybit", api_key="k", secret="s")
    account.set_position("BTCUSDT", "long", "1")
    seen = []
    account.subscribe(seen.append)
    account.close_position("BTCUSDT", "long", cause="liquidation")
    [change] = seen
    assert [(p.symbol, p.after) for p in change.positions] == [("BTCUSDT", None)]


@pytest.mark.parametrize(
    ("venue", "kind"),
    [
        ("binance", "malformed"),
        ("binance", "overflow"),
        ("binance", "array"),
        ("bybit", "malformed"),
        ("bybit", "overflow"),
        ("bybit", "null_row"),
    ],
)
async def test_hostile_frames_are_in_the_venues_own_format(emu: ExchangeEmulator, venue: str, kind: str) -> None:
    account = new_account(emu, venue)
    async with aiohttp.ClientSession() as session:
        if venue == "binance":
            key = await listen_key(session, account)
            ws = await session.ws_connect(ws_url(account, f"/private/ws?listenKey={key}"))
        else:
            ws = await bybit_socket(session, account, ["position", "order"])
        async with ws:
            await until(lambda: account.open_streams)
            account.stream_fault(kind, times=1)
            message = await ws.receive(2.0)
    assert message.type == aiohttp.WSMsgType.TEXT
    if kind == "malformed":  # the venue's own push, cut off mid-object
        marker = '"e":"ACCOUNT_UPDATE"' if venue == "binance" else '"topic":"position"'
        assert message.data.startswith("{") and marker in message.data
        with pytest.raises(ValueError):
            json.loads(message.data)
        return
    payload = json.loads(message.data)
    if kind == "array":
        assert payload == []
    elif kind == "null_row":
        assert (payload["topic"], payload["data"]) == ("order", [None])
    elif venue == "binance":
        [row] = payload["a"]["P"]
        assert (payload["e"], row["s"], row["pa"], row["ps"]) == ("ACCOUNT_UPDATE", "BTCUSDT", "1e400", "BOTH")
    else:
        [row] = payload["data"]
        assert (payload["topic"], row["symbol"], row["side"], row["size"]) == ("position", "BTCUSDT", "Buy", "1e400")
