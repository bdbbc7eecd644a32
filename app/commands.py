"""The CLI's commands: one check, one fix, migrations, the config check and the demo. Each returns the exit
code; human lines go to stdout (stderr when stdout carries JSON), failures are one line with exit code 3."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence

from services import migrations
from services.database import Database, DatabaseError, TableMissing
from services.fixes import FixOutcome, ghost_plan
from services.model import SCAN_KINDS, FindingKind
from services.positions import open_store
from services.redaction import redact
from services.report import EXIT_DRIFT, EXIT_OK, EXIT_UNKNOWN, exit_code, fix_question, render_text, result_dict
from services.runtime import Runtime
from services.settings import Settings
from services.text_safety import escape_controls


def error(message: str, secrets: Sequence[str] = ()) -> int:
    print(f"error: {redact(escape_controls(message), secrets)}", file=sys.stderr)
    return EXIT_UNKNOWN


async def _confirm(question: str, *, to_stderr: bool = False) -> bool:
    """Ask on the terminal (on stderr when stdout carries JSON); end of input counts as no."""
    stream = sys.stderr if to_stderr else sys.stdout
    stream.write(f"{question} [y/N] ")
    stream.flush()
    try:
        answer = await asyncio.to_thread(sys.stdin.readline)
    except (EOFError, OSError):
        return False
    return answer.strip().lower() in ("y", "yes")


def _outcome_line(outcome: FixOutcome) -> str:
    return ("fixed: " if outcome.done else "not changed: ") + outcome.message


def _outcome_dict(outcome: FixOutcome) -> dict[str, object]:
    return {
        "position_id": outcome.position_ids[0] if len(outcome.position_ids) == 1 else list(outcome.position_ids),
        "action": str(outcome.action),
        "done": outcome.done,
        "status": str(outcome.status),
        "message": outcome.message,
    }


def _cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def cmd_check(settings: Settings, args: argparse.Namespace, kinds: frozenset[FindingKind]) -> int:
    """scan / reconcile: one report (text, or exactly one JSON document on stdout), then the optional fixes."""
    fixing = bool(getattr(args, "fix", False))
    human = sys.stderr if args.json else sys.stdout
    async with Runtime(settings, require_schema=fixing) as runtime:
        try:
            result = await runtime.monitor.check(kinds, args.account)
        except KeyError as exc:
            return error(str(exc.args[0]))
        title = "scan" if kinds == SCAN_KINDS else "reconcile"
        if not args.json:
            print(render_text(result, title))
        outcomes: list[FixOutcome] = []
        ghosts = result.of_kind(FindingKind.GHOST)
        if fixing and ghosts:
            ids = [pid for finding in ghosts for pid in finding.db_position_ids]
            listing = ", ".join(f"#{pid}" for pid in ids)
            question = f"Mark {len(ids)} ghost position(s) {listing} as closed?"
            # A read-only table refuses each fix with the trading bot's own remedy: nobody is asked first.
            asking = not args.yes and runtime.repository.writable
            if asking and not await _confirm(question, to_stderr=args.json):
                print("Nothing changed.", file=sys.stderr)
            else:
                for finding in ghosts:
                    outcome = await runtime.fixes.apply(ghost_plan(finding), _cli_actor())
                    outcomes.append(outcome)
                    print(_outcome_line(outcome), file=human)
        if args.json:
            document = result_dict(result)
            if fixing:
                document["fixes"] = [_outcome_dict(o) for o in outcomes]
            print(json.dumps(document, indent=2))
        return exit_code(result)


async def cmd_closeghost(settings: Settings, args: argparse.Namespace) -> int:
    async with Runtime(settings) as runtime:
        row = await runtime.repository.get(args.position_id)
        if row is None:
            print(f"not changed: position #{args.position_id} does not exist", file=sys.stderr)
            return EXIT_DRIFT
        plan = await runtime.fixes.plan_close_ghost(args.position_id, actor=_cli_actor())
        if isinstance(plan, FixOutcome):
            print(_outcome_line(plan))
            return EXIT_DRIFT
        if not args.yes and not await _confirm(fix_question(plan)):
            print("Nothing changed.", file=sys.stderr)
            return EXIT_DRIFT
        outcome = await runtime.fixes.apply(plan, _cli_actor())
        print(_outcome_line(outcome))
        return EXIT_OK if outcome.done else EXIT_DRIFT


async def cmd_migrate(settings: Settings) -> int:
    database = Database(settings)
    await database.start()
    try:
        async with database.pool.acquire() as conn:
            report = await migrations.migrate(conn, settings.positions)
        store = await open_store(settings, database.pool)
        try:
            await store.inspect()
            notes = store.notes()
        finally:
            await store.close()
        for migration in report.applied:
            print(f"applied migration {migration.version}: {migration.description}")
        if report.created_positions_table:
            print(f"created positions table {settings.positions.table}")
        print(f"database ready ({database.description}), schema version {migrations.LATEST_VERSION}")
        for note in notes:
            print(note)
    finally:
        await database.close()
    return EXIT_OK


async def cmd_check_config(settings: Settings) -> int:
    """The config is valid; with a configured database, reconbot connects to it and checks the positions mapping
    against the table (the embedded default is checked when reconbot starts it). A database that refuses (down,
    unknown host, wrong name or password) fails the check with one line: `run` could not work with it either."""
    print(f"config OK: {len(settings.accounts)} account(s): {', '.join(a.name for a in settings.accounts)}")
    if settings.database.url is None and settings.positions.url is None:
        return EXIT_OK
    try:
        async with Runtime(settings, require_schema=False) as runtime:
            for note in runtime.repository.notes():
                print(note)
            columns = ", ".join(f"{key}={c.name}" for key, c in runtime.repository.map.columns.items())
            print(f"positions: {settings.positions.table} mapped: {columns}")
    except TableMissing as exc:
        print(f"positions: {exc}")
    except DatabaseError as exc:
        return error(f"database: {exc}", settings.secrets())
    return EXIT_OK
