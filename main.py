"""reconbot's command line. Exit codes follow the monitoring-plugin convention so a check doubles as a probe:
0 nothing found, 1 ghosts or size mismatches, 2 an orphan, 3 an account unchecked or the command could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import asyncpg

from app.commands import cmd_check, cmd_check_config, cmd_closeghost, cmd_migrate, error
from app.run import run_service
from services.database import DatabaseError, first_line
from services.model import RECONCILIATION, SCAN_KINDS
from services.redaction import install_redaction
from services.report import EXIT_UNKNOWN
from services.settings import ConfigError, load_settings
from services.text_safety import install_log_escaping

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
    install_log_escaping()  # a DB or venue string cannot forge a line of the journal
    root = logging.getLogger()
    if not any(getattr(h, "_reconbot", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._reconbot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


async def cmd_demo(args: argparse.Namespace) -> int:
    """The demo lives outside the product: loaded only when asked for."""
    from demo.runner import DEFAULT_SCENARIO, ScenarioError, run_demo

    scenario = Path(args.scenario) if args.scenario else DEFAULT_SCENARIO
    try:
        return await run_demo(
            scenario, data_dir=Path(args.data_dir), rounds=args.rounds, say=lambda text: print(text, flush=True)
        )
    except (ScenarioError, ValueError) as exc:
        return error(str(exc))
    except DatabaseError as exc:
        return error(str(exc))


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
            return await run_service(settings, say=lambda text: print(text, flush=True))
        if args.command == "scan":
            return await cmd_check(settings, args, SCAN_KINDS)
        if args.command == "reconcile":
            return await cmd_check(settings, args, RECONCILIATION)
        if args.command == "closeghost":
            return await cmd_closeghost(settings, args)
        if args.command == "migrate":
            return await cmd_migrate(settings)
    except DatabaseError as exc:
        return error(str(exc), settings.secrets())
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        return error(f"database error: {type(exc).__name__}: {first_line(exc)}", settings.secrets())
    return error(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(run_cli(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
