"""Loopback emulator of Binance USDⓈ-M (``/fapi``) and Bybit (``/v5``) REST APIs and private WebSocket streams
for the real ccxt / ccxt.pro clients.

This module is the import point (and ``python -m emulator.exchange`` the command line); the code lives in
``emulator/state`` (venue-neutral state), ``emulator/venues/<venue>.py`` (one module per venue's protocol),
``emulator/server.py`` (request pipeline), ``emulator/streams`` (private WebSocket streams),
``emulator/control.py`` and ``emulator/scenario.py``.

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
                                                                                 (signed, group "orders")
    GET    /fapi/v1/openOrders [1 with symbol, 40 without] (classic conditional orders),
           /fapi/v1/openAlgoOrders [1 / 40] (Algo Service conditional orders)  (signed, group "open_orders")
    GET    /fapi/v1/userTrades [5] (fills), /fapi/v1/forceOrders [20 with symbol, 50 without] (liquidation and
           ADL orders), /fapi/v1/order [1], /fapi/v1/allOrders [5] (filled orders and classic conditional
           ones), /fapi/v1/algoOrder [1], /fapi/v1/allAlgoOrders [5]                (signed, group "history")
    GET    /fapi/v2/balance, /fapi/v3/balance, /fapi/v2/account, /fapi/v3/account [5]  (signed, group "account")

Bybit v5 (``venue="bybit"``), every request weighing 1::

    GET  /v5/market/time, /v5/market/instruments-info                           (public, group "markets")
    GET  /v5/position/list (``stopLoss``, ``takeProfit``, ``trailingStop`` from position stops)
                                                                                (signed, group "positions")
    POST /v5/order/create (Market only), /v5/order/cancel                       (signed, group "orders")
    GET  /v5/order/realtime (conditional orders: ``orderFilter`` Order | StopOrder | tpslOrder | ..., absent =
         all; ``openOnly`` 0 | 1)                                           (signed, group "open_orders")
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
* ``late_answer``: the request is carried out at once and only its answer is held for ``timeout_delay_s``: a
  venue that placed the order while the caller gave up waiting, or died.
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

Private WebSocket streams
-------------------------
Code in ``emulator/streams`` (``base.py`` connection and shared faults, ``binance.py``, ``bybit.py``,
``hub.py``), driven by the accounts' change notifications (``emulator/state/streams.py``). Point a
``ccxt.pro`` client at an account by rebasing every ``https?://`` *and* ``wss?://`` URL of ``urls['api']``
onto ``http://HOST:PORT/{account}`` / ``ws://HOST:PORT/{account}``, keeping the paths (Binance's linear WS
base must still end in ``/ws``); ``tests/test_emulator_streams.py`` has the helper. Served under
``/{account}`` (``ws://``; plain HTTP on these paths gets 400):

    Binance  POST|PUT|DELETE /fapi/v1/listenKey [1]  (API key only, no signature; group "account")
             WS /private/ws?listenKey=K[&events=E1/E2]  (what ccxt.pro 4.5.90 dials), /private/ws/K, /ws/K
    Bybit    WS /v5/private

Binance: POST returns ``{"listenKey": K}`` (64 characters) -- the same key while it is valid, extending it;
PUT extends it (``{}``); DELETE invalidates it and closes its streams (``{}``, close code 1000); PUT/DELETE
without a valid key: HTTP 400 ``{"code":-1125,"msg":"This listenKey does not exist."}``. A key lives
``acct.listen_key_ttl_s`` (3600) after its last POST/PUT; on expiry every stream of it gets
``{"e":"listenKeyExpired","E":"<ms>","listenKey":K}`` and then stays open but silent (Binance: "not related
to the websocket disconnection"). A handshake without a key gets HTTP 400; one naming an unknown, expired
or refused key is accepted and closed at once with 1008 "Invalid listenKey" (emulator's choice; Binance
documents nothing). Ping frames get pong frames. Frames, one per line::

    {"e":"ACCOUNT_UPDATE","E":ms,"T":ms,"a":{"m":"ORDER","B":[{"a":"USDT","wb":"10000.60000000","cw":"10000.60000000","bc":"0.00000000"}],"P":[{"s":"BTCUSDT","pa":"0.006","ep":"60000.0","bep":"60024.00000000","cr":"0","up":"0.90000000","mt":"cross","iw":"0","ps":"BOTH","ma":"USDT"}]}}
    {"e":"ORDER_TRADE_UPDATE","E":ms,"T":ms,"o":{"s":"BTCUSDT","c":"x1","S":"SELL","o":"MARKET","f":"GTC","q":"0.004","p":"0","ap":"60150.0","sp":"0","x":"TRADE","X":"FILLED","i":8389765000000000001,"l":"0.004","z":"0.004","L":"60150.0","T":ms,"t":1,"b":"0","a":"0","m":false,"R":false,"wt":"CONTRACT_PRICE","ot":"MARKET","ps":"BOTH","cp":false,"rp":"0.60000000","pP":false,"si":0,"ss":0,"V":"EXPIRE_MAKER","pm":"NONE","gtd":0}}
    {"e":"ALGO_UPDATE","T":ms,"E":ms,"o":{"caid":"...","aid":2000000000000001,"at":"CONDITIONAL","o":"TAKE_PROFIT_MARKET","s":"BTCUSDT","S":"SELL","ps":"BOTH","f":"GTC","q":"0","X":"NEW","ai":"","ap":"0.00000","aq":"0.00000","act":"0","tp":"70000.0","p":"0.0","V":"EXPIRE_MAKER","wt":"CONTRACT_PRICE","pm":"NONE","cp":true,"pP":false,"R":true,"tt":0,"gtd":0}}

``ACCOUNT_UPDATE`` carries a ``P`` row per *changed* symbol (one-way ``ps`` BOTH, hedge mode one row per
changed leg LONG/SHORT; a closed position ``pa`` "0..."), only when amount or entry price changed (not for a
mark-price move), and ``B`` rows for changed balances (plus the margin asset on ORDER; ``bc`` is the change
except for ORDER). ``a.m`` is the change's reason: ORDER for fills and orders, ADJUSTMENT for the test API
(``set_position``, ``set_balance``, ...), or any reason set with ``with acct.change_reason("FUNDING_FEE"):``.
A market fill pushes ``ORDER_TRADE_UPDATE`` NEW then TRADE/FILLED (``t`` = the fill's userTrades id, ``rp``
= realised PnL), then the ``ACCOUNT_UPDATE``; classic conditional orders push ``ORDER_TRADE_UPDATE`` (NEW,
CANCELED; AMENDMENT), Algo Service ones ``ALGO_UPDATE`` (NEW, CANCELED, EXPIRED when their position closes).
``events=`` in the URL filters by event type.

Bybit: ``{"op":"auth","args":[key, expires, hex HMAC-SHA256(secret, "GET/realtime"+expires)]}`` (expires in
ms, must lie ahead) answers ``{"success":true,"ret_msg":"","op":"auth","conn_id":C}`` or, on any failure,
``{"success":false,"ret_msg":"Params Error","op":"auth","conn_id":C}`` (the only v5 failure text in public
reports). ``{"op":"subscribe","req_id":N,"args":[topics]}`` (``position``, ``order``, ``execution`` --
each optionally ``.linear`` / ``.inverse`` -- and ``wallet``) answers
``{"success":true,"ret_msg":"","op":"subscribe","conn_id":C,"req_id":"N"}``; before auth ``"success":false,
"ret_msg":"Request not authorized"``; unknown topics ``"error:handler not found,topic:T"``.
``{"req_id":N,"op":"ping"}`` answers ``{"req_id":"N","op":"pong","args":["<ms>"],"conn_id":C}``. Pushes, in
the order order, execution, position, wallet, as ``{"id","topic","creationTime","data":[rows]}``::

    {"id":"...","topic":"position","creationTime":ms,"data":[{"category":"linear","symbol":"BTCUSDT","side":"Buy","size":"0.010","positionIdx":0,"entryPrice":"60000","markPrice":"60100.0","leverage":"10",...}]}
    {"id":"...","topic":"order","creationTime":ms,"data":[{"category":"linear","symbol":"BTCUSDT","orderId":"...","side":"Sell","orderType":"Market","orderStatus":"Filled","cumExecQty":"0.010","avgPrice":"60100","closedPnl":"1.00000000",...}]}

Position rows are the REST ``/v5/position/list`` rows (``avgPrice`` named ``entryPrice``) plus ``category``,
for changed positions only (a one-way close: ``side`` "", ``size`` 0; hedge ``positionIdx`` 1/2), also when
attached TP/SL change, not for a mark-price move; order rows are the REST ``/v5/order/realtime`` rows
(conditional orders Untriggered / Deactivated) and Filled rows for market fills; wallet rows those of
``/v5/account/wallet-balance``.

Changes reach the streams synchronously: every state-changing account method is wrapped in ``@notifies``
and, when the outermost one returns, the account diffs its state and hands an ``AccountChange``
(positions, protective orders opened/closed/amended, fills, balances) to ``acct.subscribe(callback)``
callbacks; a new state-changing method must carry ``@notifies(reason)`` too.

Stream faults (``acct.stream_fault(kind, times=None) -> StreamFault``, ``acct.clear_stream_faults()``,
``acct.stream_faults``, ``acct.drop_streams(code=1001) -> int``, ``acct.open_streams``, ``acct.listen_key``).
Live kinds fire at once on every open stream, then on streams as they open, one use per stream
(``times=None``: until cleared); gate kinds fire on each request of their kind. How ccxt.pro 4.5.90 shows it:

* ``drop``: close frame 1001 -> ``NetworkError("... closing code 1001")``; the next watch redials.
* ``reset``: TCP aborted, no close frame -> ``NetworkError("... closing code 1006")``.
* ``stall``: nothing more is sent, pings (frames, Bybit ``op:ping``) and requests go unanswered, TCP stays
  open (a client's close frame is still honoured) -> ``RequestTimeout("... ping-pong keepalive missing")``
  after 2 x ``streaming['keepAlive']`` (Binance 180 s, Bybit 18 s). ``clear_stream_faults()`` resumes.
* ``malformed``: one frame cut off mid-JSON (Binance an ``ACCOUNT_UPDATE``, Bybit a ``position`` push) ->
  ccxt's receive callback raises (logged by asyncio) and its receive loop ends silently; pongs go unread, so
  the same ``RequestTimeout`` follows.
* ``overflow``: one position update whose amount is ``1e400`` (Binance ``ACCOUNT_UPDATE`` ``"pa"``, Bybit
  ``position`` ``size``) -> ccxt's handler raises ``ValueError`` (``int('inf')``): the same silent end.
* ``array`` (Binance): ``[]`` as the whole frame -> ``TypeError`` in ccxt's ``handle_message``: the same.
* ``null_row`` (Bybit): an ``order`` push with ``"data":[null]`` -> ``TypeError`` in ccxt's order handler: the same.
* ``expire`` (Binance): ``listenKeyExpired`` then close 1000 -> ``NetworkError("... closing code 1000")``;
  the redial on ccxt's cached key gets 1008 until ccxt POSTs a new key. ``expire_silent``: as natural
  expiry (``listenKeyExpired``, then silence; ccxt ignores the event and just hears nothing).
* ``refuse_auth``: Bybit auth answered ``success:false`` -> ``ExchangeError`` (not AuthenticationError), and
  later watches on that connection hang (ccxt keeps it marked authenticated); Binance listenKey POST/PUT
  answered HTTP 401 ``-2015`` -> ``AuthenticationError``.
* ``refuse_listen_key`` (Binance): the handshake is closed with 1008 -> ``NetworkError("... code 1008")``.
* ``unavailable``: the handshake gets HTTP 404 (REST unaffected) -> ``NetworkError("404, message=...")``.

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
    GET    /_emulator/{account}/streams            -> {"open": [stream], "listen_key"}
    DELETE /_emulator/{account}/streams            body {"code"?: 1001}: close every open stream
                                                   -> {"ok", "dropped"}
    POST   /_emulator/{account}/stream-faults      body {"kind", "times"?: null} -> {"ok", "fault"}
    GET    /_emulator/{account}/stream-faults      -> [{"kind", "times"}]
    DELETE /_emulator/{account}/stream-faults      disarm every stream fault, resume stalled streams
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
from emulator.state.streams import STREAM_FAULT_KINDS, AccountChange, PositionChange, StreamFault

__all__ = [
    "CAUSES",
    "CLOSE_CAUSES",
    "ENDPOINT_GROUPS",
    "FAULT_KINDS",
    "PROTECTIVE_TYPES",
    "SIDES",
    "STREAM_FAULT_KINDS",
    "VENUES",
    "AccountChange",
    "EmulatedAccount",
    "EmulatedOrder",
    "ExchangeEmulator",
    "Fault",
    "Fill",
    "MarketSpec",
    "Position",
    "PositionChange",
    "ProtectiveOrder",
    "RecordedRequest",
    "StreamFault",
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
        prog="python -m emulator.exchange",
        description="Loopback Binance USDⓈ-M / Bybit v5 REST and private-stream emulator.",
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
