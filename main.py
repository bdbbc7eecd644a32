"""reconbot's command line. Exit codes follow the monitoring-plugin convention so a check doubles as a probe:
0 nothing found, 1 ghosts or size mismatches, 2 an orphan, 3 an account unchecked or the command could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from services import migrations
from services.database import Database, DatabaseError
from services.fixes import FixOutcome
from services.model import ORPHANS_ONLY, RECONCILIATION, FindingKind
from services.positions import PositionsRepository
from services.redaction import install_redaction
from services.report import EXIT_DRIFT, EXIT_OK, EXIT_UNKNOWN, exit_code, render_json, render_text
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


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_UNKNOWN


async def _confirm(question: str) -> bool:
    """Ask on the terminal; end of input counts as no."""
    try:
        answer = await asyncio.to_thread(input, f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _print_outcomes(outcomes: Sequence[FixOutcome]) -> None:
    for outcome in outcomes:
        print(("fixed: " if outcome.done else "not changed: ") + outcome.message)


async def cmd_check(settings: Settings, args: argparse.Namespace, kinds: frozenset[FindingKind]) -> int:
    fixing = bool(getattr(args, "fix", False))
    async with Runtime(settings, require_schema=fixing) as runtime:
        try:
            result = await runtime.monitor.check(kinds, args.account)
        except KeyError as exc:
            return _error(str(exc.args[0]))
        title = "scan" if kinds == ORPHANS_ONLY else "reconcile"
        print(render_json(result) if args.json else render_text(result, title))
        ghosts = result.of_kind(FindingKind.GHOST)
        if fixing and ghosts:
            ids = [pid for finding in ghosts for pid in finding.db_position_ids]
            listing = ", ".join(f"#{pid}" for pid in ids)
            if not args.yes and not await _confirm(f"Mark {len(ids)} ghost position(s) {listing} as closed?"):
                print("Nothing changed.", file=sys.stderr)
            else:
                _print_outcomes(await runtime.fixes.close_ghosts(ids, f"cli:{getpass.getuser()}"))
        return exit_code(result)


async def cmd_closeghost(settings: Settings, args: argparse.Namespace) -> int:
    async with Runtime(settings) as runtime:
        row = await runtime.repository.get(args.position_id)
        if row is None:
            print(f"not changed: position #{args.position_id} does not exist", file=sys.stderr)
            return EXIT_DRIFT
        side = row.side.upper() if row.side else "?"
        question = f"Mark position #{row.id} {row.symbol} {side} {row.quantity} as closed?"
        if not args.yes and not await _confirm(question):
            print("Nothing changed.", file=sys.stderr)
            return EXIT_DRIFT
        outcome = await runtime.fixes.close_ghost(args.position_id, f"cli:{getpass.getuser()}")
        _print_outcomes([outcome])
        return EXIT_OK if outcome.done else EXIT_DRIFT


async def cmd_migrate(settings: Settings) -> int:
    database = Database(settings)
    await database.start()
    try:
        async with database.pool.acquire() as conn:
            report = await migrations.migrate(conn, settings.positions)
        await PositionsRepository(database.pool, settings.positions).inspect()
        for migration in report.applied:
            print(f"applied migration {migration.version}: {migration.description}")
        if report.created_positions_table:
            print(f"created positions table {settings.positions.table}")
        print(f"database ready ({database.description}), schema version {migrations.LATEST_VERSION}")
    finally:
        await database.close()
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
    configure_logging(args.verbose)
    if args.command == "demo":
        return await cmd_demo(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return EXIT_UNKNOWN
    install_redaction(settings.secrets())
    if args.command == "check-config":
        print(f"config OK: {len(settings.accounts)} account(s): {', '.join(a.name for a in settings.accounts)}")
        return EXIT_OK
    try:
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
        return _error(str(exc))
    return _error(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(run_cli(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
