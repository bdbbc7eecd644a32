"""Binance USDⓈ-M user data stream: the listenKey lifecycle (REST) and the WebSocket that pushes account events.

Sources (developers.binance.com, USDⓈ-M Futures, "User Data Streams"): "Start/Keepalive/Close User Data
Stream" (``POST/PUT/DELETE /fapi/v1/listenKey``, API key only; a key is valid 60 minutes after its last
POST/PUT; a POST while a key is valid returns that key; DELETE closes the stream), "Event: Balance and
Position Update" (``ACCOUNT_UPDATE``: ``P`` carries only the changed symbols), "Event: Order Update"
(``ORDER_TRADE_UPDATE``), "Event: Algo Order Update" (``ALGO_UPDATE`` for Algo Service conditional orders),
"Event: User Data Stream Expired" (``listenKeyExpired``: "not related to the websocket disconnection ... no
more user data event will be updated after this event received until a new valid listenKey used"), and the
WebSocket change notice (private streams at ``/private/ws?listenKey=K[&events=E1/E2]``; legacy ``/ws/K``).

Not documented by Binance, chosen here: a handshake naming an unknown, expired or refused key is accepted
and then closed with code 1008 "Invalid listenKey"; a handshake without any key gets HTTP 400.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from emulator.state.account import EmulatedAccount
from emulator.state.common import ZERO, fmt, now_ms, places
from emulator.state.orders import ProtectiveOrder
from emulator.state.records import Position
from emulator.state.streams import STREAM_FAULT_KINDS, AccountChange, ListenKey
from emulator.streams.base import StreamConnection, dumps
from emulator.venues.base import VenueError

if TYPE_CHECKING:
    from emulator.streams.hub import StreamHub
    from emulator.venues.binance import BinanceApi

_KEY_CHARS = string.ascii_letters + string.digits
_BAD_KEY = "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1"
_NO_KEY = "This listenKey does not exist."
_CLASSIC_STATUS = {"open": "NEW", "cancelled": "CANCELED", "expired": "EXPIRED", "triggered": "EXPIRED"}
_ALGO_STATUS = {"open": "NEW", "cancelled": "CANCELED", "expired": "EXPIRED", "triggered": "TRIGGERED"}


def _visible(position: Position | None) -> tuple[Any, ...] | None:
    """What Binance pushes an ACCOUNT_UPDATE for: amount and entry price (not mark, leverage or stops)."""
    if position is None or position.size == 0:
        return None
    return (position.side, position.size, position.entry_price)


class BinanceStreams:
    """Binance's side of the stream hub: listenKeys per account and the user-data WebSocket."""

    fault_kinds = tuple(k for k in STREAM_FAULT_KINDS if k != "null_row")

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def api(self) -> BinanceApi:
        return self.hub.emu.venue_api("binance")  # type: ignore[return-value]

    # listenKey (REST) ------------------------------------------------------------------------------------

    def listen_key(self, account: EmulatedAccount, method: str) -> dict[str, Any]:
        """``POST`` / ``PUT`` / ``DELETE /fapi/v1/listenKey`` (the server already checked the API key)."""
        if method in ("POST", "PUT") and account.take_stream_fault("refuse_auth"):
            raise VenueError(401, -2015, _BAD_KEY)
        current = self._valid_key(account)
        if method == "POST":
            if current is None:
                current = ListenKey("".join(secrets.choice(_KEY_CHARS) for _ in range(64)), now_ms(), 0.0)
                account._listen_key = current
            self._extend(account, current)
            return {"listenKey": current.key}
        if current is None:
            raise VenueError(400, -1125, _NO_KEY)
        if method == "PUT":
            self._extend(account, current)
            return {}
        current.expired = True  # DELETE: invalidate the key and close its streams
        self._cancel_timer(account)
        for link in self.links(account, current.key):
            link.close_now(WSCloseCode.OK)
        return {}

    def _valid_key(self, account: EmulatedAccount) -> ListenKey | None:
        key = account._listen_key
        if key is None or key.expired:
            return None
        if key.expires_at <= time.time():
            self.expire(account, close=False)
            return None
        return key

    def _extend(self, account: EmulatedAccount, key: ListenKey) -> None:
        key.expires_at = time.time() + account.listen_key_ttl_s
        self._cancel_timer(account)
        loop = asyncio.get_running_loop()
        self._timers[account.name] = loop.call_later(account.listen_key_ttl_s, self._timer_fired, account)

    def _cancel_timer(self, account: EmulatedAccount) -> None:
        timer = self._timers.pop(account.name, None)
        if timer is not None:
            timer.cancel()

    def _timer_fired(self, account: EmulatedAccount) -> None:
        self._timers.pop(account.name, None)
        key = account._listen_key
        if key is None or key.expired:
            return
        remaining = key.expires_at - time.time()
        if remaining > 0:
            self._timers[account.name] = asyncio.get_running_loop().call_later(remaining, self._timer_fired, account)
        else:
            self.expire(account, close=False)

    def expire(self, account: EmulatedAccount, *, close: bool) -> None:
        """Expire the account's listenKey: push ``listenKeyExpired``, then close its streams or fall silent."""
        key = account._listen_key
        if key is None or key.expired:
            return
        key.expired = True
        self._cancel_timer(account)
        for link in self.links(account, key.key):
            link.send_json({"e": "listenKeyExpired", "E": str(now_ms()), "listenKey": key.key})
            link.silent = True
            if close:
                link.close_now(WSCloseCode.OK)

    def links(self, account: EmulatedAccount, key: str | None = None) -> list[BinanceConnection]:
        return [
            link
            for link in list(self.hub.links)
            if isinstance(link, BinanceConnection) and link.account is account and key in (None, link.key)
        ]

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # WebSocket -------------------------------------------------------------------------------------------

    @staticmethod
    def handles(path: str) -> bool:
        return path in ("/private/ws", "/ws") or path.startswith(("/ws/", "/private/ws/"))

    @staticmethod
    def unavailable() -> web.Response:
        return web.Response(
            status=404, text="<html><body><h2>404 Not found</h2></body></html>", content_type="text/html"
        )

    async def serve(self, account: EmulatedAccount, request: web.Request, path: str) -> web.StreamResponse:
        key = request.query.get("listenKey") or path.rpartition("/")[2]
        if key in ("ws", ""):
            key = ""
        probe = web.WebSocketResponse()
        if not probe.can_prepare(request).ok:
            return web.Response(status=400, text="Expected a WebSocket upgrade", content_type="text/plain")
        if not key:
            return web.Response(status=400, text="listenKey missing", content_type="text/plain")
        valid = self._valid_key(account)
        if valid is None or valid.key != key or account.take_stream_fault("refuse_listen_key"):
            await probe.prepare(request)
            await probe.close(code=WSCloseCode.POLICY_VIOLATION, message=b"Invalid listenKey")
            return probe
        events = request.query.get("events")
        wanted = {e for e in events.split("/") if e} if events else None
        return await BinanceConnection(self.hub, account, request, path, key, wanted).run()

    # event formatting ------------------------------------------------------------------------------------

    def frames(self, account: EmulatedAccount, change: AccountChange) -> list[dict[str, Any]]:
        """The events Binance pushes for ``change``, in order: fills, account update, conditional orders."""
        api = self.api
        stamp = change.timestamp_ms
        frames: list[dict[str, Any]] = []
        realised = {asset: after - (before or ZERO) for asset, before, after in change.balances if after is not None}
        first_trade_id = len(account.orders) - len(change.fills) + 1
        for number, fill in enumerate(change.fills):
            market = api.markets[fill.symbol]
            pp, qp = places(market.tick_size), places(market.step_size)
            o: dict[str, Any] = {"s": fill.symbol, "c": fill.client_order_id, "S": fill.side.upper(), "o": "MARKET"}
            o.update(f="GTC", q=fmt(fill.qty, qp), p="0", ap="0", sp="0", x="NEW", X="NEW", i=int(fill.order_id))
            o.update(l="0", z="0", L="0", T=fill.timestamp_ms, t=0, b="0", a="0", m=False, R=fill.reduce_only)
            o.update(wt="CONTRACT_PRICE", ot="MARKET", ps=api._leg(account, fill.position_side), cp=False, rp="0")
            o.update(pP=False, si=0, ss=0, V="EXPIRE_MAKER", pm="NONE", gtd=0)
            frames.append({"e": "ORDER_TRADE_UPDATE", "E": stamp, "T": fill.timestamp_ms, "o": o})
            rp = realised.get(market.settle, ZERO) if len(change.fills) == 1 else ZERO
            traded = {**o, "x": "TRADE", "X": "FILLED", "ap": fmt(fill.price, pp), "l": o["q"], "z": o["q"]}
            traded.update(L=fmt(fill.price, pp), t=first_trade_id + number, rp=fmt(rp, 8))
            frames.append({"e": "ORDER_TRADE_UPDATE", "E": stamp, "T": fill.timestamp_ms, "o": traded})
        update = self._account_update(account, change)
        if update is not None:
            frames.append(update)
        gone = {(p.symbol, p.side) for p in change.positions if _visible(p.after) is None}
        for order, closing in [(o, False) for o in change.orders_opened + change.orders_amended] + [
            (o, True) for o in change.orders_closed
        ]:
            status = order.status
            if closing and order.attached and (order.symbol, order.protects) in gone:
                status = "expired"  # Binance expires closePosition orders when the position closes
            frames.append(self._order_event(account, order, status, amended=order in change.orders_amended))
        return frames

    def _account_update(self, account: EmulatedAccount, change: AccountChange) -> dict[str, Any] | None:
        api = self.api
        legs = sorted(
            {
                (p.symbol, p.side if account.hedge_mode else "")
                for p in change.positions
                if _visible(p.before) != _visible(p.after)
            }
        )
        rows = []
        for symbol, side in legs:
            market = api.markets[symbol]
            position = account.positions.get((symbol, side)) if side else account.one_way_entry(symbol)
            figures = api._figures(account, market, position)
            row: dict[str, Any] = {"s": symbol, "pa": figures["positionAmt"], "ep": figures["entryPrice"]}
            row.update(bep=figures["breakEvenPrice"], cr="0", up=figures["unRealizedProfit"], mt="cross", iw="0")
            rows.append({**row, "ps": api._leg(account, side or None), "ma": market.settle})
        deltas = {asset: (before, after) for asset, before, after in change.balances}
        assets = set(deltas) | ({r["ma"] for r in rows} if change.fills or change.reason == "ORDER" else set())
        balances = []
        for asset in sorted(assets):
            wallet = account.balances.get(asset, ZERO)
            before, after = deltas.get(asset, (wallet, wallet))
            moved = (after or ZERO) - (before or ZERO) if change.reason != "ORDER" else ZERO
            balances.append({"a": asset, "wb": fmt(wallet, 8), "cw": fmt(wallet, 8), "bc": fmt(moved, 8)})
        if not rows and not balances:
            return None
        stamp = change.timestamp_ms
        return {"e": "ACCOUNT_UPDATE", "E": stamp, "T": stamp, "a": {"m": change.reason, "B": balances, "P": rows}}

    def _order_event(self, account: EmulatedAccount, order: ProtectiveOrder, status: str, *, amended: bool) -> Any:
        api = self.api
        stamp = now_ms()
        if order.service == "classic":
            wire_status = _CLASSIC_STATUS.get(status, "EXPIRED")
            r = api._order_row(account, order, wire_status)
            o: dict[str, Any] = {"s": r["symbol"], "c": r["clientOrderId"], "S": r["side"], "o": r["type"]}
            o.update(f=r["timeInForce"], q=r["origQty"], p=r["price"], ap=r["avgPrice"], sp=r["stopPrice"])
            o.update(x="AMENDMENT" if amended else wire_status, X=wire_status, i=r["orderId"], l="0")
            o.update(z=r["executedQty"], L="0", T=order.updated_ms, t=0, b="0", a="0", m=False, R=r["reduceOnly"])
            o.update(wt=r["workingType"], ot=r["origType"], ps=r["positionSide"], cp=r["closePosition"], rp="0")
            o.update(pP=r["priceProtect"], si=0, ss=0, V=r["selfTradePreventionMode"], pm=r["priceMatch"])
            o["gtd"] = r["goodTillDate"]
            if "activatePrice" in r:
                o.update(AP=r["activatePrice"], cr=r["priceRate"])
            return {"e": "ORDER_TRADE_UPDATE", "E": stamp, "T": order.updated_ms, "o": o}
        r = api._algo_row(account, order)
        a: dict[str, Any] = {"caid": r["clientAlgoId"], "aid": r["algoId"], "at": r["algoType"], "o": r["orderType"]}
        a.update(s=r["symbol"], S=r["side"], ps=r["positionSide"], f=r["timeInForce"], q=r["quantity"])
        a.update(X=_ALGO_STATUS.get(status, "EXPIRED"), ai="", ap="0.00000", aq="0.00000", act="0")
        a.update(tp=r["triggerPrice"], p=r["price"], V=r["selfTradePreventionMode"], wt=r["workingType"])
        a.update(pm=r["priceMatch"], cp=r["closePosition"], pP=r["priceProtect"], R=r["reduceOnly"], tt=0, gtd=0)
        return {"e": "ALGO_UPDATE", "T": stamp, "E": stamp, "o": a}


