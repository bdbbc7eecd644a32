"""The delivery loop shared by every outbox channel.

One deliverer per channel and database (a PostgreSQL advisory lock), each destination's items strictly in
order, destinations side by side. An item is marked sent only after the channel accepted it; a temporary
failure is retried with backoff, a permanent one (an address that can never work) is kept as dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable

from services.findings import FindingsStore
from services.outbox import Outbox, OutboxItem

log = logging.getLogger(__name__)

IDLE_WAIT_S = 30.0


class PermanentDeliveryError(Exception):
    """The destination can never accept this item; retrying would only block the items behind it."""


class Deliverer:
    """Subclasses name their ``channel`` and implement ``deliver``; raising PermanentDeliveryError gives up."""

    channel: str

    def __init__(self, findings: FindingsStore, outbox: Outbox):
        self.findings = findings
        self.outbox = outbox
        self._wake = asyncio.Event()
        self._draining = asyncio.Lock()
        self._stopping = False
        self.sent = 0
        self.failed = 0
        self.on_result: Callable[[str, bool], None] | None = None

    async def deliver(self, item: OutboxItem) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def _lock_key(self) -> int:
        return zlib.crc32(f"reconbot-outbox-{self.channel}".encode())

    async def run(self) -> None:
        """Deliver until stopped; waits while another process holds this channel's lock."""
        async with self.outbox.pool.acquire() as lock_conn:
            while not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                log.warning("another reconbot delivers %s alerts from this database; waiting", self.channel)
                if await self._sleep(IDLE_WAIT_S):
                    return
            try:
                while not self._stopping:
                    try:
                        await self.drain()
                        due = await self.outbox.next_due_in_s(self.channel)
                    except Exception:
                        log.exception("%s delivery loop failed; retrying", self.channel)
                        due = 5.0
                    if await self._sleep(IDLE_WAIT_S if due is None else min(IDLE_WAIT_S, max(due, 0.05))):
                        return
            finally:
                with contextlib.suppress(Exception):
                    await lock_conn.execute("SELECT pg_advisory_unlock($1)", self._lock_key)

    async def _sleep(self, seconds: float) -> bool:
        """Wait for a wake-up or the timeout; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
        return self._stopping

    async def drain(self) -> int:
        """Deliver everything that is due, each destination in order; returns how many items were sent.

        Drains never overlap (the loop and a final flush at stop), so nothing is sent twice.
        """
        delivered = 0
        async with self._draining:
            while True:
                heads = await self.outbox.heads(self.channel)
                if not heads:
                    return delivered
                results = await asyncio.gather(*(self._deliver_one(item) for item in heads))
                delivered += sum(results)
                if not any(results):
                    return delivered

    async def _deliver_one(self, item: OutboxItem) -> bool:
        delivered = await self._attempt(item)
        if self.on_result is not None:
            self.on_result(self.channel, delivered)
        return delivered

    async def _attempt(self, item: OutboxItem) -> bool:
        try:
            await self.deliver(item)
        except PermanentDeliveryError as exc:
            await self.outbox.mark_dead(item.id, str(exc))
            self.failed += 1
            log.error("%s: giving up on %s #%s for %s: %s", self.channel, item.kind, item.id, item.destination, exc)
            return False
        except Exception as exc:
            delay = await self.outbox.mark_failed(item.id, f"{type(exc).__name__}: {exc}")
            self.failed += 1
            log.warning(
                "%s: %s #%s for %s failed (%s); retry in %ss",
                self.channel,
                item.kind,
                item.id,
                item.destination,
                exc,
                delay,
            )
            return False
        await self.outbox.mark_sent(item.id)
        self.sent += 1
        return True
