"""Lockstep sessions give exactly the reference's tables.

The reference is the per-session path (``batch_size=1``: :func:`simulator.session.run_session`, one
``propose`` call per session and iteration). Lockstep batches many sessions' proposals into one
forward pass; a batched convolution may round differently from a small one (see
:mod:`probseg.batching`), so these tests compare tables exactly, never approximately.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import probseg
from probseg import batching
from probseg.batching import ExactBatcher
from simulator.datasets import make_dataset, session_rng
from simulator.lockstep import LockstepCase, run_lockstep
from simulator.methods import make_method
from simulator.policies import make_policy
from simulator.runner import TIMING_COLUMNS, RunSettings, run
from simulator.session import SessionConfig, run_session

MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"
FOLD_A = Path(__file__).resolve().parents[1] / "results" / "medscribble" / "checkpoints" / "A"


def _need(*names: str) -> None:
    missing = [n for n in names if n not in probseg.available()]
    if missing:
        pytest.skip(f"shipped checkpoints not installed: {missing}")


def _tables(settings: RunSettings, out: Path, **kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    steps, sessions, _ = run(settings, out=out, progress=False, **kw)
    drop = lambda df: df.drop(columns=[c for c in TIMING_COLUMNS if c in df.columns])  # noqa: E731
    return drop(steps), drop(sessions)


def _assert_same(a: tuple[pd.DataFrame, pd.DataFrame], b: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
    pd.testing.assert_frame_equal(a[1], b[1], check_exact=True)


# --- the model: propose_batch is propose, bit for bit ------------------------------------------------


@pytest.mark.parametrize("name, shapes", [
    ("disks", [(32, 32), (30, 37), (32, 32), (17, 9)]),
    ("disks-complete", [(32, 32), (32, 32), (40, 24)]),
    ("disks-unet-complete", [(32, 32), (33, 31)]),
    ("disks-paper", [(32, 32), (32, 32), (24, 40)]),
    ("medical", [(128, 128), (200, 160), (96, 100)]),
    ("medical-complete", [(128, 128), (64, 256)]),
    ("medical-unet-complete", [(150, 150), (128, 128)]),
])
@pytest.mark.parametrize("max_pixels", [batching.MAX_BATCH_PIXELS, 2**30], ids=["default-passes", "one-pass"])
def test_propose_batch_equals_propose_bit_for_bit(name, shapes, max_pixels, monkeypatch):
    _need(name)
    monkeypatch.setattr(batching, "MAX_BATCH_PIXELS", max_pixels)  # 2**30: every input of a size in one pass
    model = probseg.load(name)
    rng = np.random.default_rng(7)
    images = [rng.normal(50, 20, size=s) for s in shapes]
    masks = [rng.random(s) < 0.2 for s in shapes]
    segs = [m & (rng.random(m.shape) < 0.5) for m in masks]
    for k, mean in ((8, False), (1, False), (4, True)):
        batched = model.propose_batch(images, masks, segs, k=k, mean=mean, return_scores=True,
                                      seeds=[np.random.default_rng(i) for i in range(len(shapes))])
        for i in range(len(shapes)):
            ref = model.propose(images[i], masks[i], segs[i], k=k, seed=np.random.default_rng(i), mean=mean,
                                return_scores=True)
            for got, want in zip(batched[i], ref):
                assert got.dtype == want.dtype and np.array_equal(got, want), (name, k, mean, i)


def test_propose_batch_checks_its_arguments():
    _need("disks")
    model = probseg.load("disks")
    img, m = np.zeros((8, 8)), np.zeros((8, 8), bool)
    with pytest.raises(ValueError, match="^masks: "):
        model.propose_batch([img, img], [m], [m, m])
    with pytest.raises(ValueError, match="^k: "):
        model.propose_batch([img], [m], [m], k=0)
    with pytest.raises(ValueError, match="^seg: "):
        model.propose_batch([img], [m], [~m])


class _BatchSensitiveConv(nn.Conv2d):
    """A convolution whose result depends on its batch size, as a backend switch makes it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1e-3 * (x.shape[0] > 2)


def test_a_layer_that_rounds_differently_in_a_batch_runs_slice_by_slice():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), _BatchSensitiveConv(4, 4, 3, padding=1), nn.GroupNorm(2, 4))
    x = torch.randn(6, 1, 8, 8)
    batcher = ExactBatcher()
    with torch.inference_mode():
        reference = torch.cat([net(x[i:i + 2]) for i in range(0, 6, 2)])
        for _ in range(2):  # the first call checks each layer, the second follows the plans
            with batcher.reference_batch(net, 2):
                got = net(x)
            assert torch.equal(got, reference)
        assert net(x).sub(reference).abs().max() > 0  # outside the block the batch does change it
    assert sorted(batcher.plans.values()) == [-1, 0, 0]  # only the sensitive layer is split
    assert "forward" not in vars(net[1])  # the layers are restored


