"""Speed of the public API and of training (pytest-benchmark).

Run with::

    python -m pytest tests/benchmarks -m benchmark --benchmark-enable -p no:randomly

The default test run deselects these (``-m 'not slow and not benchmark'`` in pyproject's addopts).
Figures depend on the machine and on torch's thread count (tests/conftest.py sets 1 thread).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probseg
from probseg import ProbSeg, build_network
from probseg.data.disks import make_disk_image
from probseg.data.partials import PairSpec
from probseg.train import _step_loss, build_disk_pool

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def model() -> ProbSeg:
    """The shipped ``disks`` model when installed, else an untrained ``wide`` network (same cost)."""
    if "disks" in probseg.available():
        return probseg.load("disks")
    torch.manual_seed(0)
    return ProbSeg(build_network("wide"), name="untrained-wide")


def _input(size: int):
    rng = np.random.default_rng(0)
    if size == 32:
        image = make_disk_image(rng).image
    else:
        image = rng.normal(size=(size, size)).astype(np.float32)
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 4 : size // 2, size // 4 : size // 2] = True
    seg = mask & (image > image.mean())
    return image, mask, seg


@pytest.mark.parametrize("size, k", [(32, 1), (32, 8), (256, 1), (256, 8)])
def test_bench_propose(benchmark, model, size, k):
    image, mask, seg = _input(size)
    benchmark.extra_info.update({"model": model.name, "size": size, "k": k, "threads": torch.get_num_threads()})
    masks, segs = benchmark(model.propose, image, mask, seg, k=k, seed=0)
    assert masks.shape == (k, size, size) and (masks | ~mask).all()


@pytest.mark.parametrize("config", ["paper", "wide"])
def test_bench_train_step(benchmark, config):
    torch.manual_seed(0)
    net = build_network(config).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = build_disk_pool(64, seed=0, pair_spec=PairSpec(mode=net.config.mode), n_images=64)

    def step() -> float:
        terms = _step_loss(net, batch)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return terms["loss"].item()

    benchmark.extra_info.update({"config": config, "batch_size": 64, "size": 32, "threads": torch.get_num_threads()})
    loss = benchmark.pedantic(step, rounds=8, warmup_rounds=1)
    assert np.isfinite(loss)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["steps_per_second"] = 1.0 / benchmark.stats.stats.mean
