"""Simulator speed: sessions per second with 0, 1 and 2 workers, and the harness's share of an iteration.

Run with::

    python -m pytest tests/benchmarks -m benchmark --benchmark-enable

Targets (measured here, never asserted as wall-clock times): 2 workers >= 1.7x one worker's
throughput; the harness (everything but the model's forward pass) <= 25% of an iteration at 32x32.
The figures are attached to each benchmark's ``extra_info`` and printed.
"""

from __future__ import annotations

import numpy as np
import pytest

import probseg
from simulator.runner import RunSettings, run

pytestmark = pytest.mark.benchmark

N_SESSIONS = 200
_THROUGHPUT: dict[int, float] = {}


def _settings() -> RunSettings:
    if "disks" not in probseg.available():
        pytest.skip("the shipped 'disks' checkpoint is not installed")
    return RunSettings(method="probseg", policy="best-of-k", k=8, n_sessions=N_SESSIONS, chunk_size=20)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_sessions_per_second(benchmark, tmp_path, workers):
    settings = _settings()

    def once():
        out = tmp_path / f"w{workers}-{np.random.default_rng().integers(1 << 30)}"
        return run(settings, out=out, workers=workers, progress=False)

    steps, _, summary = benchmark.pedantic(once, rounds=1, iterations=1)
    rate = summary["sessions_per_second"]  # excludes Ray start-up
    _THROUGHPUT[workers] = rate
    benchmark.extra_info["sessions_per_second"] = rate
    harness = 1.0 - steps["model_seconds"].sum() / steps["total_seconds"].sum()
    benchmark.extra_info["harness_share"] = float(harness)
    msg = f"workers={workers}: {rate:.2f} sessions/s, harness share {harness:.1%}"
    if workers == 2 and 1 in _THROUGHPUT:
        speedup = rate / _THROUGHPUT[1]
        benchmark.extra_info["speedup_2_over_1"] = speedup
        msg += f", speed-up over 1 worker {speedup:.2f}x"
    print(msg)
