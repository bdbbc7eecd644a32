"""Bybit v5 private WebSocket (``/v5/private``): auth, subscribe, ping, and the position / order / execution /
wallet topics, for the real ``ccxt.pro.bybit``.

Sources: bybit-exchange.github.io/docs/v5 "WebSocket Connect" (auth ``{"op":"auth","args":[key, expires,
signature]}`` with signature = hex HMAC-SHA256 of ``"GET/realtime" + expires``; the private pong
``{"req_id", "op":"pong", "args":[ms], "conn_id"}``; subscribe acks ``{"success", "ret_msg", "op",
"conn_id", "req_id"}``) and "Private: Position / Order / Execution / Wallet" (``{"id", "topic",
"creationTime", "data": [...]}`` with the REST rows' fields plus ``category``; position rows name REST's
``avgPrice`` ``entryPrice``, as the stream does). A refused auth is answered
``{"success":false,"ret_msg":"Params Error","op":"auth","conn_id":...}`` -- the only v5 failure text seen in
public reports (e.g. bybit-exchange/api-usage-examples#70, pybit#152); Bybit documents none. A subscribe before
auth is answered ``"ret_msg":"Request not authorized"``. Topics may carry a category (``position.linear``).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulator.state.account import EmulatedAccount
from emulator.state.common import ZERO, fmt, now_ms, places
from emulator.state.records import EmulatedOrder, Position
from emulator.state.streams import GATE_STREAM_FAULTS, LIVE_STREAM_FAULTS, AccountChange
from emulator.streams.base import StreamConnection, dumps, random_id
from emulator.venues.base import hmac_hex

if TYPE_CHECKING:
    from emulator.streams.hub import StreamHub
    from emulator.venues.bybit import BybitApi

_TOPICS = ("position", "order", "execution", "wallet")
_PUSH_ORDER = ("order", "execution", "position", "wallet")  # what one change pushes, cause before effect
_CATEGORIES = ("linear", "inverse")
_AUTH_FAILED = "Params Error"


def _visible(position: Position | None) -> tuple[Any, ...] | None:
    """What Bybit pushes a position update for (a mark price move alone is not pushed)."""
    if position is None:
        return None
    return (position.side, position.size, position.entry_price, position.leverage, position.stop_loss)


def _topic_ok(topic: Any) -> bool:
    if not isinstance(topic, str):
        return False
    base, _, category = topic.partition(".")
    if base == "wallet":
        return not category
    return base in _TOPICS and category in ("", *_CATEGORIES)


class BybitStreams:
    """Bybit's side of the stream hub."""

    fault_kinds = tuple(
        k for k in LIVE_STREAM_FAULTS + GATE_STREAM_FAULTS if "expire" not in k and "listen" not in k and k != "array"
    )

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub

    @property
    def api(self) -> BybitApi:
        return self.hub.emu.venue_api("bybit")  # type: ignore[return-value]

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/v5/private"

    @staticmethod
    def unavailable() -> web.Response:
        return web.Response(status=404, text="404 page not found", content_type="text/plain")

    async def serve(self, account: EmulatedAccount, request: web.Request, path: str) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            return web.Response(status=400, text="Bad Request", content_type="text/plain")
        return await BybitConnection(self.hub, account, request, path).run()

    def stop(self) -> None:
        pass

    # message formatting ----------------------------------------------------------------------------------

    def rows(self, account: EmulatedAccount, change: AccountChange) -> dict[str, list[dict[str, Any]]]:
        """Rows per base topic ("position", "order", "execution", "wallet") for ``change``."""
        api = self.api
        keys = {(p.symbol, p.side) for p in change.positions if _visible(p.before) != _visible(p.after)}
        keys |= {(o.symbol, o.protects) for o in change.orders_opened + change.orders_closed if o.attached}
        positions = []
        for symbol, side in sorted({(s, side if account.hedge_mode else "") for s, side in keys}):
            market = api.markets[symbol]
            if side:
                idx, position = (1 if side == "long" else 2), account.positions.get((symbol, side))
            else:
                idx, position = 0, account.one_way_entry(symbol)
            row = {"category": market.category, **api._position_row(account, market, idx, position)}
            row["entryPrice"] = row.pop("avgPrice")  # the stream names REST's avgPrice entryPrice
            positions.append(row)
        orders = [
            {"category": api.markets[o.symbol].category, **api._order_row(account, o)}
            for o in change.orders_opened + change.orders_amended + change.orders_closed
        ]
        realised = {asset: after - (before or ZERO) for asset, before, after in change.balances if after is not None}
        executions = []
        for fill in change.fills:
            pnl = realised.get(api.markets[fill.symbol].settle, ZERO) if len(change.fills) == 1 else ZERO
            orders.append(self._fill_row(account, fill, pnl))
            executions.append(self._execution_row(account, fill))
        wallet: list[dict[str, Any]] = []
        if change.balances or change.fills or positions:
            wallet = api.wallet_balance(account, {"accountType": "UNIFIED"})["list"]
        return {"position": positions, "order": orders, "execution": executions, "wallet": wallet}

    def _fill_row(self, account: EmulatedAccount, fill: EmulatedOrder, pnl: Decimal) -> dict[str, Any]:
        market = self.api.markets[fill.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        value = fill.qty * fill.price if market.linear else fill.qty / fill.price
        idx = (1 if fill.position_side == "long" else 2) if account.hedge_mode else 0
        row: dict[str, Any] = {"category": market.category, "symbol": fill.symbol, "orderId": fill.order_id}
        row.update(orderLinkId=fill.client_order_id, blockTradeId="", side="Buy" if fill.side == "buy" else "Sell")
        row.update(positionIdx=idx, orderStatus="Filled", cancelType="UNKNOWN", rejectReason="EC_NoError")
        row.update(timeInForce="IOC", isLeverage="", price=fmt(fill.price, pp), qty=fmt(fill.qty, qp))
        row.update(avgPrice=fmt(fill.price), leavesQty="0", leavesValue="0", cumExecQty=fmt(fill.qty, qp))
        row.update(cumExecValue=fmt(value, 8), cumExecFee="0", orderType="Market", stopOrderType="", orderIv="")
        row.update(triggerPrice="", takeProfit="", stopLoss="", triggerBy="", tpTriggerBy="", slTriggerBy="")
        row.update(triggerDirection=0, placeType="", lastPriceOnCreated=fmt(market.price, pp), closeOnTrigger=False)
        row.update(reduceOnly=fill.reduce_only, smpGroup=0, smpType="None", smpOrderId="", slLimitPrice="0")
        row.update(tpLimitPrice="0", tpslMode="UNKNOWN", createType="CreateByUser", marketUnit="", feeCurrency="")
        row.update(closedPnl=fmt(pnl, 8), cumFeeDetail={})
        return {**row, "createdTime": str(fill.timestamp_ms), "updatedTime": str(fill.timestamp_ms)}

    def _execution_row(self, account: EmulatedAccount, fill: EmulatedOrder) -> dict[str, Any]:
        market = self.api.markets[fill.symbol]
        pp, qp = places(market.tick_size), places(market.step_size)
        value = fill.qty * fill.price if market.linear else fill.qty / fill.price
        row: dict[str, Any] = {"category": market.category, "symbol": fill.symbol, "execFee": "0"}
        row.update(execId=str(uuid.uuid4()), execPrice=fmt(fill.price, pp), execQty=fmt(fill.qty, qp))
        row.update(execType="Trade", execValue=fmt(value, 8), isMaker=False, feeRate="0", tradeIv="", markIv="")
        row.update(blockTradeId="", markPrice=fmt(market.price, pp), indexPrice="", underlyingPrice="")
        row.update(leavesQty="0", orderId=fill.order_id, orderLinkId=fill.client_order_id)
        row.update(orderPrice=fmt(fill.price, pp), orderQty=fmt(fill.qty, qp), orderType="Market")
        row.update(stopOrderType="UNKNOWN", side="Buy" if fill.side == "buy" else "Sell")
        row.update(execTime=str(fill.timestamp_ms), isLeverage="0", closedSize="0", seq=fill.timestamp_ms)
        return row


class BybitConnection(StreamConnection):
    """One ``/v5/private`` connection: unauthenticated until a valid ``auth`` op, then pushes subscribed topics."""

    venue = "bybit"

    def __init__(self, hub: StreamHub, account: EmulatedAccount, request: web.Request, path: str) -> None:
        super().__init__(hub, account, request, path)
        self.conn_id = f"{random_id(20)}-{random_id(5)}"
        self.authenticated = False
        self.topics: list[str] = []

    def _reply(self, payload: dict[str, Any], req_id: Any) -> None:
        if req_id is not None:
            payload["req_id"] = str(req_id)
        self.send_json(payload)

    async def on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        op, req_id = message.get("op"), message.get("req_id")
        if op == "ping":
            pong = {"op": "pong", "args": [str(now_ms())], "conn_id": self.conn_id}
            self.send_json({"req_id": str(req_id), **pong} if req_id is not None else pong)
        elif op == "auth":
            ok = self._auth_ok(message.get("args"))
            self.authenticated = self.authenticated or ok
            answer = {"success": ok, "ret_msg": "" if ok else _AUTH_FAILED, "op": "auth", "conn_id": self.conn_id}
            self._reply(answer, req_id)
        elif op in ("subscribe", "unsubscribe"):
            self._reply(self._subscription(op, message.get("args")), req_id)
        else:
            self._reply({"success": False, "ret_msg": "error:invalid op", "op": op, "conn_id": self.conn_id}, req_id)

    def _auth_ok(self, args: Any) -> bool:
        if self.account.take_stream_fault("refuse_auth"):
            return False
        if not isinstance(args, list) or len(args) != 3:
            return False
        key, expires, signature = args
        try:
            expires_ms = int(str(expires))
        except ValueError:
            return False
        if key != self.account.api_key or expires_ms <= now_ms() or not isinstance(signature, str):
            return False
        return hmac_hex(self.account.secret, f"GET/realtime{expires}") == signature.lower()

    def _subscription(self, op: str, args: Any) -> dict[str, Any]:
        answer: dict[str, Any] = {"success": True, "ret_msg": "", "op": op, "conn_id": self.conn_id}
        topics = args if isinstance(args, list) else []
        if not self.authenticated:
            return {**answer, "success": False, "ret_msg": "Request not authorized"}
        bad = [t for t in topics if not _topic_ok(t)]
        if bad or not topics:
            return {**answer, "success": False, "ret_msg": f"error:handler not found,topic:{bad[0] if bad else ''}"}
        for topic in topics:
            if op == "subscribe" and topic not in self.topics:
                self.topics.append(topic)
            elif op == "unsubscribe" and topic in self.topics:
                self.topics.remove(topic)
        return answer

    def frames_for(self, change: AccountChange) -> list[Any]:
        if not self.authenticated or not self.topics:
            return []
        rows = self.hub.bybit.rows(self.account, change)
        frames = []
        for topic in sorted(self.topics, key=lambda t: _PUSH_ORDER.index(t.partition(".")[0])):
            base, _, category = topic.partition(".")
            data = [r for r in rows[base] if not category or r.get("category") == category]
            if data:
                frames.append(
                    {"id": str(uuid.uuid4()), "topic": topic, "creationTime": change.timestamp_ms, "data": data}
                )
        return frames

    def hostile_frame(self, kind: str) -> str:
        """A ``position`` push cut off mid-object (malformed) or whose size is ``1e400`` (overflow), or an
        ``order`` push whose one row is null (null_row)."""
        stamp = now_ms()
        if kind == "null_row":
            return dumps({"id": str(uuid.uuid4()), "topic": "order", "creationTime": stamp, "data": [None]})
        api = self.hub.bybit.api
        market = api.markets["BTCUSDT"]
        row = {"category": market.category, **api._position_row(self.account, market, 0, None)}
        row["entryPrice"] = row.pop("avgPrice")
        row.update(side="Buy", size="1e400" if kind == "overflow" else "0.010")
        text = dumps({"id": str(uuid.uuid4()), "topic": "position", "creationTime": stamp, "data": [row]})
        return text if kind == "overflow" else text[: len(text) * 2 // 3]

    def venue_info(self) -> dict[str, Any]:
        return {"conn_id": self.conn_id, "authenticated": self.authenticated, "topics": list(self.topics)}
