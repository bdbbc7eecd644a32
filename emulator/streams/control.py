"""Control API resources for an account's private streams (routes in the ``emulator.exchange`` docstring)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emulator.state.account import EmulatedAccount
from emulator.venues.base import json_response


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError:
        raise ValueError("the body must be JSON") from None


async def stream_resource(account: EmulatedAccount, request: web.Request, resource: str) -> web.Response:
    """``/_emulator/{account}/streams`` and ``/_emulator/{account}/stream-faults``."""
    method = request.method
    if resource == "streams":
        if method == "GET":
            return json_response({"open": account.open_streams, "listen_key": account.listen_key})
        if method == "DELETE":
            body = await _body(request)
            code = body.get("code", 1001) if isinstance(body, dict) else 1001
            if isinstance(code, bool) or not isinstance(code, int) or not 1000 <= code <= 4999:
                raise ValueError("code must be a WebSocket close code (1000..4999)")
            return json_response({"ok": True, "dropped": account.drop_streams(code)})
    else:
        if method == "GET":
            return json_response([f.to_dict() for f in account.stream_faults])
        if method == "POST":
            body = await _body(request)
            if not isinstance(body, dict) or "kind" not in body or set(body) - {"kind", "times"}:
                raise ValueError('expected {"kind", "times"?}')
            fault = account.stream_fault(body["kind"], times=body.get("times"))
            return json_response({"ok": True, "fault": fault.to_dict()})
        if method == "DELETE":
            account.clear_stream_faults()
            return json_response({"ok": True})
    return json_response({"error": "method not allowed"}, status=405)
