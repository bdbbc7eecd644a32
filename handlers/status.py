"""/status, /positions and /findings: looking, which viewers may do."""

from __future__ import annotations

from decimal import Decimal

from aiogram import Router, html
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import texts
from bot.context import BotContext
from bot.keyboards import finding_keyboard
from bot.replies import answer_long
from bot.roles import Role
from services.kinds import count_text
from services.model import DbPosition, FindingKind, PositionKey
from services.report import decimal_text
from services.snapshot import AccountSnapshot

VIEW = {"role": Role.VIEWER}
PRE_BLOCK_LIMIT = 3800


async def status(message: Message, ctx: BotContext) -> None:
    checks = await ctx.runtime.findings.account_checks()
    live = await ctx.runtime.findings.live()
    lines = ["<b>reconbot status</b>", "Accounts:"]
    for account in ctx.settings.accounts:
        check = checks.get(account.name)
        name = html.quote(account.name)
        if check is None:
            lines.append(f"• {name} ({account.exchange}): not checked yet")
        elif check["ok"]:
            lines.append(f"✔️ {name}: ok at {texts.when(check['checked_at'])}, {check['positions']} open position(s)")
        else:
            lines.append(
                f"❓ {name}: <b>not checked</b> since {texts.when(check['failing_since'])} "
                f"({check['failures_in_row']} round(s)): {html.quote(check['error'] or '')}"
            )
    counts: dict[FindingKind, int] = {}
    quiet = 0
    for finding in live:
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
        quiet += finding.state != "open"
    summary = ", ".join(count_text(k, n, chat=True) for k, n in counts.items()) or "none"
    lines.append(f"Open findings: {summary}" + (f" ({quiet} snoozed or acknowledged)" if quiet else ""))
    runs = ctx.next_runs()
    if runs:
        lines.append("Next runs: " + ", ".join(f"{html.quote(job)} {texts.when(at)}" for job, at in runs.items()))
    else:
        lines.append("No scheduled runs in this process: checks run on /scan and /reconcile.")
    await answer_long(message, "\n".join(lines))


def _positions_rows(snapshot: AccountSnapshot) -> list[str]:
    exchange = {p.key: p for p in snapshot.exchange_positions}
    db: dict[PositionKey, list[DbPosition]] = {}
    for row in snapshot.db_positions:
        db.setdefault(row.key, []).append(row)
    rows = [f"{'MARKET':<16} {'SIDE':<5} {'EXCHANGE':>12} {'DB':>12}"]
    for key in sorted(exchange.keys() | db.keys()):
        ex = exchange.get(key)
        rows_db = db.get(key, [])
        ex_size = decimal_text(ex.quantity) if ex else "-"
        db_size = decimal_text(sum((r.quantity for r in rows_db), Decimal(0))) if rows_db else "-"
        mark = "" if ex and rows_db and ex_size == db_size else "  ≠"
        rows.append(f"{key.market:<16} {key.side.upper():<5} {ex_size:>12} {db_size:>12}{mark}")
    if len(rows) == 1:
        rows.append("(no positions on either side)")
    return rows


def _pre_blocks(rows: list[str]) -> list[str]:
    """Table rows as <pre> blocks small enough for one message each."""
    blocks: list[str] = []
    current: list[str] = []
    for row in rows:
        if current and sum(len(r) + 1 for r in current) + len(row) > PRE_BLOCK_LIMIT:
            blocks.append("<pre>" + html.quote("\n".join(current)) + "</pre>")
            current = [rows[0]]
        current.append(row)
    blocks.append("<pre>" + html.quote("\n".join(current)) + "</pre>")
    return blocks


async def positions(message: Message, command: CommandObject, ctx: BotContext) -> None:
    names = [a.name for a in ctx.settings.accounts]
    wanted = (command.args or "").split()
    if len(wanted) > 1 or (wanted and wanted[0] not in names):
        await message.answer("Usage: /positions [account]\nAccounts: " + ", ".join(html.quote(n) for n in names))
        return
    snapshots = await ctx.runtime.monitor.reader.read_shared(wanted or names)
    for name, snapshot in snapshots.items():
        title = f"<b>{html.quote(name)}</b> ({snapshot.account.exchange}), read {texts.when(snapshot.read_at)}"
        if not snapshot.checked:
            await message.answer(f"{title}\n❓ not checked: {html.quote(snapshot.error or '')}")
            continue
        for index, block in enumerate(_pre_blocks(_positions_rows(snapshot))):
            await message.answer(f"{title}\n{block}" if index == 0 else block)


async def findings(message: Message, ctx: BotContext) -> None:
    live = await ctx.runtime.findings.live()
    if not live:
        await message.answer("✅ No open findings.")
        return
    await message.answer(f"{len(live)} open finding(s):")
    for finding in live:
        keyboard = finding_keyboard(finding, exchange_orders=ctx.exchange_orders_allowed(finding.account))
        await answer_long(message, texts.finding_message(finding), keyboard)


def create_router() -> Router:
    """A fresh router per dispatcher (a router can belong to only one)."""
    router = Router(name="status")
    router.message(Command("status"), flags=VIEW)(status)
    router.message(Command("positions"), flags=VIEW)(positions)
    router.message(Command("findings"), flags=VIEW)(findings)
    return router
