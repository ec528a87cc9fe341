"""Exactly once under faults and kills (issue 15, "What it must show"), at CI size.

Two `threadline serve` and two `threadline worker` processes on a PostgreSQL schema of
their own; a fake GitHub that fails a fifth of the writes (half after applying them);
a SIGKILL of a random process every few seconds; a few hundred deliveries over a few
dozen threads with redeliveries and outsiders. tests/soak_harness.py runs it and tallies;
bench/soak.py is the same at full size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import postgres_schema
from tests.soak_harness import Plan, soak

pytestmark = pytest.mark.slow


async def test_nothing_lost_doubled_or_out_of_order_under_faults_and_kills(
    tmp_path: Path,
) -> None:
    plan = Plan(threads=30, follow_ups=4, outsiders=2, duration=25.0, kill_every=3.0)
    with postgres_schema() as url:
        report = await soak(plan, url, tmp_path)
    assert report.deliveries_sent == plan.deliveries
    assert sum(report.kills.values()) >= 5, report.render()
    assert sum(report.faults.values()) >= 10, report.render()
    assert not report.problems(), report.render()
