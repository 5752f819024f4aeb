"""End-to-end sessions for every method of the study design with its shipped default checkpoint."""

from __future__ import annotations

import pytest

import probseg
from simulator.methods import METHODS
from simulator.runner import RunSettings, run
from simulator.session import SessionConfig

DEFAULT_CHECKPOINTS = {"probseg": "disks", "probseg-mean": "disks", "probseg-complete": "disks-complete",
                       "unet-complete": "disks-unet-complete", "unet-tta": "disks-unet-complete"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_end_to_end_with_its_default(method, tmp_path):
    ckpt = DEFAULT_CHECKPOINTS.get(method)
    if ckpt is not None and ckpt not in probseg.available():
        pytest.skip(f"shipped checkpoint {ckpt!r} is not installed")
    settings = RunSettings(method=method, policy="best-of-k", n_sessions=3, chunk_size=3,
                           session=SessionConfig(k=4, max_iters=4))
    steps, sessions, summary = run(settings, out=tmp_path / method, workers=0, progress=False)
    assert len(sessions) == 3 and len(steps) == sessions["iterations"].sum() <= 12
    # Each session runs until the annotator is done or the budget is spent, and says which.
    last = steps.sort_values("iteration").groupby("session").tail(1).set_index("session")["stop"].sort_index()
    assert set(last) <= {"done", "max-iters"}
    assert ((last == "done") == sessions.set_index("session")["stopped_early"].sort_index()).all()
    assert (steps.loc[steps["stop"] == "done", "dice"] == 1.0).all()
    assert sessions["final_dice"].between(0, 1).all()
    if method in ("probseg-complete", "unet-complete", "unet-tta", "random-walker"):
        # complete methods decide every pixel (a rejected proposal leaves the start input on screen)
        assert (steps.loc[steps["chosen"] >= 0, "coverage"] == 1.0).all()
    if method in ("probseg-mean", "unet-complete", "random-walker", "random-walker-partial"):
        assert steps["candidate_dice"].map(len).eq(1).all()  # one proposal per iteration
