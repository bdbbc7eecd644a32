"""Run the benchmarks and print their figures as tables; the same figures are written as JSON.

python -m bench                       # everything (about 25 minutes on 2 cores)
python -m bench --quick               # skip the largest check and the 100-account comparison
python -m bench --only detector       # one: check_cost, seed, detector, phone, footprint, chatter, ghost_cause,
                                      #      streams, scale, reconnects
python -m bench --phone-default 5     # also time 5 orphans under the default intervals (about 7 minutes)
python -m bench --compare bench/baseline.json   # show the change against an earlier run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    chatter,
    check_cost,
    detector,
    footprint,
    ghost_cause,
    reconnects,
    scale,
    seed_comparison,
    streams,
    time_to_phone,
)
from bench.common import ROOT, Databases

RESULTS = ROOT / "bench" / "results"
BENCHMARKS = (
    "check_cost",
    "seed",
    "detector",
    "phone",
    "footprint",
    "chatter",
    "ghost_cause",
    "streams",
    "scale",
    "reconnects",
)


def table(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a fixed-width table; columns are (key, header, format)."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([("-" if row.get(key) is None else format(row[key], fmt)) for key, _, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [title]
    for index, line in enumerate(cells):
        lines.append("  " + "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            lines.append("  " + "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def growth(rows: list[dict[str, Any]]) -> list[str]:
    """How check cost grows: per position (should be flat) and with accounts (bounded by the slowest)."""
    by_key = {(r["accounts"], r["positions_per_account"]): r for r in rows}
    notes = []
    for accounts in sorted({r["accounts"] for r in rows}):
        small, large = by_key.get((accounts, 100)), by_key.get((accounts, 1000))
        if small and large:
            notes.append(
                f"  {accounts:>3} accounts: 10× the positions costs {large['wall_s'] / small['wall_s']:.1f}× the wall "
                f"time and {large['cpu_s'] / max(small['cpu_s'], 1e-9):.1f}× the CPU"
            )
    for positions in sorted({r["positions_per_account"] for r in rows}):
        one, hundred = by_key.get((1, positions)), by_key.get((100, positions))
        if one and hundred:
            notes.append(
                f"  {positions:>4} positions: 100× the accounts costs {hundred['wall_s'] / one['wall_s']:.1f}× the "
                f"wall time (sequential reads would cost about 100×)"
            )
    return notes


def report(results: dict[str, Any]) -> str:
    parts = [f"reconbot benchmarks — {results['when']} — {results['machine']}"]
    if "check_cost" in results:
        parts.append(
            table(
                "\n1. One full check (steady state, no drift)",
                results["check_cost"],
                [
                    ("accounts", "accounts", "d"),
                    ("positions_per_account", "positions/acct", "d"),
                    ("wall_s", "wall s", ".3f"),
                    ("cpu_s", "CPU s", ".3f"),
                    ("peak_mib", "peak MiB", ".1f"),
                    ("requests", "requests", ".0f"),
                    ("positions_requests_per_category", "pos. req/category", ".2f"),
                    ("order_requests", "order reads", ".0f"),
                    ("binance_weight_per_account", "Binance weight/acct", ".0f"),
                    ("binance_order_weight_per_account", "of it orders", ".0f"),
                ],
            )
        )
        parts += growth(results["check_cost"])
    if "seed" in results:
        parts.append(
            table(
                "\n2. Against the seed's design (two loops, exchanges read in turn)",
                results["seed"],
                [
                    ("accounts", "accounts", "d"),
                    ("seed_check_wall_s", "seed check s", ".3f"),
                    ("reconbot_check_wall_s", "reconbot check s", ".3f"),
                    ("check_wall_ratio", "ratio", ".2f"),
                    ("seed_requests_per_hour", "seed req/h", ".0f"),
                    ("reconbot_requests_per_hour", "reconbot req/h", ".0f"),
                    ("requests_per_hour_ratio", "ratio", ".2f"),
                ],
            )
        )
    if "detector" in results:
        d = results["detector"]
        parts.append(
            f"\n3. Detector: {d['db_rows']} DB rows × {d['exchange_positions']} exchange positions, "
            f"{sum(d['findings'].values())} findings: median {d['median_ms']:.1f} ms, worst {d['worst_ms']:.1f} ms"
        )
    if "phone" in results:
        parts.append(
            table(
                "\n4. Time to phone (new orphan → Bot API)",
                results["phone"],
                [
                    ("intervals", "intervals", "s"),
                    ("orphan_interval_s", "scan every s", "g"),
                    ("grace_s", "grace s", "g"),
                    ("samples", "samples", "d"),
                    ("median_s", "median s", ".2f"),
                    ("worst_s", "worst s", ".2f"),
                    ("expected_median_s", "expected median s", ".1f"),
                    ("expected_worst_s", "expected worst s", ".1f"),
                ],
            )
        )
    if "footprint" in results:
        f = results["footprint"]
        parts.append(
            f"\n5. Idle `run`, {f['accounts']} accounts: {f['rss_mib_median']:.0f} MiB resident "
            f"(max {f['rss_mib_max']:.0f}), {f['cpu_s_per_minute']:.2f} CPU s and "
            f"{f['db_transactions_per_minute']:.0f} database transactions per minute"
        )
        parts.append("  resident memory of a fresh interpreter after importing only:")
        parts += [f"    {name:<28} {mib:7.1f} MiB" for name, mib in f["import_rss_mib"].items()]
    if "chatter" in results:
        parts.append(
            table(
                "\n6. An orphan alert while one chat floods the bot with commands (alert filed → Bot API)",
                results["chatter"],
                [
                    ("case", "case", "s"),
                    ("design", "pacing", "s"),
                    ("commands", "commands", "d"),
                    ("samples", "samples", "d"),
                    ("median_s", "median s", ".2f"),
                    ("worst_s", "worst s", ".2f"),
                ],
            )
        )
    if "ghost_cause" in results:
        parts.append(
            table(
                "\n7. Why a ghost vanished: one reconciliation of 2 accounts × 100 positions finding new ghosts",
                results["ghost_cause"],
                [
                    ("ghosts_per_account", "ghosts/acct", "d"),
                    ("explained", "explained", "d"),
                    ("history_requests_per_ghost", "history req/ghost", ".1f"),
                    ("binance_history_weight", "Binance history weight", "d"),
                    ("wall_s", "wall s", ".3f"),
                    ("wall_s_without_history", "without history s", ".3f"),
                ],
            )
        )
    if "streams" in results:
        parts += streams_report(results["streams"])
    if "scale" in results:
        parts += scale_report(results["scale"])
    if "reconnects" in results:
        parts.append(
            table(
                "\n10. Memory over forced stream reconnects (one Binance and one Bybit account, both sockets closed "
                "by the venue each round; after a full garbage collection)",
                results["reconnects"],
                [
                    ("reconnects", "reconnects", "d"),
                    ("rss_mib", "RSS MiB", ".1f"),
                    ("binance_clients", "Binance ccxt.pro clients", "d"),
                    ("bybit_clients", "Bybit ccxt.pro clients", "d"),
                    ("tasks", "tasks", "d"),
                    ("timers", "loop timers", "d"),
                ],
            )
        )
    return "\n".join(parts)


def streams_report(s: dict[str, Any]) -> list[str]:
    """Section 8: live streams on and off under the default intervals."""
    health = s["phone_health"]
    requests = s["requests"]
    scaled = requests[0]
    return [
        "\n8. Live private streams on vs off, default intervals (orphan scan 300 s, reconciliation 600 s, grace 60 s)",
        table(
            "\n8a. Time to phone: emulator's position change → Bot API receives the alert "
            "(streams on: measured, one account per sample; streams off: from the schedule, not measured)",
            s["phone"],
            [
                ("case", "case", "s"),
                ("venue", "venue", "s"),
                ("streams", "streams", "s"),
                ("figures", "figures", "s"),
                ("samples", "samples", "d"),
                ("missing", "no alert", "d"),
                ("median_s", "median s", ".2f"),
                ("worst_s", "worst s", ".2f"),
                ("design_s", "design floor s", ".2f"),
                ("target", "target s", "s"),
                ("met", "met", "s"),
            ],
        ),
        f"  streams on: {health['streams_up']}/{health['streams']} streams up after {health['settle_s']:.1f} s, "
        f"{health['reconnects']} reconnects, {health['triggered_checks']} triggered checks, "
        f"{health['scheduled_checks_meanwhile']} scheduled checks during the samples, "
        f"{health['alerts_of_another_kind']} first alerts of another kind than expected",
        "  ghost: the position liquidated; partial: half of it liquidated; orphan: a new position (isolated samples "
        "3 s apart, one account each). Bursts: the same change on every one of their accounts at the same moment "
        "(a market move). Design floor: one account alone, without the REST reads. Streams off: a ghost waits "
        "for the reconciliation, a partial close and an orphan for grace and then the reconciliation / orphan scan "
        "(median = grace + interval/2 + 2 s confirmation, worst = grace + interval + 3 s jitter + 2 s; one check "
        "reads every account at once, so a burst waits as long).",
        table(
            f"\n8b. Exchange REST requests per hour, {scaled['accounts']} idle accounts × "
            f"{scaled['positions_per_account']} positions, books matching (intervals ÷{scaled['scale']} in both "
            f"modes, jitter 0; {scaled['window_s']:g} s counted = {scaled['schedule_covered_s'] / 60:g} min of the "
            "default schedule, extrapolated to an hour)",
            requests,
            [
                ("mode", "mode", "s"),
                ("streams_up", "streams up", "d"),
                ("scheduled_checks", "sched. checks", "d"),
                ("triggered_checks", "trig. checks", "d"),
                ("window_requests", "req in window", "d"),
                ("window_listen_key_requests", "listenKey in window", "d"),
                ("polling_requests_per_hour", "polling req/h", ".0f"),
                ("keepalive_requests_per_hour", "keep-alive req/h*", ".0f"),
                ("requests_per_hour", "total req/h", ".0f"),
                ("startup_requests", "start-up req", "d"),
                ("startup_listen_key_requests", "of it listenKey", "d"),
                ("per_connect_requests", "per (re)connect req/acct", ".1f"),
            ],
        ),
        "  * Binance listenKey PUT every 30 min (reconbot's keep-alive period, from the code, not measured); "
        "start-up and per-(re)connect figures are measured once, not per hour",
        table(
            "\n8c. Idle `python main.py run` (default intervals, after a 20 s warm-up)",
            s["footprint"],
            [
                ("mode", "mode", "s"),
                ("accounts", "accounts", "d"),
                ("open_streams", "open streams", "d"),
                ("sample_s", "sampled s", "d"),
                ("rss_mib_median", "RSS MiB", ".1f"),
                ("rss_mib_max", "max MiB", ".1f"),
                ("cpu_s_per_minute", "CPU s/min", ".3f"),
                ("db_transactions_per_minute", "DB xacts/min", ".0f"),
            ],
        ),
    ]


def scale_report(s: dict[str, Any]) -> list[str]:
    """Section 9: thousands of accounts on one machine, and two replicas."""
    r = s["replicas"]
    return [
        table(
            "\n9. One full check at scale (budget lifted to measure the machine; half Binance, half Bybit)",
            s["checks"],
            [
                ("accounts", "accounts", "d"),
                ("positions_per_account", "positions/acct", "d"),
                ("wall_s", "wall s", ".2f"),
                ("cpu_s", "CPU s", ".2f"),
                ("peak_rss_mib", "peak RSS MiB", ".0f"),
                ("open_files", "open files", "d"),
                ("requests", "requests", "d"),
                ("binance_weight", "Binance weight", ".0f"),
                ("bybit_requests", "Bybit requests", ".0f"),
                ("round_at_default_budget_s", "round at default budget s", ".0f"),
            ],
        ),
        f"  two replicas, {r['accounts']} accounts, {r['shards']} shards, a round every {r['interval_s']} s, "
        f"claims every {r['claim_interval_s']} s: reads per account in {r['rounds']:g} rounds "
        f"min {r['reads_per_account_min']:g} / max {r['reads_per_account_max']:g}",
        f"  kill -9 of one ({r['accounts_of_the_killed_replica']} accounts): its shards taken over after "
        f"{r['shards_taken_over_s']:.1f} s, all its accounts read after {r['all_its_accounts_read_s']:.1f} s",
    ]


def compare(current: dict[str, Any], previous: dict[str, Any]) -> str:
    lines = [f"\nChange against {previous.get('when', 'the earlier run')}:"]
    old = {(r["accounts"], r["positions_per_account"]): r for r in previous.get("check_cost", [])}
    for row in current.get("check_cost", []):
        before = old.get((row["accounts"], row["positions_per_account"]))
        if before:
            lines.append(
                f"  check {row['accounts']}×{row['positions_per_account']}: wall {before['wall_s']:.3f} → "
                f"{row['wall_s']:.3f} s ({row['wall_s'] / before['wall_s'] - 1:+.0%})"
            )
    if "detector" in current and "detector" in previous:
        lines.append(f"  detector: {previous['detector']['median_ms']:.1f} → {current['detector']['median_ms']:.1f} ms")
    if "footprint" in current and "footprint" in previous:
        lines.append(
            f"  idle run: {previous['footprint']['rss_mib_median']:.0f} → "
            f"{current['footprint']['rss_mib_median']:.0f} MiB"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    wanted = set(args.only or BENCHMARKS)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    async with Databases() as databases:
        if "detector" in wanted:
            results["detector"] = detector.run()
        if "check_cost" in wanted:
            results["check_cost"] = await check_cost.run(databases, quick=args.quick)
        if "seed" in wanted:
            results["seed"] = await seed_comparison.run(databases, quick=args.quick)
        if "phone" in wanted:
            results["phone"] = await time_to_phone.run(databases, default_samples=args.phone_default)
        if "footprint" in wanted:
            results["footprint"] = await footprint.run(databases)
        if "chatter" in wanted:
            results["chatter"] = await chatter.run(databases, samples=1 if args.quick else 3)
        if "ghost_cause" in wanted:
            results["ghost_cause"] = await ghost_cause.run(databases)
        if "streams" in wanted:
            results["streams"] = await streams.run(databases, quick=args.quick)
        if "scale" in wanted:
            results["scale"] = await scale.run(databases, quick=args.quick)
        if "reconnects" in wanted:
            results["reconnects"] = await reconnects.run(databases)
    return results


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the largest cases")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    parser.add_argument(
        "--phone-default",
        type=int,
        default=0,
        metavar="N",
        help="also time N orphans under the default intervals (minutes)",
    )
    parser.add_argument("--out", type=Path, help="JSON file to write (default: bench/results/<time>.json)")
    parser.add_argument("--compare", type=Path, metavar="JSON", help="an earlier run to compare with")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    results = asyncio.run(main(args))
    text = report(results)
    if args.compare:
        text += compare(results, json.loads(args.compare.read_text()))
    print("\n" + text)
    out = args.out or RESULTS / f"{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
