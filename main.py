"""reconbot's command line. Exit codes follow the monitoring-plugin convention so a check doubles as a probe:
0 nothing found, 1 ghosts or size mismatches, 2 an orphan, 3 an account unchecked or the command could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import asyncpg

from services import migrations
from services.database import Database, DatabaseError, DatabaseUnreachable, TableMissing, first_line
from services.fixes import FixOutcome, ghost_plan
from services.model import ORPHANS_ONLY, RECONCILIATION, FindingKind
from services.positions import open_store
from services.redaction import install_redaction, redact
from services.report import EXIT_DRIFT, EXIT_OK, EXIT_UNKNOWN, exit_code, fix_question, render_text, result_dict
from services.runtime import Runtime
from services.settings import ConfigError, Settings, load_settings

log = logging.getLogger("reconbot")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """A usage error is 'could not run' (3), not argparse's 2, which a monitoring system reads as an orphan."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNKNOWN, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="config file (default: $RECONBOT_CONFIG or ./config.yaml)")
    common.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")

    parser = _Parser(
        prog="python main.py",
        description="Keep a trading bot's database honest about its futures positions.",
        epilog="Exit codes: 0 all clear, 1 ghosts or size mismatches, 2 an orphan, 3 unchecked or failed.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def checking(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.add_argument("--account", action="append", metavar="NAME", help="only this account (repeatable)")
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        return sub

    commands.add_parser("run", parents=[common], help="the bot and the scheduled checks, until SIGTERM or Ctrl-C")
    checking("scan", "find orphans: positions open on an exchange that the DB does not track")
    reconcile = checking("reconcile", "find ghosts (in the DB, not on the exchange) and size mismatches")
    reconcile.add_argument("--fix", action="store_true", help="mark confirmed ghosts closed (asks first)")
    reconcile.add_argument("--yes", action="store_true", help="with --fix: do not ask")

    closeghost = commands.add_parser(
        "closeghost", parents=[common], help="mark one ghost position closed after re-checking its exchange"
    )
    closeghost.add_argument("position_id", metavar="ID", help="the DB id of the position")
    closeghost.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    demo = commands.add_parser(
        "demo", parents=[common], help="run the real pipeline against simulated exchanges (nothing to configure)"
    )
    demo.add_argument("--scenario", metavar="FILE", help="another scenario (default: demo/scenario.yaml)")
    demo.add_argument("--data-dir", metavar="DIR", default="var/demo-pgdata", help="the demo's own database")
    demo.add_argument(
        "--rounds", type=_positive_int, metavar="N", help="stop after N checks (default: run until Ctrl-C)"
    )

    commands.add_parser("migrate", parents=[common], help="create reconbot's tables (and the positions table)")
    commands.add_parser("check-config", parents=[common], help="validate the config and print every problem")
    return parser


def configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_reconbot", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._reconbot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def _error(message: str, secrets: Sequence[str] = ()) -> int:
    print(f"error: {redact(message, secrets)}", file=sys.stderr)
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
            return _error(str(exc.args[0]))
        title = "scan" if kinds == ORPHANS_ONLY else "reconcile"
        if not args.json:
            print(render_text(result, title))
        outcomes: list[FixOutcome] = []
        ghosts = result.of_kind(FindingKind.GHOST)
        if fixing and ghosts:
            ids = [pid for finding in ghosts for pid in finding.db_position_ids]
            listing = ", ".join(f"#{pid}" for pid in ids)
            question = f"Mark {len(ids)} ghost position(s) {listing} as closed?"
            if not args.yes and not await _confirm(question, to_stderr=args.json):
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
    """The config is valid; with a configured database that answers, the positions mapping is checked against
    the table too (the embedded default is checked when reconbot starts it)."""
    print(f"config OK: {len(settings.accounts)} account(s): {', '.join(a.name for a in settings.accounts)}")
    if settings.database.url is None and settings.positions.url is None:
        return EXIT_OK
    try:
        async with Runtime(settings, require_schema=False) as runtime:
            for note in runtime.repository.notes():
                print(note)
            columns = ", ".join(f"{key}={c.name}" for key, c in runtime.repository.map.columns.items())
            print(f"positions: {settings.positions.table} mapped: {columns}")
    except DatabaseUnreachable as exc:
        print(f"database: not reachable now ({exc}); the positions mapping was not checked", file=sys.stderr)
    except TableMissing as exc:
        print(f"positions: {exc}")
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace) -> int:
    from demo.runner import DEFAULT_SCENARIO, ScenarioError, run_demo

    scenario = Path(args.scenario) if args.scenario else DEFAULT_SCENARIO
    try:
        return await run_demo(
            scenario, data_dir=Path(args.data_dir), rounds=args.rounds, say=lambda text: print(text, flush=True)
        )
    except (ScenarioError, ValueError) as exc:
        return _error(str(exc))
    except DatabaseError as exc:
        return _error(str(exc))


async def run_cli(argv: Sequence[str] | None = None) -> int:
    """Parse, load the config, run one command; returns the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose or args.command == "run")
    if args.command == "demo":
        return await cmd_demo(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return EXIT_UNKNOWN
    install_redaction(settings.secrets())
    try:
        if args.command == "check-config":
            return await cmd_check_config(settings)
        if args.command == "run":
            from bot.service import run_service

            return await run_service(settings, say=lambda text: print(text, flush=True))
        if args.command == "scan":
            return await cmd_check(settings, args, ORPHANS_ONLY)
        if args.command == "reconcile":
            return await cmd_check(settings, args, RECONCILIATION)
        if args.command == "closeghost":
            return await cmd_closeghost(settings, args)
        if args.command == "migrate":
            return await cmd_migrate(settings)
    except DatabaseError as exc:
        return _error(str(exc), settings.secrets())
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        return _error(f"database error: {type(exc).__name__}: {first_line(exc)}", settings.secrets())
    return _error(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(run_cli(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
