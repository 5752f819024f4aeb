"""Shared fixtures: one torch thread, a hypothesis profile without deadlines, a tiny trained checkpoint."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings

# Two cores: one intra-op thread is faster than two for these tiny networks and keeps timings stable.
torch.set_num_threads(1)

# CPU timings vary with load; property tests must fail on behaviour, never on speed.
settings.register_profile(
    "probseg", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("probseg")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A ``paper`` checkpoint trained for a few steps (seconds): for CLI and checkpoint tests.

    Its quality is meaningless; only its format and plumbing are exercised.
    """
    from probseg.train import TrainSettings, train

    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    settings_ = TrainSettings(
        config="paper", steps=3, batch_size=4, n_pairs=16, n_train_images=20, eval_images=0, threads=1
    )
    train(settings_, out, progress=False, command="tiny")
    assert out.is_file()
    return out
