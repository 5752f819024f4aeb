"""A worker's resident memory over many sessions: it must not grow with the number of sessions.

Run with::

    python -m pytest tests/benchmarks/test_bench_memory.py -m benchmark --benchmark-enable -s

It runs ``PROBSEG_MEMORY_SESSIONS`` (default 10,000) disk sessions of the main job's arm through
:func:`simulator.runner.run_chunk`, the code a Ray worker runs, in chunks of 500 in this process, and
reads the resident set size (``VmRSS``) after each chunk. The first chunks warm the caches (the
model's batching plans, the allocator's pools); the growth from the end of the second chunk to the
last is what a longer run would add, and is asserted to stay under 50 MiB (the sessions themselves
keep nothing between chunks).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import probseg
from simulator.runner import RunSettings, run_chunk

pytestmark = pytest.mark.benchmark

CHUNK = 500
MAX_GROWTH_MIB = 50.0


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status: resident memory is read on Linux only")


def test_worker_memory_does_not_grow_with_sessions(benchmark):
    if "disks" not in probseg.available():
        pytest.skip("the shipped 'disks' checkpoint is not installed")
    n = int(os.environ.get("PROBSEG_MEMORY_SESSIONS", "10000"))
    settings = RunSettings.from_dict({"n_sessions": n, "chunk_size": CHUNK})
    method = settings.make_method()
    sdict = settings.to_dict()
    trace: list[tuple[int, float]] = []

    def once() -> None:
        for start in range(0, n, CHUNK):
            run_chunk(sdict, method, list(range(start, min(n, start + CHUNK))))
            trace.append((min(n, start + CHUNK), _rss_mib()))

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info["rss_mib_by_sessions"] = trace
    print("\nsessions  RSS (MiB)")
    for sessions, rss in trace:
        print(f"{sessions:8d}  {rss:9.1f}")
    if len(trace) >= 3:
        growth = trace[-1][1] - trace[1][1]
        benchmark.extra_info["growth_mib"] = growth
        print(f"growth from {trace[1][0]} to {trace[-1][0]} sessions: {growth:+.1f} MiB")
        assert growth < MAX_GROWTH_MIB
