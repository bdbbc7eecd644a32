"""reconbot's own tables (schema ``reconbot``) and the trading bot's positions table when it does not exist yet.

Migrations are numbered and applied in order under an advisory lock, so two processes starting at once
apply each one exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.settings import PositionsSettings, quote_identifier

SCHEMA = "reconbot"
_LOCK_KEY = 0x7265636F6E  # "recon"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "audit trail",
        """
        CREATE TABLE reconbot.audit_log (
            id          bigserial PRIMARY KEY,
            at          timestamptz NOT NULL DEFAULT now(),
            actor       text NOT NULL,
            action      text NOT NULL,
            target      text NOT NULL,
            outcome     text NOT NULL CHECK (outcome IN ('done', 'refused', 'expired')),
            reason      text,
            before      jsonb,
            after       jsonb
        );
        CREATE INDEX audit_log_target ON reconbot.audit_log (target, at);
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('reconbot.schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM reconbot.schema_migrations")


async def apply_migrations(conn: asyncpg.Connection) -> list[Migration]:
    """Bring reconbot's schema up to date; returns the migrations applied now."""
    applied: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS reconbot.schema_migrations (
                   version integer PRIMARY KEY,
                   description text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done_versions = {row["version"] for row in await conn.fetch("SELECT version FROM reconbot.schema_migrations")}
        for migration in MIGRATIONS:
            if migration.version in done_versions:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO reconbot.schema_migrations (version, description) VALUES ($1, $2)",
                migration.version,
                migration.description,
            )
            applied.append(migration)
    return applied


def positions_table_ddl(settings: PositionsSettings) -> list[str]:
    """DDL for a positions table in the configured names, for a trading bot that has none yet."""
    c = settings.columns
    v = settings.values
    q = quote_identifier
    table = settings.qualified_table
    columns = [
        f"{q(c.id)} bigserial PRIMARY KEY",
        f"{q(c.exchange)} text NOT NULL",
        f"{q(c.account)} text" if c.account else None,
        f"{q(c.symbol)} text NOT NULL",
        f"{q(c.side)} text NOT NULL",
        f"{q(c.quantity)} numeric NOT NULL CHECK ({q(c.quantity)} >= 0)",
        f"{q(c.entry_price)} numeric" if c.entry_price else None,
        f"{q(c.status)} text NOT NULL DEFAULT {_literal(v.active)}",
        f"{q(c.opened_at)} timestamptz NOT NULL DEFAULT now()" if c.opened_at else None,
        f"{q(c.closed_at)} timestamptz" if c.closed_at else None,
        f"{q(c.exit_reason)} text" if c.exit_reason else None,
        f"{q(c.updated_at)} timestamptz NOT NULL DEFAULT now()" if c.updated_at else None,
    ]
    statements = []
    if "." in settings.table:
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {q(settings.table.split('.')[0])}")
    statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(col for col in columns if col)})")
    index = quote_identifier(settings.table.split(".")[-1] + "_active_idx")
    statements.append(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({q(c.status)}, {q(c.exchange)})")
    return statements


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def ensure_positions_table(conn: asyncpg.Connection, settings: PositionsSettings) -> bool:
    """Create the positions table when absent; returns whether it was created."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", settings.qualified_table)
    if exists:
        return False
    async with conn.transaction():
        for statement in positions_table_ddl(settings):
            await conn.execute(statement)
    return True


@dataclass(frozen=True)
class MigrationReport:
    applied: tuple[Migration, ...]
    created_positions_table: bool


async def migrate(conn: asyncpg.Connection, positions: PositionsSettings) -> MigrationReport:
    """Everything ``python main.py migrate`` does: reconbot's tables, then the positions table if absent."""
    applied = await apply_migrations(conn)
    created = await ensure_positions_table(conn, positions)
    return MigrationReport(tuple(applied), created)
