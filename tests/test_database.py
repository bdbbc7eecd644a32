"""The embedded default: reconbot starts PostgreSQL under data_dir, stops it, and finds its data again."""

from __future__ import annotations

import psutil
import pytest

from services.database import Database, DatabaseError
from services.settings import Settings


def settings_for(tmp_path, **database) -> Settings:
    return Settings(
        accounts=[{"name": "a", "exchange": "bybit", "api_key": "k", "secret": "s"}],
        database={"data_dir": str(tmp_path / "pgdata"), **database},
        config_dir=tmp_path,
    )


def postmaster_running(data_dir) -> bool:
    return any(
        p.info["name"] == "postgres" and p.info["cmdline"] and str(data_dir) in " ".join(p.info["cmdline"])
        for p in psutil.process_iter(attrs=["name", "cmdline"])
    )


async def test_embedded_server_keeps_its_data_across_restarts(tmp_path):
    settings = settings_for(tmp_path)
    database = Database(settings)
    await database.start()
    assert database.description == f"embedded PostgreSQL in {tmp_path / 'pgdata'}"
    async with database.pool.acquire() as conn:
        await conn.execute("CREATE TABLE kept (value text); INSERT INTO kept VALUES ('still here')")
    await database.close()
    assert not postmaster_running(tmp_path / "pgdata")

    again = Database(settings)
    await again.start()
    try:
        async with again.pool.acquire() as conn:
            assert await conn.fetchval("SELECT value FROM kept") == "still here"
    finally:
        await again.close()


async def test_unreachable_server_is_a_clear_error(tmp_path):
    settings = settings_for(tmp_path, url="postgresql://nobody:secret-pw@127.0.0.1:1/none")
    with pytest.raises(DatabaseError) as caught:
        await Database(settings).start()
    assert str(caught.value).startswith("cannot connect to PostgreSQL:")
    assert "secret-pw" not in str(caught.value)
