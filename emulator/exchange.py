"""Loopback emulator of Binance USDⓈ-M (``/fapi``) and Bybit (``/v5``) REST APIs for the real ccxt clients.

This module is the import point (and ``python -m emulator.exchange`` the command line); the code lives in
``emulator/state`` (venue-neutral state), ``emulator/venues/<venue>.py`` (one module per venue's protocol),
``emulator/server.py`` (request pipeline), ``emulator/control.py`` and ``emulator/scenario.py``.

Every account lives under its own path prefix, so a ccxt client built with
``api_base_url=account.base_url`` (``http://HOST:PORT/{account}``) talks only to that account, and every
request it makes -- market loading included -- is recorded, weighed, counted and subject to that account's
faults and tampering. Answers use each venue's own JSON: Binance bare objects/arrays and ``{"code", "msg"}``
errors with HTTP status codes, Bybit ``{"retCode", "retMsg", "result", "retExtInfo", "time"}`` envelopes.

In-process use::

    emu = ExchangeEmulator(timeout_delay_s=30.0)                # ip_limits=True: enforce venue IP limits
    base = await emu.start(host="127.0.0.1", port=0)          # "http://127.0.0.1:PORT"
    acct = emu.add_account("binance-main", venue="binance", api_key="k1", secret="s1", hedge_mode=False)
    acct.set_position("BTCUSDT", "long", Decimal("1.0"), entry_price=Decimal("65000"), stop_loss=60000)
    acct.place_protective_order("BTCUSDT", "sell", "take_profit_market", trigger_price=70000, close_position=True)
    acct.fail("rate_limit", endpoint="positions", times=1)
    acct.tamper("/fapi/v3/positionRisk", lambda rows: rows + rows[:1], times=1)   # a duplicate row, once
    client = create_client(acct.exchange_id, api_key="k1", secret="s1", api_base_url=acct.base_url)
    ...
    acct.requests, acct.request_count("positions"), acct.weight_used(), emu.weight_used("binance")
    acct.close_position("BTCUSDT", "long", cause="stop_loss", at_ms=int(time.time() * 1000) - 3 * 3600_000)
    acct.orders, acct.positions, acct.protective_orders, acct.fills, acct.history("BTCUSDT", cause="stop_loss")
    await emu.stop()

``acct.page_size`` (default and maximum 200) caps Bybit ``/v5/position/list`` pages and
``acct.instruments_page_size`` (default and maximum 1000) caps ``/v5/market/instruments-info`` pages; they
and ``/v5/order/realtime`` (``limit`` 1..50, default 20) paginate with an opaque ``cursor`` /
``nextPageCursor`` that is ``""`` on the last page.

Venue endpoints served under ``/{account}`` (IP weight in brackets)
-------------------------------------------------------------------
Binance USDⓈ-M (``venue="binance"``)::

    GET    /fapi/v1/ping [1], /fapi/v1/time [1], /fapi/v1/exchangeInfo [1]             (public, group "markets")
    GET    /fapi/v3/positionRisk [5], /fapi/v2/positionRisk [5], /fapi/v1/leverageBracket [1],
           /fapi/v1/positionSide/dual [30]                                           (signed, group "positions")
    POST   /fapi/v1/order [0] (MARKET only; conditional types: -4120, use the Algo Service)
    DELETE /fapi/v1/order [1] (classic conditional orders), /fapi/v1/algoOrder [1] (algo orders)
    GET    /fapi/v1/openOrders [1 with symbol, 40 without] (classic conditional orders),
           /fapi/v1/openAlgoOrders [1 / 40] (Algo Service conditional orders)       (signed, group "orders")
    GET    /fapi/v1/userTrades [5] (fills), /fapi/v1/forceOrders [20 with symbol, 50 without] (liquidation and
           ADL orders), /fapi/v1/order [1], /fapi/v1/allOrders [5] (filled orders and classic conditional
           ones), /fapi/v1/algoOrder [1], /fapi/v1/allAlgoOrders [5]                (signed, group "history")
    GET    /fapi/v2/balance, /fapi/v3/balance, /fapi/v2/account, /fapi/v3/account [5]  (signed, group "account")

Bybit v5 (``venue="bybit"``), every request weighing 1::

    GET  /v5/market/time, /v5/market/instruments-info                           (public, group "markets")
    GET  /v5/position/list (``stopLoss``, ``takeProfit``, ``trailingStop`` from position stops)
                                                                                (signed, group "positions")
    POST /v5/order/create (Market only), /v5/order/cancel;  GET /v5/order/realtime (conditional orders:
         ``orderFilter`` Order | StopOrder | tpslOrder | ..., absent = all; ``openOnly`` 0 | 1)
                                                                                (signed, group "orders")
    GET  /v5/execution/list, /v5/position/closed-pnl (``limit`` 1..100, default 50; ``cursor``)
                                                                                (signed, group "history")
    GET  /v5/account/wallet-balance, /v5/account/info, /v5/user/query-api       (signed, group "account")

Signed requests are checked against the account's key and secret the way the venues do: Binance HMAC-SHA256
(hex) of query string + body in ``signature`` with the key in ``X-MBX-APIKEY``, and ``timestamp`` inside
``recvWindow``; Bybit ``X-BAPI-SIGN`` = HMAC-SHA256 of timestamp + key + recv window + (query string | body).
Weights and rules are those of the venues' API documentation; each venue module names the pages used.

Protective orders
-----------------
One venue-neutral model (:class:`ProtectiveOrder`), printed per venue::

    acct.place_protective_order(symbol, side, type, *, trigger_price, quantity=None, close_position=False,
        reduce_only=True, position_side=None, limit_price=None, callback_rate=None, service=None,
        stop_order_type=None, client_order_id=None, trigger_by="last") -> ProtectiveOrder
    acct.cancel_protective_order(order_id) -> ProtectiveOrder      (KeyError when not open)
    acct.set_position_stops(symbol, side, stop_loss=None, take_profit=None, trailing_stop=None)
    acct.protective_orders, acct.closed_protective_orders, acct.position_stops(symbol, side)

``type`` is stop_market, stop, take_profit, take_profit_market or trailing_stop_market; ``position_side``
("long"/"short") is required in hedge mode and refused in one-way mode. Binance: ``service`` "classic" (shown
by openOrders, cancelled by DELETE /fapi/v1/order) or "algo" (the default; openAlgoOrders, DELETE
/fapi/v1/algoOrder); trailing stops need ``callback_rate`` 0.1..10. Bybit: ``stop_order_type`` "Stop" (the
default), "PartialStopLoss", "PartialTakeProfit" or "tpslOrder"; orders show as ``orderStatus``
"Untriggered" and, once cancelled, "Deactivated" (``openOnly=1``). Prices and quantities must sit on the
market's tick and step grid; the trigger direction is not checked.

``set_position_stops`` replaces a held position's attached TP/SL (legs passed as None are removed); attached
orders die with the position. Bybit shows them in the position row (``trailingStop`` is a price distance) and
as StopLoss/TakeProfit/TrailingStop conditional orders; Binance as closePosition STOP_MARKET /
TAKE_PROFIT_MARKET algo orders on the mark price (no trailing). ``set_position(..., stop_loss=X)`` does the
same for the stop-loss; ``Position.stop_loss`` mirrors the attached stop-loss. ``set_position`` accepts
``entry_price=0`` on Binance, which reports ``entryPrice`` "0.0" for some non-empty positions.

Trade history
-------------
Every fill is recorded venue-neutrally (:class:`Fill`: trade id, order id, client order id, symbol, side,
qty, price, realized PnL, fee, time, position side / hedge leg, closed size, entry price, remaining size, the
conditional order that triggered, and a ``cause`` from :data:`CAUSES`): market orders placed through the API
("order"), and what the venue does itself::

    acct.close_position(symbol, side, *, cause, price=None, qty=None, at_ms=None) -> list[Fill]
        # cause: manual | stop_loss | take_profit | trailing_stop | liquidation | adl | settlement | delivery
    acct.trigger_protective_order(order_id, *, price=None, qty=None, at_ms=None) -> list[Fill]
    acct.fills, acct.history(symbol=None, *, cause=None, since_ms=None, until_ms=None), acct.fee_rate

``close_position`` reduces (``qty``) or removes the position at ``price`` (default: mark price; liquidation:
the bankruptcy price entry * (1 -/+ 1/leverage)) at ``at_ms`` (default now; a past time places the fill in
the past). "manual" is a close made by a person in the venue's app; stop_loss / take_profit / trailing_stop
trigger the open reduce-only conditional order of that kind protecting the position (the position-attached
one first; ValueError when there is none), exactly as ``trigger_protective_order`` does for a given order
(fills at its limit or trigger price; the order leaves the open orders as "triggered"). Realized PnL, less
``fee_rate`` x notional (default 0), goes to the balance. How each venue prints each cause:

* Binance: ``userTrades`` rows (``realizedPnl``, ``commission``); the order behind them in ``order`` /
  ``allOrders``: API orders MARKET with the bot's ``clientOrderId``, manual ones ``web_...``; classic
  conditional orders FILLED under their own id with ``origType`` STOP_MARKET / TAKE_PROFIT_MARKET /
  TRAILING_STOP_MARKET; Algo Service orders place a new order (``clientOrderId`` = ``clientAlgoId``) and turn
  ``algoStatus`` FINISHED with ``actualOrderId``; liquidation LIMIT IOC ``autoclose-<ms><seq>`` and ADL LIMIT
  GTC ``adl_autoclose`` (both also in ``forceOrders``), settlement / delivery ``settlement_autoclose-...``.
* Bybit: ``execution/list`` ``execType`` / ``createType`` / ``stopOrderType``: Trade / CreateByUser (API),
  Trade / CreateByClosing (manual), Trade / CreateByStopLoss | CreateByTakeProfit | CreateByTrailingStop | ...
  / StopLoss | TakeProfit | TrailingStop | ... (the conditional order's own ids), BustTrade /
  CreateByTakeOver_PassThrough (whole position liquidated; part of it: Trade / CreateByLiq), AdlTrade /
  CreateByAdl_PassThrough, Delivery / CreateBySettle, Settle / CreateBySettle; ``closed-pnl`` one record per
  closing order (its documented execType values only: ADL shows as Trade, delivery as Settle).

History endpoints take each venue's time rules: without times the last 7 days, at most 7 days between
``startTime`` and ``endTime`` (Binance -1127, Bybit retCode 10001), start after end (-1023 / 10001), Binance
``fromId`` not with times (-1128). Details per venue: ``emulator/venues/binance_history.py`` and
``emulator/venues/bybit_history.py``.

Faults, tampering, weights and IP limits
----------------------------------------
Faults (``account.fail(kind, endpoint=..., times=...)``), by kind:

* ``http_500``: Binance HTTP 500 ``{"code":-1001,...}``; Bybit HTTP 502 with an HTML page.
* ``rate_limit``: Binance HTTP 429 ``{"code":-1003,...}``; Bybit HTTP 200 ``retCode`` 10006.
* ``empty_body``: HTTP 200 with an empty body.
* ``timeout``: the answer is held for ``timeout_delay_s`` and then served normally.
* ``bad_key``: Binance HTTP 401 ``{"code":-2015,...}``; Bybit ``retCode`` 10003.
* ``garbage_json``: HTTP 200, ``application/json``, truncated JSON.
* ``no_success_marker``: Binance ``{"data": []}``; Bybit a body without ``retCode``.

Endpoint groups: ``positions``, ``markets``, ``orders`` (every order endpoint above), ``history`` (the trade
history endpoints above), ``account``, ``any``.

Tampering (``account.tamper(path, transform, *, times=None, method=None)``, ``account.clear_tampering()``):
on a *successful* answer of venue ``path`` (e.g. ``"/fapi/v3/positionRisk"``, ``"/v5/position/list"``),
``transform`` gets the payload the route produced -- Binance the whole JSON body, Bybit the ``result`` object
before the envelope is added -- and returns what is served instead (any JSON-able value: a row that is not an
object, ``"positionAmt": "abc"``, a missing ``entryPrice``, a duplicate row, an empty page that still carries
``nextPageCursor``...). ``times=None`` applies until cleared, else to that many answers; several tamperings
of one path apply in the order added. Faults win: a faulted request neither uses nor consumes tampering.
A transform that raises or returns something not JSON-able yields HTTP 500 naming the path.

Weights: every request is recorded with its IP weight (``RecordedRequest.weight``; unknown paths weigh 1,
requests refused for the IP limit 0).
``account.weight_used(since=None)`` sums an account's (``since``: a ``time.time()`` stamp);
``emulator.weight_used(venue, window_s=60)`` sums all accounts of a venue, as they share one IP. Binance
answers carry ``X-MBX-USED-WEIGHT-1M`` (the rolling one-minute weight of the whole emulator, this request
included); signed Bybit answers ``X-Bapi-Limit`` (10 for order create/cancel, else 50),
``X-Bapi-Limit-Status`` (left this second for the account and endpoint) and ``X-Bapi-Limit-Reset-Timestamp``.

IP limits are off unless ``ExchangeEmulator(ip_limits=True)`` (documented limits: Binance 2400 weight per
minute, Bybit 600 requests per 5 s) or ``emulator.set_ip_limit(venue, limit, *, window_s=None,
ban_after=None, ban_s=None)``. Over the limit Binance answers HTTP 429 ``{"code":-1003,...}`` with
``Retry-After``; after 3 refusals in a row the IP is banned: HTTP 418 ``{"code":-1003,"msg":"Way too much
request weight used; IP banned until <ms>..."}`` with ``Retry-After`` for 120 s, doubling per ban. Bybit
answers HTTP 403 "access too frequent" and bans for 600 s at once. ``set_ip_limit(venue, None)`` lifts it.

Control API (JSON, for out-of-process use)
------------------------------------------
::

    GET    /_emulator/accounts                     -> [{"name", "venue", "base_url", "hedge_mode"}]
    GET    /_emulator/limits                       -> {venue: {"limit", "window_s", "used", "banned_until_ms"}}
    PUT    /_emulator/limits                       body {venue: limit | null | {"limit", "window_s"?,
                                                   "ban_after"?, "ban_s"?}}
    GET    /_emulator/{account}/positions          -> [position]
    PUT    /_emulator/{account}/positions          body [position] or {"positions": [position]}: replace all
    DELETE /_emulator/{account}/positions          remove all positions
    POST   /_emulator/{account}/position-stops     body {"symbol", "side", "stop_loss"?, "take_profit"?,
                                                   "trailing_stop"?} -> {"ok", "orders": [protective order]}
    GET    /_emulator/{account}/protective-orders  -> [protective order]
    POST   /_emulator/{account}/protective-orders  body {"symbol", "side", "type", "trigger_price"?, ...the
                                                   keywords of place_protective_order} -> {"ok", "order"}
    DELETE /_emulator/{account}/protective-orders[/{order_id}]  cancel all / one (404 when not open)
    POST   /_emulator/{account}/faults             body {"kind", "endpoint": "any", "times": null}
    DELETE /_emulator/{account}/faults             clear all faults
    GET    /_emulator/{account}/faults             -> [{"kind", "endpoint", "times"}]
    GET    /_emulator/{account}/requests[?endpoint=G]  -> {"count", "weight", "requests": [{"method",
                                                        "path", "params", "timestamp", "endpoint", "weight"}]}
    DELETE /_emulator/{account}/requests           forget recorded requests
    GET    /_emulator/{account}/orders             -> [filled order]  (orders placed through the API)
    GET    /_emulator/{account}/fills[?symbol=S&cause=C]  -> [fill]  (Fill.to_dict(), oldest first)
    POST   /_emulator/{account}/close              body {"symbol", "side", "cause", "price"?, "qty"?, "at_ms"?}
                                                   -> {"ok", "fills": [fill]}
    POST   /_emulator/{account}/trigger            body {"order_id", "price"?, "qty"?, "at_ms"?} -> {"ok", "fills"}
    POST   /_emulator/{account}/settings           body {"hedge_mode"?, "page_size"?, "instruments_page_size"?,
                                                   "fee_rate"?}

A position is ``{"symbol", "side": "long"|"short", "size", "entry_price"?, "mark_price"?, "leverage"?,
"stop_loss"?, "opened_ms"?}`` with decimals as strings or numbers; a protective order is
``ProtectiveOrder.to_dict()``. Errors answer ``{"error": "..."}`` with HTTP 400 (invalid input) or 404
(unknown account or order).

Command line::

    python -m emulator.exchange --scenario FILE [--host 127.0.0.1] [--port 0] [--timeout-delay 30]

prints the base URL of every account and serves until interrupted. A scenario (YAML or JSON) is
``{"accounts": [{"name", "venue", "api_key", "secret", "hedge_mode", "page_size"?, "positions": [...],
"protective_orders"?: [{"symbol", "side", "type", ...}], "fee_rate"?, "closes"?: [{"symbol", "side", "cause",
"price"?, "qty"?, "at_ms"?}], "faults": [{"kind", "endpoint", "times"}]}],
"timeout_delay_s"?, "ip_limits"?: true | {venue: limit}, "markets"?: [{"venue", "id", ...}],
"synthetic_markets"?: {"binance": N, "bybit": N}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from emulator.scenario import read_scenario
from emulator.server import CONTROL_PREFIX, VENUES, ExchangeEmulator
from emulator.state import (
    CAUSES,
    CLOSE_CAUSES,
    ENDPOINT_GROUPS,
    FAULT_KINDS,
    PROTECTIVE_TYPES,
    SIDES,
    EmulatedAccount,
    EmulatedOrder,
    Fault,
    Fill,
    MarketSpec,
    Position,
    ProtectiveOrder,
    RecordedRequest,
)

__all__ = [
    "CAUSES",
    "CLOSE_CAUSES",
    "ENDPOINT_GROUPS",
    "FAULT_KINDS",
    "PROTECTIVE_TYPES",
    "SIDES",
    "VENUES",
    "EmulatedAccount",
    "EmulatedOrder",
    "ExchangeEmulator",
    "Fault",
    "Fill",
    "MarketSpec",
    "Position",
    "ProtectiveOrder",
    "RecordedRequest",
    "load_scenario",
    "main",
    "read_scenario",
]


def load_scenario(path: str | Path, *, timeout_delay_s: float | None = None) -> ExchangeEmulator:
    """Build an (unstarted) emulator from a scenario file."""
    return ExchangeEmulator.load_scenario(path, timeout_delay_s=timeout_delay_s)


async def _serve(args: argparse.Namespace) -> int:
    emulator = (
        ExchangeEmulator.load_scenario(args.scenario, timeout_delay_s=args.timeout_delay)
        if args.scenario
        else ExchangeEmulator(timeout_delay_s=args.timeout_delay or 30.0)
    )
    base = await emulator.start(host=args.host, port=args.port)
    print(f"exchange emulator listening on {base} (control API: {base}/{CONTROL_PREFIX})", flush=True)
    for account in emulator.accounts.values():
        mode = "hedge" if account.hedge_mode else "one-way"
        print(f"{account.name} {account.venue} {mode} {account.base_url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.exchange", description="Loopback Binance USDⓈ-M / Bybit v5 REST emulator."
    )
    parser.add_argument("--scenario", help="scenario file (YAML or JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--timeout-delay",
        type=float,
        default=None,
        help="seconds a 'timeout' fault holds a request (default: scenario or 30)",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