def test_step_metrics_from_counts_equal_the_metric_definitions():
    from itertools import combinations

    from simulator.metrics import dice
    from simulator.session import _candidate_dice, _diversity

    rng = np.random.default_rng(3)
    for trial in range(200):
        k = int(rng.integers(1, 9))
        segs = rng.random((k, 23, 17)) < rng.random()
        target = rng.random((23, 17)) < rng.random()
        if trial % 5 == 0:
            segs[: k // 2] = False  # empty candidates: Dice 1 between two of them
        pairs = [1.0 - dice(segs[i], segs[j]) for i, j in combinations(range(k), 2)]
        assert _diversity(segs) == (float(np.mean(pairs)) if pairs else 0.0)
        assert _candidate_dice(segs, target) == [dice(s, target) for s in segs]


# --- sessions: which sessions share a batch never matters --------------------------------------------


def test_a_session_is_the_same_alone_and_in_any_batch():
    _need("disks")
    method, policy = make_method("probseg"), make_policy("best-of-k")
    cfg = SessionConfig(k=8, max_iters=6, early_stop=False)
    ds = make_dataset("disks", 12)
    cases = [ds.case(i, 0) for i in range(12)]
    with torch.inference_mode():
        alone = [run_session(c.image, c.target, method, policy, cfg, session_rng(0, c.index)) for c in cases]
        for batch_size, order in ((5, range(12)), (12, reversed(range(12))), (3, [4, 0, 9, 2, 11, 7])):
            todo = (LockstepCase(i, cases[i].image, cases[i].target, session_rng(0, i)) for i in order)
            for key, steps, _ in run_lockstep(todo, method, policy, cfg, batch_size):
                for got, want in zip(steps, alone[key], strict=True):
                    assert {k: v for k, v in got.items() if k not in TIMING_COLUMNS} == \
                        {k: v for k, v in want.items() if k not in TIMING_COLUMNS}


def test_run_lockstep_rejects_a_bad_batch_size():
    with pytest.raises(ValueError, match="^batch_size: "):
        list(run_lockstep([], make_method("random-walker"), make_policy("first"), SessionConfig(), 0))


@pytest.mark.parametrize("method, policy, early_stop", [
    ("probseg", "best-of-k", True),  # partial, the main job's arm
    ("probseg", "random-of-k", False),
    ("probseg-complete", "best-of-k", True),  # complete
    ("probseg-mean", "first", False),
    ("random-walker", "first", True),  # no batched proposals: lockstep calls propose per session
])
def test_disk_tables_equal_the_reference_for_any_batch_size(tmp_path, method, policy, early_stop):
    _need("disks", "disks-complete")
    n = 8 if method == "random-walker" else 24
    settings = RunSettings(method=method, policy=policy, n_sessions=n, chunk_size=12,
                           session=SessionConfig(max_iters=5, early_stop=early_stop))
    reference = _tables(settings, tmp_path / "ref", workers=0, batch_size=1)
    for batch_size in (5, 16):
        _assert_same(_tables(settings, tmp_path / f"b{batch_size}", workers=0, batch_size=batch_size), reference)


def test_disk_tables_equal_the_reference_for_0_1_2_workers(tmp_path):
    _need("disks")
    settings = RunSettings(n_sessions=30, chunk_size=10, session=SessionConfig(max_iters=5))
    reference = _tables(settings, tmp_path / "ref", workers=0, batch_size=1)
    for workers in (0, 1, 2):
        # ray_startup_seconds=0: always on Ray (the fast path would run this small run in-process)
        got = _tables(settings, tmp_path / f"w{workers}", workers=workers, batch_size=8, ray_startup_seconds=0)
        _assert_same(got, reference)


def test_the_fast_path_runs_a_small_run_in_process_with_the_same_tables(tmp_path, monkeypatch):
    _need("disks")
    import simulator.runner as runner

    def no_ray(*args, **kwargs):
        raise AssertionError("a run this small must not start Ray")

    monkeypatch.setattr(runner, "_run_ray", no_ray)
    settings = RunSettings(n_sessions=20, chunk_size=10, session=SessionConfig(max_iters=3))
    got = _tables(settings, tmp_path / "fast", workers=2)
    _assert_same(got, _tables(settings, tmp_path / "ref", workers=0, batch_size=1))


def test_the_fast_path_shares_a_longer_run_with_ray_with_the_same_tables(tmp_path, monkeypatch):
    _need("disks")
    import simulator.runner as runner

    calls: list[list[int]] = []
    hybrid = runner._run_hybrid

    def spy(sdict, method, chunks, todo, *args):
        calls.append(list(todo))
        return hybrid(sdict, method, chunks, todo, *args)

    monkeypatch.setattr(runner, "_run_hybrid", spy)
    settings = RunSettings(n_sessions=40, chunk_size=5, session=SessionConfig(max_iters=3))
    # A start-up of ~0 s: Ray always pays off, so this process and a Ray worker share the chunks.
    got = _tables(settings, tmp_path / "hybrid", workers=2, ray_startup_seconds=1e-9)
    assert calls == [list(range(1, 8))]  # every chunk but the timed first one
    _assert_same(got, _tables(settings, tmp_path / "ref", workers=0, batch_size=1))


@pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")
@pytest.mark.parametrize("method", ["probseg", "probseg-complete"])
@pytest.mark.parametrize("max_pixels", [batching.MAX_BATCH_PIXELS, 2**30], ids=["default-passes", "one-pass"])
def test_real_image_tables_equal_the_reference(tmp_path, method, max_pixels, monkeypatch):
    # Fold A's K-candidate models (SSN partial, heads complete) on two of fold A's unseen tasks: the shipped
    # medical checkpoints are trained on every MedScribble task, so a run refuses them here.
    checkpoint = FOLD_A / ("partial-k-ranked.pt" if method == "probseg" else "complete-k-ranked.pt")
    if not checkpoint.is_file():
        pytest.skip(f"fold checkpoint not found: {checkpoint}")
    monkeypatch.setattr(batching, "MAX_BATCH_PIXELS", max_pixels)
    settings = RunSettings(dataset=f"medscribble:{MEDSCRIBBLE}?tasks=CAMUS,WBC", method=method, n_sessions=5,
                           checkpoint=str(checkpoint), chunk_size=5,
                           session=SessionConfig(k=4, start="human", max_iters=3, early_stop=False))
    reference = _tables(settings, tmp_path / "ref", workers=0, batch_size=1)
    assert reference[1]["image"].nunique() == 2  # two images, each with its annotators' scribbles
    _assert_same(_tables(settings, tmp_path / "lockstep", workers=0, batch_size=4), reference)
