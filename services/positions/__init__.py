"""The trading bot's positions, wherever they live: reconbot's PostgreSQL database, another PostgreSQL
database (``positions.url: postgresql://…``) or a SQLite file (``positions.url: sqlite:///…``)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from services.database import TRANSIENT_ERRORS, DatabaseError, DatabaseUnreachable, first_line
from services.positions.postgres import PostgresPositions
from services.positions.rows import PositionRow
from services.positions.sqlite import SqlitePositions
from services.positions.store import Change, Column, ColumnMap, PositionsStore, ReadOnlyStore
from services.settings import Settings

# The PostgreSQL store by the name the rest of reconbot has always used.
PositionsRepository = PostgresPositions


async def open_store(settings: Settings, pool: asyncpg.Pool) -> PositionsStore:
    """The store for the configured source; ``pool`` is reconbot's own database."""
    positions = settings.positions
    if positions.sqlite_path is not None:
        path = Path(positions.sqlite_path)
        return SqlitePositions(positions, path if path.is_absolute() else settings.config_dir / path)
    if positions.url is not None:
        try:
            other = await asyncpg.create_pool(positions.url.get_secret_value(), min_size=1, max_size=3)
        except TRANSIENT_ERRORS as exc:
            raise DatabaseUnreachable(f"positions.url: cannot connect: {type(exc).__name__}") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise DatabaseError(f"positions.url: cannot connect: {type(exc).__name__}: {first_line(exc)}") from None
        return PostgresPositions(other, positions, own_pool=True)
    return PostgresPositions(pool, positions)


__all__ = [
    "Change",
    "Column",
    "ColumnMap",
    "PositionRow",
    "PositionsRepository",
    "PositionsStore",
    "PostgresPositions",
    "ReadOnlyStore",
    "SqlitePositions",
    "open_store",
]
