"""A findings table on the chat: what a view holds now (the store's live findings, or a digest's), as one page
with its buttons. Sent once as the answer, then edited in place by its own Prev / Refresh / Next."""

from __future__ import annotations

from datetime import UTC, datetime

from bot import answers
from bot.callbacks import FindingsTable, TableView
from bot.context import BotContext
from bot.findings_table import (
    CheckFacts,
    TablePage,
    check_heading,
    digest_heading,
    findings_heading,
    page_count,
    table_page,
)

CHECK_TITLES = {TableView.SCAN: answers.SCAN_TITLE, TableView.RECONCILE: answers.RECONCILE_TITLE}
COMMANDS = {
    TableView.FINDINGS: "/findings",
    TableView.SCAN: "/scan",
    TableView.RECONCILE: "/reconcile",
    TableView.DIGEST: "/findings",
}


def table_for(view: TableView, facts: CheckFacts | None = None, digest_id: int = 0) -> FindingsTable:
    """The first page of a view; a check's facts travel with its buttons."""
    if facts is None:
        return FindingsTable(view=view, page=0, digest=digest_id)
    return FindingsTable(
        view=view,
        page=0,
        at=int(facts.at.timestamp()),
        found=facts.found,
        pending=facts.pending,
        new_from=facts.new_from,
    )


async def _facts(ctx: BotContext, table: FindingsTable) -> CheckFacts:
    """A check's facts for a page turn: those its buttons carry, and the accounts not readable now."""
    checks = await ctx.runtime.findings.account_checks()
    names = [a.name for a in ctx.settings.accounts]
    unchecked = tuple(
        (name, checks[name]["error"] or "") for name in names if name in checks and not checks[name]["ok"]
    )
    return CheckFacts(
        title=CHECK_TITLES[table.view],
        at=datetime.fromtimestamp(table.at, UTC),
        accounts=len(names),
        found=table.found,
        pending=table.pending,
        unchecked=unchecked,
        new_from=table.new_from,
    )


async def render(ctx: BotContext, table: FindingsTable, facts: CheckFacts | None = None) -> TablePage | str:
    """The page this table shows now, or why it cannot (the answer to the button that asked)."""
    now = ctx.runtime.monitor.now()
    if table.view is TableView.DIGEST:
        listed = await ctx.runtime.findings.digest(table.digest)
        if not listed:
            return answers.DIGEST_GONE
        findings = [f for f in listed if f.live]
        heading = digest_heading(findings, len(listed))
    else:
        findings = await ctx.runtime.findings.live()
        if table.view is TableView.FINDINGS:
            heading = findings_heading(findings)
        else:
            heading = check_heading(facts or await _facts(ctx, table), findings)
    page = table_page(heading, findings, table.page, now, table.new_from)
    if page is None:
        return answers.no_such_page(table.page, page_count(len(findings)), COMMANDS[table.view])
    return page
