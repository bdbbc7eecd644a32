"""``python main.py run``: start the process, wait through what is transient, stop gracefully on a signal.

A database that does not answer at boot is waited for with backoff while /healthz says so; a bad config or
rejected keys end the process with 3, which the shipped unit does not restart. Everything printed passes the
same secret filter as the log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

from app.service import new_ops_server, start_service
from app.startup import Say, StartupError
from services.ops import Metrics
from services.redaction import redact
from services.settings import Settings
from services.text_safety import escape_controls

STARTUP_RETRY_MIN_S = 1.0
STARTUP_RETRY_MAX_S = 60.0


def redacting(say: Say, secrets: tuple[str, ...]) -> Say:
    """A printer whose every line is masked like the log lines, and one line whatever a value in it held."""

    def filtered(text: str) -> None:
        say(redact(escape_controls(text), secrets))

    return filtered


async def run_service(settings: Settings, *, say: Say = print, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); 0 after a clean stop, 3 when start-up failed for good."""
    say = redacting(say, settings.secrets())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()
    ops = None
    if settings.ops.address is not None:
        ops = new_ops_server(settings, metrics)
        try:
            await ops.start(*settings.ops.address)
        except OSError as exc:
            say(f"problem: ops.listen {settings.ops.listen}: {exc.strerror or exc}")
            return 3
        say(f"ops: GET /healthz and /metrics on {settings.ops.address[0]}:{ops.port}")
    delay = STARTUP_RETRY_MIN_S
    while True:
        try:
            service = await start_service(settings, say=say, ops=ops, metrics=metrics)
            break
        except StartupError as exc:
            if not exc.transient:
                for problem in exc.problems:
                    say(f"problem: {problem}")
                if ops is not None:
                    await ops.stop()
                return 3
            if ops is not None:
                ops.waiting_for = f"waiting for database: {exc.problems[0].removeprefix('database: ')}"
            say(f"waiting: {exc.problems[0]}; trying again in {delay:g}s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            if ops is not None:
                await ops.stop()
            say("stopped before start-up finished")
            return 0
        delay = min(STARTUP_RETRY_MAX_S, delay * 2)
    # What start-up built lives as long as the process: out of the collector's way, a full collection during a
    # large check walks only what the check allocated.
    gc.collect()
    gc.freeze()
    await stop.wait()
    say("stopping: finishing the running check and any confirmed fix, and flushing alerts …")
    await service.stop()
    say("stopped")
    return 0
