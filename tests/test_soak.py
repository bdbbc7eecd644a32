"""The soak's short version, as CI runs it: the same harness as ``python -m bench --only soak`` (see
``bench/soak.py``) for 25 s of changes and faults — two `run` replicas on one database, six accounts on the
exchange emulator in a process of its own, the loopback Bot API — with a fixed seed, every fault category
injected at least once, then the settle; about 80 s in all. Lost, duplicate and false alerts and wrong fixes
must all be 0. Its own ports (all chosen by the system), its own database, its own processes: it runs beside
other tests under pytest-xdist."""

from __future__ import annotations

import dataclasses

import pytest

from bench.soak import SoakConfig, run_soak, verdict_lines

SHORT = SoakConfig(duration_s=25, accounts=6, replicas=2, seed=21, event_every_s=3.0, fault_every_s=2.5)


class DriftMishandled(AssertionError):
    """The soak's four counts are not all 0."""


@pytest.mark.soak
async def test_a_short_soak_loses_doubles_invents_and_misfixes_nothing(database_url, tmp_path):
    result = await run_soak(dataclasses.replace(SHORT, log_dir=tmp_path / "soak"), database_url, say=print)
    print("\n".join(verdict_lines(result)))
    assert result["stopped_early"] is None
    assert set(result["faults"]["by_category"]) >= {"rest", "ban", "stream", "telegram", "postgres", "replica"}
    assert result["faults"]["errors"] == [] and result["driver_errors"] == []
    assert result["drifts"]["real"] > 0 and sum(result["changes"].values()) >= 8
    if any(result["counts"].values()):
        raise DriftMishandled(f"{result['counts']}: {result['examples']}")
