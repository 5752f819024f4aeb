"""How long each console script takes to print its --help (pytest-benchmark), from a fresh process.

Run with::

    python3 -m pytest tests/benchmarks/test_bench_cli_help.py -m benchmark --benchmark-enable -p no:randomly

The scripts are run as installed (``shutil.which``), as a user runs them; each round is one process
start, imports included. Measured on the 2-core development machine under a load average of about 9
(medians of 3, with ``PYTHONPATH`` set to the checkout): probseg-simulate 2.97 s (9.9 s before it
imported lazily), probseg-study 3.27 s (6.7 s), probseg-reproduce 0.56 s (5.3 s). What remains for
simulate and study is pandas, SciPy and scikit-image, imported at module level by
``simulator.runner`` and the random walker; probseg-train still imports torch first.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.benchmark

SCRIPTS = ("probseg-simulate", "probseg-study", "probseg-reproduce", "probseg-report", "probseg-train",
           "probseg-tune-baselines")


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(benchmark, script: str) -> None:
    exe = shutil.which(script)
    if exe is None:
        pytest.skip(f"{script} is not installed (pip install -e .)")

    def help_once() -> None:
        subprocess.run([exe, "--help"], capture_output=True, check=True, timeout=120)

    benchmark.pedantic(help_once, rounds=3, iterations=1)
