"""The benchmark's CPU figures: the load generator's excludes the harness' own background sampler."""

from __future__ import annotations

import time

from benchmarks.procstats import LOAD_GENERATOR, ProcessStats
from benchmarks.stack import ProcessRef


def test_the_rss_samplers_cpu_is_not_counted_as_the_load_generators() -> None:
    # pid 1 with its children: every round of the sampler lists the machine's processes (as it does for Postgres'
    # backends), at a high rate so that it costs something; the main thread meanwhile does nothing.
    with ProcessStats([ProcessRef("everything", 1, with_children=True)], interval=0.001) as stats:
        time.sleep(0.3)
        start, sampler_start = stats.cpu(), stats.sampler_cpu_seconds
        time.sleep(1.0)
        end, sampler_end = stats.cpu(), stats.sampler_cpu_seconds
    sampler = sampler_end - sampler_start
    load_generator = ProcessStats.delta(start, end).cpu_seconds[LOAD_GENERATOR]
    assert sampler > 0.02, "the sampler did not run"
    # Without the correction the load generator's figure is the sampler's CPU (plus the readings themselves).
    assert load_generator < sampler / 2, (load_generator, sampler)
