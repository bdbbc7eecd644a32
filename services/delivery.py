"""The delivery loop shared by every outbox channel.

One deliverer per channel and database: the replica holding the channel's lease (``services.leases``) delivers,
the others stand by and take over the moment its session ends. Each destination's items go strictly in order,
destinations side by side. An item is marked sent only after the channel accepted it; a temporary failure is
retried with backoff, a permanent one (an address that can never work) is kept as dead.

At rest the loop sleeps: it wakes when a row is queued (locally, or on any replica through LISTEN/NOTIFY on the
lease's connection), when a retry falls due, and every IDLE_WAIT_S in case a notification was missed.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from typing import Any

from services.findings import FindingsStore
from services.leases import SESSION_TIMEOUT_S, Lease, LeaseLost
from services.outbox import CLAIM_S, WAKEUPS, Outbox, OutboxItem

log = logging.getLogger(__name__)

IDLE_WAIT_S = 30.0
RETRY_S = 5.0  # after the loop itself failed (the database, not a send)
MIN_WAIT_S = 0.05
SEND_TIMEOUT_S = CLAIM_S - 5.0  # a send never outlives its claim, so no other deliverer can send it meanwhile


class PermanentDeliveryError(Exception):
    """The destination can never accept this item; retrying would only block the items behind it."""


class Deliverer:
    """Subclasses name their ``channel`` and implement ``deliver``; raising PermanentDeliveryError gives up."""

    channel: str

    def __init__(self, findings: FindingsStore, outbox: Outbox):
        self.findings = findings
        self.outbox = outbox
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._draining = asyncio.Lock()
        self._lease: Lease | None = None
        self.sent = 0
        self.failed = 0
        self.on_result: Callable[[str, bool], None] | None = None

    async def deliver(self, item: OutboxItem) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def lock_key(self) -> int:
        return zlib.crc32(f"reconbot-outbox-{self.channel}".encode())

    async def run(self) -> None:
        """Deliver while this process holds the channel's lease; stand by while another one does."""
        if self.outbox.connect is None:
            raise RuntimeError("the outbox needs a connect function for the delivery lease")
        lease = Lease(self.outbox.connect, f"outbox-{self.channel}", self.lock_key)

        def standby() -> None:
            log.warning("another reconbot delivers %s alerts from this database; waiting", self.channel)

        try:
            while await lease.acquire(self._stop, standby):
                try:
                    await self._hold(lease)
                finally:
                    await lease.release()
                if not self._stop.is_set():
                    log.warning("%s: delivery lease lost; standing by until it is held again", self.channel)
        finally:
            await lease.release()

    async def _hold(self, lease: Lease) -> None:
        """Deliver until stopped or until the lease is lost."""
        try:
            async with lease.session() as conn:
                await asyncio.wait_for(conn.add_listener(WAKEUPS, self._on_queued), SESSION_TIMEOUT_S)
        except LeaseLost:
            return
        self._lease = lease
        try:
            while not self._stop.is_set() and lease.held:
                try:
                    await self.drain()
                    due = await self.outbox.next_due_in_s(self.channel)
                except Exception:
                    if not lease.held:
                        return
                    log.exception("%s delivery loop failed; retrying", self.channel)
                    due = RETRY_S
                await self._sleep(IDLE_WAIT_S if due is None else min(IDLE_WAIT_S, max(due, MIN_WAIT_S)), lease)
        finally:
            self._lease = None

    def _on_queued(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == self.channel:
            self._wake.set()

    async def _sleep(self, seconds: float, lease: Lease) -> None:
        """Wait for a wake-up, the lease's loss or the timeout."""
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(lease.lost.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self._wake.clear()

    async def drain(self) -> int:
        """Deliver everything that is due, each destination in order; returns how many items were sent.

        Only the lease holder delivers, and drains never overlap (the loop and a final flush at stop)."""
        delivered = 0
        loop = asyncio.get_running_loop()
        async with self._draining:
            while (lease := self._lease) is not None and lease.held:
                deadline = loop.time() + SEND_TIMEOUT_S  # taken before the claim: the claim lasts CLAIM_S from then
                fence = lease.fence
                try:
                    async with lease.session() as conn:
                        heads = await self.outbox.claim_due(conn, self.channel, fence)
                except LeaseLost:
                    return delivered
                if not heads:
                    return delivered
                sends = (self._deliver_one(item, fence.generation, deadline) for item in heads)
                results = await asyncio.gather(*sends)
                delivered += sum(results)
                if not any(results):
                    return delivered
        return delivered

    async def _deliver_one(self, item: OutboxItem, generation: int, deadline: float) -> bool:
        try:
            delivered = await self._attempt(item, generation, deadline)
        except Exception:  # the database, after the attempt: the row stays claimed, in doubt until CLAIM_S
            log.exception("%s: what became of %s #%s could not be recorded", self.channel, item.kind, item.id)
            delivered = False
        if self.on_result is not None:
            self.on_result(self.channel, delivered)
        return delivered

    async def _attempt(self, item: OutboxItem, generation: int, deadline: float) -> bool:
        try:
            async with asyncio.timeout_at(deadline):
                await self.deliver(item)
        except PermanentDeliveryError as exc:
            await self.outbox.mark_dead(item.id, str(exc), generation)
            self.failed += 1
            log.error("%s: giving up on %s #%s for %s: %s", self.channel, item.kind, item.id, item.destination, exc)
            return False
        except Exception as exc:
            reason = f"no answer within {SEND_TIMEOUT_S:g}s" if isinstance(exc, TimeoutError) else str(exc)
            delay = await self.outbox.mark_failed(item.id, f"{type(exc).__name__}: {reason}", generation)
            self.failed += 1
            log.warning(
                "%s: %s #%s for %s failed (%s); retry in %ss",
                self.channel,
                item.kind,
                item.id,
                item.destination,
                reason,
                delay,
            )
            return False
        if not await self.outbox.mark_sent(item.id, generation):
            log.warning("%s: %s #%s was sent after another deliverer took it over", self.channel, item.kind, item.id)
        self.sent += 1
        return True
