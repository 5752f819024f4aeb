"""Speed of the medical models (pytest-benchmark): ``propose`` at 256 x 256, a training step, the pool.

Run with::

    python3 -m pytest tests/benchmarks/test_bench_medical.py -m benchmark --benchmark-enable -p no:randomly

Target: ``propose(image_256x256, mask, seg, k=8)`` median <= 100 ms on a 2-core machine. The weights
do not change the cost, so an untrained network of the real configuration is timed. Each case runs
with torch's default intra-op threads (one per core, as a user gets it; tests/conftest.py sets 1 for
the other tests) and with 1 thread: on a machine whose cores are busy with other jobs, 2 threads
stall on each other (every kernel waits for the slower thread), and 1 thread is much faster.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from probseg import ProbSeg, build_network
from probseg.configs import CONFIGS
from probseg.data.medical import build_medical_pool, pool_batch_to_float
from probseg.data.medscribble import load_medscribble
from probseg.data.partials import PairSpec
from probseg.train import _step_loss

pytestmark = pytest.mark.benchmark

MEDSCRIBBLE = Path(__file__).resolve().parents[3] / "shared" / "medscribble"
# torch's default: one intra-op thread per core available to the process.
DEFAULT_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.fixture(params=[DEFAULT_THREADS, 1], ids=lambda n: f"threads{n}")
def threads(request) -> int:
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture(
    scope="module",
    params=["medical", "medical-unet-complete", "medical-heads", "medical-ssn", "medical-heads-complete:fine",
            "medical-ssn:fine"],
)
def model(request) -> ProbSeg:
    """An untrained network of a configuration; ``NAME:fine`` with the fine score head (the ranked finals')."""
    name, _, score_head = request.param.partition(":")
    config = CONFIGS[name] if not score_head else replace(CONFIGS[name], score_head=score_head)
    torch.manual_seed(0)
    return ProbSeg(build_network(config), name=f"untrained-{request.param}")


def _input():
    """A 256 x 256 MedScribble image with its first human scribbles, or a synthetic stand-in."""
    if MEDSCRIBBLE.is_dir():
        ex = load_medscribble(MEDSCRIBBLE, tasks=["ACDC"])[0]
        pos, neg = ex.scribbles[0]
        return ex.image, pos | neg, pos
    rng = np.random.default_rng(0)
    image = rng.random((256, 256)).astype(np.float32)
    mask = np.zeros((256, 256), dtype=bool)
    mask[100:104, 60:200] = True
    return image, mask, mask & (image > 0.5)


@pytest.mark.parametrize("k", [1, 8])
def test_bench_medical_propose(benchmark, model, threads, k):
    image, mask, seg = _input()
    model.propose(image, mask, seg, k=k, seed=0)  # warm-up: oneDNN picks its kernels on the first call
    benchmark.extra_info.update({"model": model.name, "size": 256, "k": k, "threads": threads, "load": os.getloadavg()[0]})
    masks, segs = benchmark.pedantic(model.propose, args=(image, mask, seg), kwargs={"k": k, "seed": 0}, rounds=20, warmup_rounds=2)
    assert masks.shape == (k, 256, 256) and (masks | ~mask).all()


@pytest.mark.parametrize("config", ["medical"])
def test_bench_medical_train_step(benchmark, threads, config):
    torch.manual_seed(0)
    net = build_network(config).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = pool_batch_to_float(
        build_medical_pool(16, seed=0, real_fraction=0.0, pair_spec=PairSpec(mode=net.config.mode), dtype=torch.uint8)
    )

    def step() -> float:
        terms = _step_loss(net, batch)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return terms["loss"].item()

    benchmark.extra_info.update({"config": config, "batch_size": 16, "size": 128, "threads": threads, "load": os.getloadavg()[0]})
    loss = benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    assert np.isfinite(loss)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["steps_per_second"] = 1.0 / benchmark.stats.stats.mean


def test_bench_medical_pool(benchmark):
    """Pool building is single-threaded NumPy/SciPy: 50 pairs, half real (when the data is there)."""
    real = 0.5 if MEDSCRIBBLE.is_dir() else 0.0
    pool = benchmark.pedantic(
        build_medical_pool, args=(50, 0), kwargs={"medscribble_path": MEDSCRIBBLE, "real_fraction": real, "dtype": torch.uint8},
        rounds=3, warmup_rounds=0,
    )
    assert pool.shape == (50, 5, 128, 128)
    if benchmark.stats is not None:
        benchmark.extra_info["ms_per_pair"] = 1000.0 * benchmark.stats.stats.median / 50
