"""The control API (``/_emulator/...``): JSON over HTTP for tests and benchmarks that run the emulator in a
process of their own. Routes are listed in the ``emulator.exchange`` module docstring."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulator.server import VENUES
from emulator.state.account import EmulatedAccount
from emulator.state.records import ENDPOINT_GROUPS, FAULT_KINDS, position_kwargs
from emulator.streams.control import stream_resource
from emulator.venues.base import json_response

if TYPE_CHECKING:
    from emulator.server import ExchangeEmulator

_ORDER_FIELDS = {
    "symbol",
    "side",
    "type",
    "trigger_price",
    "quantity",
    "close_position",
    "reduce_only",
    "position_side",
    "limit_price",
    "callback_rate",
    "service",
    "stop_order_type",
    "client_order_id",
    "trigger_by",
}


async def handle_control(emu: ExchangeEmulator, request: web.Request, rest: str) -> web.Response:
    parts = [p for p in rest.split("/") if p]
    try:
        if parts == ["accounts"] and request.method == "GET":
            return json_response(
                [
                    {"name": a.name, "venue": a.venue, "base_url": a.base_url, "hedge_mode": a.hedge_mode}
                    for a in emu.accounts.values()
                ]
            )
        if parts == ["limits"]:
            return await _limits(emu, request)
        if parts == ["refusals"] and request.method == "GET":
            return json_response({venue: emu.ip_refusals(venue) for venue in VENUES})
        if parts == ["capabilities"] and request.method == "GET":
            return json_response(capabilities(emu))
        if len(parts) not in (2, 3):
            return json_response({"error": "not found"}, status=404)
        account = emu.accounts.get(parts[0])
        if account is None:
            return json_response({"error": f"no account {parts[0]!r}"}, status=404)
        return await _account_resource(account, request, parts[1], parts[2] if len(parts) == 3 else None)
    except KeyError as exc:
        return json_response({"error": str(exc.args[0]) if exc.args else "not found"}, status=404)
    except (ValueError, TypeError) as exc:
        return json_response({"error": str(exc)}, status=400)


def capabilities(emu: ExchangeEmulator) -> dict[str, Any]:
    """What can be injected, so an out-of-process driver picks faults this emulator offers (a fault added later
    shows up here without the driver changing)."""
    return {
        "venues": list(VENUES),
        "faults": list(FAULT_KINDS),
        "endpoints": list(ENDPOINT_GROUPS),
        "stream_faults": {venue: list(emu.streams.fault_kinds(venue)) for venue in VENUES},
    }


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ValueError("the body must be JSON") from None


def _object(body: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError(f"expected {what} as an object")
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown {what} fields: {', '.join(sorted(unknown))}")
    return body


async def _limits(emu: ExchangeEmulator, request: web.Request) -> web.Response:
    if request.method == "PUT":
        body = _object(await _body(request), set(VENUES), "limits")
        for venue, spec in body.items():
            if spec is None or isinstance(spec, int):
                emu.set_ip_limit(venue, spec)
            else:
                spec = _object(spec, {"limit", "window_s", "ban_after", "ban_s"}, "limit")
                emu.set_ip_limit(venue, spec.get("limit"), **{k: v for k, v in spec.items() if k != "limit"})
    elif request.method != "GET":
        return json_response({"error": "method not allowed"}, status=405)
    return json_response({venue: emu.ip_limit(venue) for venue in VENUES})


async def _account_resource(
    account: EmulatedAccount, request: web.Request, resource: str, item: str | None
) -> web.Response:
    method = request.method
    if item is not None and resource != "protective-orders":
        return json_response({"error": "not found"}, status=404)
    if resource in ("streams", "stream-faults"):
        return await stream_resource(account, request, resource)
    if resource == "positions":
        if method == "GET":
            return json_response([p.to_dict() for _, p in sorted(account.positions.items())])
        if method == "PUT":
            body = await _body(request)
            items = body.get("positions") if isinstance(body, dict) else body
            if not isinstance(items, list):
                raise ValueError("expected a list of positions")
            account.replace_positions(items)
            return json_response({"ok": True, "count": len(account.positions)})
        if method == "POST":  # one position set (or replaced), the others untouched
            position = account.set_position(**position_kwargs(await _body(request)))
            return json_response({"ok": True, "position": position.to_dict()})
        if method == "DELETE":
            account.clear_positions()
            return json_response({"ok": True})
    elif resource == "faults":
        if method == "GET":
            return json_response([f.to_dict() for f in account.faults])
        if method == "POST":
            body = await _body(request)
            if not isinstance(body, dict) or "kind" not in body:
                raise ValueError('expected {"kind", "endpoint", "times"}')
            fault = account.fail(body["kind"], endpoint=body.get("endpoint", "any"), times=body.get("times"))
            return json_response({"ok": True, "fault": fault.to_dict()})
        if method == "DELETE":
            account.clear_faults()
            return json_response({"ok": True})
    elif resource == "requests":
        if method == "GET":
            endpoint = request.query.get("endpoint")
            count = account.request_count(endpoint)
            records = [r for r in account.requests if endpoint in (None, "any") or r.endpoint == endpoint]
            weight = sum(r.weight for r in records)
            return json_response({"count": count, "weight": weight, "requests": [r.to_dict() for r in records]})
        if method == "DELETE":
            account.clear_requests()
            return json_response({"ok": True})
    elif resource == "orders" and method == "GET":
        return json_response([o.to_dict() for o in account.orders])
    elif resource in ("fills", "close", "trigger"):
        return await _history(account, request, resource)
    elif resource == "protective-orders":
        return await _protective(account, request, item)
    elif resource == "position-stops" and method == "POST":
        body = _object(await _body(request), {"symbol", "side", "stop_loss", "take_profit", "trailing_stop"}, "stops")
        if "symbol" not in body or "side" not in body:
            raise ValueError("position stops need symbol and side")
        placed = account.set_position_stops(**body)
        return json_response({"ok": True, "orders": [o.to_dict() for o in placed]})
    elif resource == "settings" and method == "POST":
        return _settings(account, await _body(request))
    return json_response({"error": "method not allowed"}, status=405)


async def _protective(account: EmulatedAccount, request: web.Request, item: str | None) -> web.Response:
    method = request.method
    if item is not None:
        if method != "DELETE":
            return json_response({"error": "method not allowed"}, status=405)
        return json_response({"ok": True, "order": account.cancel_protective_order(item).to_dict()})
    if method == "GET":
        return json_response([o.to_dict() for o in account.protective_orders])
    if method == "POST":
        body = dict(_object(await _body(request), _ORDER_FIELDS, "protective order"))
        missing = {"symbol", "side", "type"} - set(body)
        if missing:
            raise ValueError(f"a protective order needs {', '.join(sorted(missing))}")
        body.setdefault("trigger_price", None)
        order = account.place_protective_order(body.pop("symbol"), body.pop("side"), body.pop("type"), **body)
        return json_response({"ok": True, "order": order.to_dict()})
    if method == "DELETE":
        cancelled = [account.cancel_protective_order(o.order_id) for o in account.protective_orders]
        return json_response({"ok": True, "count": len(cancelled)})
    return json_response({"error": "method not allowed"}, status=405)


async def _history(account: EmulatedAccount, request: web.Request, resource: str) -> web.Response:
    """Trade history: list fills, close a position with a cause, trigger a protective order."""
    method = request.method
    if resource == "fills" and method == "GET":
        symbol, cause = request.query.get("symbol") or None, request.query.get("cause") or None
        return json_response([f.to_dict() for f in account.history(symbol, cause=cause)])
    if resource == "close" and method == "POST":
        body = dict(_object(await _body(request), {"symbol", "side", "cause", "price", "qty", "at_ms"}, "close"))
        missing = {"symbol", "side", "cause"} - set(body)
        if missing:
            raise ValueError(f"a close needs {', '.join(sorted(missing))}")
        _check_at_ms(body)
        fills = account.close_position(body.pop("symbol"), body.pop("side"), **body)
        return json_response({"ok": True, "fills": [f.to_dict() for f in fills]})
    if resource == "trigger" and method == "POST":
        body = dict(_object(await _body(request), {"order_id", "price", "qty", "at_ms"}, "trigger"))
        if "order_id" not in body:
            raise ValueError("a trigger needs order_id")
        _check_at_ms(body)
        fills = account.trigger_protective_order(str(body.pop("order_id")), **body)
        return json_response({"ok": True, "fills": [f.to_dict() for f in fills]})
    return json_response({"error": "method not allowed"}, status=405)


def _check_at_ms(body: Mapping[str, Any]) -> None:
    at_ms = body.get("at_ms")
    if at_ms is not None and (isinstance(at_ms, bool) or not isinstance(at_ms, int)):
        raise ValueError("at_ms must be an integer (epoch milliseconds)")


def _settings(account: EmulatedAccount, body: Any) -> web.Response:
    body = _object(body, {"hedge_mode", "page_size", "instruments_page_size", "fee_rate"}, "settings")
    for key in ("page_size", "instruments_page_size"):
        if key in body and (not isinstance(body[key], int) or body[key] < 1):
            raise ValueError(f"{key} must be a positive integer")
    if "hedge_mode" in body:
        account.hedge_mode = bool(body["hedge_mode"])
    if "fee_rate" in body:
        account.fee_rate = body["fee_rate"]
    for key in ("page_size", "instruments_page_size"):
        if key in body:
            setattr(account, key, body[key])
    return json_response(
        {
            "ok": True,
            "hedge_mode": account.hedge_mode,
            "page_size": account.page_size,
            "instruments_page_size": account.instruments_page_size,
            "fee_rate": str(account.fee_rate),
        }
    )