class BinanceConnection(StreamConnection):
    """One user-data WebSocket on a listenKey; ``events`` (the URL's filter) limits what it pushes."""

    venue = "binance"

    def __init__(
        self,
        hub: StreamHub,
        account: EmulatedAccount,
        request: web.Request,
        path: str,
        key: str,
        events: set[str] | None,
    ) -> None:
        super().__init__(hub, account, request, path)
        self.key = key
        self.events = events

    def frames_for(self, change: AccountChange) -> list[Any]:
        frames = self.hub.binance.frames(self.account, change)
        if self.events is not None:
            frames = [f for f in frames if f["e"] in self.events]
        return frames

    def hostile_frame(self, kind: str) -> str:
        """An ``ACCOUNT_UPDATE`` cut off mid-object (malformed) or whose position amount is ``1e400`` (overflow),
        or an empty JSON array as the whole frame (array)."""
        if kind == "array":
            return "[]"
        stamp = now_ms()
        row = {"s": "BTCUSDT", "pa": "1e400" if kind == "overflow" else "0.010", "ep": "60000.0", "bep": "60000.0"}
        row.update(cr="0", up="0", mt="cross", iw="0", ps="BOTH", ma="USDT")
        balance = {"a": "USDT", "wb": "10000.00000000", "cw": "10000.00000000", "bc": "0"}
        text = dumps({"e": "ACCOUNT_UPDATE", "E": stamp, "T": stamp, "a": {"m": "ORDER", "B": [balance], "P": [row]}})
        return text if kind == "overflow" else text[: len(text) * 2 // 3]

    def fire_venue(self, kind: str) -> None:
        if kind in ("expire", "expire_silent"):
            self.hub.binance.expire(self.account, close=kind == "expire")

    def venue_info(self) -> dict[str, Any]:
        return {"listen_key": self.key, "events": sorted(self.events) if self.events is not None else None}
