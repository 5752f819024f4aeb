"""Training: the pool, augmentation, settings validation, and a short run that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probseg
from probseg.data.partials import PairSpec
from probseg.model import build_network
from probseg.train import TrainSettings, _dihedral, _step_loss, build_disk_pool, resolve_device, train


def _mean_loss(net, batch, n: int = 4) -> float:
    """Loss on a fixed batch, averaged over fixed reparameterisation noise draws."""
    vals = []
    with torch.no_grad():
        for s in range(n):
            torch.manual_seed(1000 + s)
            vals.append(_step_loss(net, batch)["loss"].item())
    return float(np.mean(vals))


def test_short_training_run_lowers_loss_and_writes_loadable_checkpoint(tmp_path):
    settings = TrainSettings(config="paper", steps=20, batch_size=16, n_pairs=300, eval_images=0, threads=1)
    held = build_disk_pool(64, seed=12345, pair_spec=PairSpec())  # pairs the run never sees
    torch.manual_seed(settings.seed)
    initial = build_network("paper")  # train() seeds the same way: its starting weights
    before = _mean_loss(initial, held)
    out = tmp_path / "run" / "model.pt"
    model, metrics = train(settings, out, progress=False, command="probseg-train --steps 20")
    after = _mean_loss(model.net, held)
    assert after < before - 0.05, (before, after)
    # the checkpoint loads and proposes
    loaded = probseg.load(out)
    assert loaded.config == probseg.CONFIGS["paper"]
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, loaded.net.state_dict()[key])
    assert loaded.meta["train"]["command"] == "probseg-train --steps 20"
    assert loaded.meta["train"]["settings"]["steps"] == 20
    assert np.isfinite(metrics["final_loss"]) and metrics["train_seconds"] > 0
    assert "max_dice" not in metrics  # eval_images=0 skips the held-out evaluation
    assert out.with_suffix(".json").is_file()
    image = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    mask = np.zeros((32, 32), dtype=bool)
    masks, segs = loaded.propose(image, mask, mask, k=2, seed=0)
    assert masks.shape == (2, 32, 32)


def test_training_is_reproducible_from_seed():
    s = TrainSettings(config="paper", steps=2, batch_size=4, n_pairs=8, n_train_images=10, eval_images=0, threads=1)
    a, _ = train(s, progress=False)
    b, _ = train(s, progress=False)
    for key, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[key])


def test_train_with_eval_records_heldout_metrics():
    s = TrainSettings(config="unet-complete", steps=1, batch_size=2, n_pairs=4, n_train_images=5, eval_images=2, threads=1)
    model, metrics = train(s, progress=False)
    assert metrics["n_images"] == 2
    for key in ("added_fg_px", "added_bg_px", "max_dice", "target_dice_at_16", "mean_target_dice"):
        assert key in metrics
    assert 0.0 <= metrics["max_dice"] <= 1.0
    assert model.meta["data_spec"]["pair_spec"]["mode"] == "complete"  # the pairs follow the model's mode


def test_build_disk_pool_pairs_are_valid_and_deterministic():
    spec = PairSpec()
    pool = build_disk_pool(24, seed=5, pair_spec=spec, n_images=10)
    assert pool.shape == (24, 5, 32, 32) and pool.dtype == torch.float32
    image, x_m, x_s, y_m, y_s = (pool[:, c] for c in range(5))
    assert image.min() >= 0 and image.max() <= 1
    for t in (x_m, x_s, y_m, y_s):
        assert set(t.unique().tolist()) <= {0.0, 1.0}
    assert (x_m <= y_m).all() and (x_s <= x_m).all() and (y_s <= y_m).all()
    assert torch.equal(y_s * x_m, x_s)  # the target agrees with the input where it is decided
    # pair j depends only on (seed, j): a smaller pool is a prefix
    assert torch.equal(build_disk_pool(10, seed=5, pair_spec=spec, n_images=10), pool[:10])
    assert not torch.equal(build_disk_pool(10, seed=6, pair_spec=spec, n_images=10), pool[:10])
    complete = build_disk_pool(6, seed=5, pair_spec=PairSpec(mode="complete"), n_images=10)
    assert (complete[:, 3] == 1).all()


def test_dihedral_transforms():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    np.testing.assert_array_equal(_dihedral(x, torch.tensor([0, 0])).numpy(), x.numpy())
    seen = set()
    for code in range(8):
        out = _dihedral(x, torch.tensor([code, 0]))
        torch.testing.assert_close(out[1], x[1])  # code 0 leaves the other sample alone
        a = x[0, 0].numpy()
        candidates = [np.rot90(b, r) for b in (a, np.fliplr(a)) for r in range(4)]
        assert any(np.array_equal(out[0, 0].numpy(), c) for c in candidates)
        # every channel gets the same transform
        for c in range(1, 3):
            assert torch.equal(out[0, c] - out[0, 0], x[0, c] - x[0, 0])
        seen.add(out[0, 0].numpy().tobytes())
    assert len(seen) == 8  # the 8 codes are the 8 distinct dihedral transforms


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"config": "nope"}, "config"),
        ({"dataset": "mnist"}, "dataset"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_pairs": 0}, "n_pairs"),
        ({"n_train_images": 0}, "n_train_images"),
        ({"eval_images": -1}, "eval_images"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"free_bits": -0.5}, "free_bits"),
        ({"free_bits": float("inf")}, "free_bits"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
    ],
)
def test_train_settings_validate_raises(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        TrainSettings(**kwargs).validate()
    with pytest.raises(ValueError, match=f"^{field}"):
        train(TrainSettings(**kwargs), progress=False)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device: 'cuda' asked for, but CUDA is not available"):
            resolve_device("cuda")


def test_free_bits_and_warmup_train_and_are_recorded():
    s = TrainSettings(config="paper", steps=3, batch_size=4, n_pairs=8, n_train_images=10, eval_images=0, threads=1,
                      free_bits=0.5, kl_warmup=2)
    model, metrics = train(s, progress=False)
    assert model.meta["train"]["settings"]["free_bits"] == 0.5
    assert metrics["train_device"] == "cpu" and np.isfinite(metrics["final_loss"])
    # the floor changes the training: the same seed without it ends elsewhere
    plain, _ = train(TrainSettings(**{**s.__dict__, "free_bits": 0.0}), progress=False)
    assert any(not torch.equal(v, plain.net.state_dict()[k]) for k, v in model.net.state_dict().items())


def test_default_settings_validate():
    TrainSettings().validate()
