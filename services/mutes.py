"""Muted chats: an operator's ``/mute 1h`` keeps new alerts, digests, reminders and notices out of one chat for
a while. Findings are still recorded, listed by /findings and edited where they were already shown."""

from __future__ import annotations

from datetime import datetime

import asyncpg


class ChatMutes:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def mute(self, chat_id: int, until: datetime, by: str) -> None:
        await self.pool.execute(
            "INSERT INTO reconbot.chat_mutes (chat_id, until, muted_by) VALUES ($1, $2, $3) "
            "ON CONFLICT (chat_id) DO UPDATE SET until = EXCLUDED.until, muted_by = EXCLUDED.muted_by",
            chat_id,
            until,
            by,
        )

    async def unmute(self, chat_id: int) -> bool:
        """True when the chat was muted."""
        return (await self.pool.execute("DELETE FROM reconbot.chat_mutes WHERE chat_id = $1", chat_id)) != "DELETE 0"

    async def muted_until(self, chat_id: int) -> datetime | None:
        """When the chat's mute ends, if it is muted now."""
        return await self.pool.fetchval(
            "SELECT until FROM reconbot.chat_mutes WHERE chat_id = $1 AND until > now()", chat_id
        )
