"""The soak's `python main.py run` replicas: started as a service manager would, killed with ``kill -9`` and
started again a little later (as systemd's ``Restart=`` does), their resident memory sampled every second.

Each replica writes what it prints to a log file of its own (one per slot, every incarnation appended), so a
soak that finds something can be read afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from bench.common import ROOT

READY = "reconbot running"
MIB = 2**20


@dataclass
class Replica:
    slot: int
    config: Path
    log: Path
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time.time(), RSS bytes), every incarnation
    ready: bool = False  # the current incarnation said it runs (start-up is not sampled)
    failures: list[str] = field(default_factory=list)  # starts that never said it runs
    _drain: asyncio.Task[None] | None = None
    _starting: asyncio.Task[float] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout_s: float = 90.0) -> float:
        """Start and wait until it says it runs; returns that moment (wall clock). One that does not is killed,
        and the failure kept."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", "run", "--config", str(self.config), cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self.process = process
        self.starts += 1
        self.ready = False
        out = self.log.open("a", encoding="utf-8")
        out.write(f"--- start {self.starts} at {time.strftime('%H:%M:%S')} (pid {process.pid})\n")
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = (await process.stdout.readline()).decode(errors="replace")
                    if not line:
                        raise RuntimeError(f"replica {self.slot} ended at start-up; see {self.log}")
                    out.write(line)
                    if READY in line:
                        break
        except BaseException as exc:
            self.failures.append(f"start {self.starts}: {type(exc).__name__} {exc}".strip())
            if process.returncode is None:
                process.kill()
            await process.wait()
            out.close()
            raise
        self._drain = asyncio.create_task(self._copy(process, out))
        self.ready = True
        return time.time()

    @staticmethod
    async def _copy(process: asyncio.subprocess.Process, out: IO[str]) -> None:
        """Keep reading what the replica prints, so a full pipe never blocks it."""
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                out.write(line.decode(errors="replace"))
        finally:
            out.close()

    async def restart(self) -> float:
        """Start again, as the service manager would after a crash; a start under way is joined, and carries on
        when whoever waits for it is cancelled (a soak that stops mid-restart still gets its replica back)."""
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self.start())
        return await asyncio.shield(self._starting)

    async def ensure_running(self) -> None:
        """Running, or a start tried and failed (kept in ``failures``)."""
        with contextlib.suppress(RuntimeError, TimeoutError):
            if self._starting is not None and not self._starting.done():
                await self._starting
            if not self.running:
                await self.restart()

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush, no lock released but by PostgreSQL noticing the dead sessions."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.kills += 1

    async def wait(self) -> None:
        if self.process is not None:
            await self.process.wait()
        if self._drain is not None:
            await self._drain

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, as ``systemctl stop``; ``kill -9`` if it does not end within ``timeout_s``. A start under way
        is given up."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), timeout_s)
            if self.process.returncode is None:
                self.process.kill()
        await self.wait()
        return None if self.process is None else self.process.returncode

    def sample(self) -> None:
        if self.running and self.ready:
            assert self.process is not None
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.time(), psutil.Process(self.process.pid).memory_info().rss))

    def memory(self) -> dict[str, float | int]:
        """Peak resident memory over every incarnation, and the first and last samples (growth shows there)."""
        rss = [value for _, value in self.samples] or [0]
        return {
            "slot": self.slot,
            "starts": self.starts,
            "kills": self.kills,
            "peak_rss_mib": max(rss) / MIB,
            "first_rss_mib": rss[0] / MIB,
            "last_rss_mib": rss[-1] / MIB,
        }


class Replicas:
    """The replicas of one soak, sharing one database."""

    def __init__(self, configs: Sequence[Path], logs: Sequence[Path], token: str) -> None:
        env = {**os.environ, "RECONBOT_TELEGRAM__TOKEN": token}
        self.all = [Replica(i, c, log, env) for i, (c, log) in enumerate(zip(configs, logs, strict=True))]

    async def start(self) -> None:
        await asyncio.gather(*(r.start() for r in self.all))

    def running(self) -> list[Replica]:
        return [r for r in self.all if r.running]

    async def sample(self, every_s: float = 1.0) -> None:
        """Sample every replica's resident memory until cancelled."""
        while True:
            for replica in self.all:
                replica.sample()
            await asyncio.sleep(every_s)

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.all))

    def memory(self) -> list[dict[str, float | int]]:
        return [r.memory() for r in self.all]
