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

MIGRATIONS += (
    Migration(
        2,
        "findings, account checks, confirmations, outbox and alert messages",
        """
        CREATE TABLE reconbot.findings (
            id            bigserial PRIMARY KEY,
            fingerprint   text NOT NULL,
            kind          text NOT NULL CHECK (kind IN ('orphan', 'ghost', 'quantity_mismatch')),
            account       text NOT NULL,
            exchange      text NOT NULL,
            market        text NOT NULL,
            side          text NOT NULL,
            state         text NOT NULL CHECK (state IN ('open', 'snoozed', 'acknowledged', 'resolved', 'fixed')),
            details       jsonb NOT NULL,
            first_seen    timestamptz NOT NULL DEFAULT now(),
            last_seen     timestamptz NOT NULL DEFAULT now(),
            snoozed_until timestamptz,
            reminded_at   timestamptz,
            closed_at     timestamptz,
            closed_by     text,
            resolution    text
        );
        -- one live finding per fingerprint: the same drift seen again is the same finding
        CREATE UNIQUE INDEX findings_live ON reconbot.findings (fingerprint)
            WHERE state IN ('open', 'snoozed', 'acknowledged');
        CREATE INDEX findings_account ON reconbot.findings (account, state);

        CREATE TABLE reconbot.account_checks (
            account         text PRIMARY KEY,
            exchange        text NOT NULL,
            checked_at      timestamptz NOT NULL,
            ok              boolean NOT NULL,
            error           text,
            positions       integer NOT NULL DEFAULT 0,
            failures_in_row integer NOT NULL DEFAULT 0,
            failing_since   timestamptz,
            last_ok_at      timestamptz,
            alerted_at      timestamptz
        );

        CREATE TABLE reconbot.confirmations (
            id          bigserial PRIMARY KEY,
            action      text NOT NULL,
            target      text NOT NULL,
            finding_id  bigint REFERENCES reconbot.findings (id),
            question    text NOT NULL,
            user_id     bigint NOT NULL,
            chat_id     bigint NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL,
            used_at     timestamptz,
            outcome     text
        );

        CREATE TABLE reconbot.outbox (
            id              bigserial PRIMARY KEY,
            channel         text NOT NULL,
            destination     text NOT NULL,
            kind            text NOT NULL,
            finding_id      bigint REFERENCES reconbot.findings (id),
            body            jsonb NOT NULL DEFAULT '{}',
            created_at      timestamptz NOT NULL DEFAULT now(),
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_error      text,
            sent_at         timestamptz,
            dead_at         timestamptz
        );
        CREATE INDEX outbox_pending ON reconbot.outbox (channel, destination, id)
            WHERE sent_at IS NULL AND dead_at IS NULL;

        CREATE TABLE reconbot.alert_messages (
            chat_id     bigint NOT NULL,
            message_id  bigint NOT NULL,
            finding_id  bigint NOT NULL REFERENCES reconbot.findings (id),
            sent_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (chat_id, message_id)
        );
        CREATE INDEX alert_messages_finding ON reconbot.alert_messages (finding_id);
        """,
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "confirmations carry the values shown; outcomes unknown and interrupted; unknown-symbol and protection kinds",
        """
        ALTER TABLE reconbot.audit_log DROP CONSTRAINT audit_log_outcome_check;
        ALTER TABLE reconbot.audit_log ADD CONSTRAINT audit_log_outcome_check
            CHECK (outcome IN ('done', 'refused', 'expired', 'unknown', 'interrupted'));
        ALTER TABLE reconbot.audit_log ADD COLUMN confirmation_id bigint, ADD COLUMN settled_at timestamptz;
        CREATE INDEX audit_log_confirmation ON reconbot.audit_log (confirmation_id)
            WHERE confirmation_id IS NOT NULL;
        ALTER TABLE reconbot.confirmations ADD COLUMN payload jsonb, ADD COLUMN actor text;
        ALTER TABLE reconbot.findings DROP CONSTRAINT findings_kind_check;
        ALTER TABLE reconbot.findings ADD CONSTRAINT findings_kind_check CHECK (kind IN
            ('orphan', 'ghost', 'quantity_mismatch', 'unknown_symbol', 'unprotected', 'stray_order'));
        """,
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "digests of many findings, muted chats",
        """
        CREATE TABLE reconbot.digests (
            id          bigserial PRIMARY KEY,
            finding_ids bigint[] NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE reconbot.chat_mutes (
            chat_id     bigint PRIMARY KEY,
            until       timestamptz NOT NULL,
            muted_by    text NOT NULL
        );
        """,
    ),
)

MIGRATIONS += (
    Migration(
        5,
        "confirmed fixes: their message, when they settled, and what a re-read found after an interruption",
        """
        ALTER TABLE reconbot.confirmations ADD COLUMN message_id bigint, ADD COLUMN settled_at timestamptz;
        UPDATE reconbot.confirmations c SET settled_at = c.used_at
            WHERE c.outcome = 'confirmed' AND EXISTS (
                SELECT 1 FROM reconbot.audit_log a WHERE a.confirmation_id = c.id AND a.outcome <> 'unknown');
        CREATE INDEX confirmations_unsettled ON reconbot.confirmations (id)
            WHERE outcome = 'confirmed' AND settled_at IS NULL;
        ALTER TABLE reconbot.audit_log ADD COLUMN found text CHECK (found IN ('done', 'not done'));
        """,
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "fenced roles: a generation per role, and the generation that claimed each outbox row",
        """
        CREATE TABLE reconbot.leases (
            role        text PRIMARY KEY,
            holder      text NOT NULL,
            generation  bigint NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE reconbot.outbox ADD COLUMN claim_generation bigint;
        """,
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "mutes that quiet instead of dropping: their scope and start, and what arrived meanwhile",
        """
        ALTER TABLE reconbot.chat_mutes
            ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT 'warning' CHECK (scope IN ('info', 'warning')),
            ADD COLUMN IF NOT EXISTS started_at timestamptz NOT NULL DEFAULT now();
        CREATE TABLE IF NOT EXISTS reconbot.mute_arrivals (
            chat_id     bigint NOT NULL,
            destination text NOT NULL,
            finding_id  bigint NOT NULL REFERENCES reconbot.findings (id),
            arrived_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (chat_id, destination, finding_id)
        );
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
    """Everything ``python main.py migrate`` does: reconbot's tables, then a positions table of reconbot's own
    if none exists. A trading bot's table (a preset, or one in another database) is never created or altered."""
    applied = await apply_migrations(conn)
    owned = positions.preset is None and positions.url is None
    created = await ensure_positions_table(conn, positions) if owned else False
    return MigrationReport(tuple(applied), created)
