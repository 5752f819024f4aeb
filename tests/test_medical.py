"""The medical models: the ``punet`` configurations, resizing to the working size, synthetic and real
training pairs, medical training and the held-out check.

Untrained networks are enough for the API contract (the constraints must hold whatever the weights);
a tiny MedScribble-shaped folder written to a temporary directory stands in for the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import probseg
from probseg import ProbSeg, build_network, interaction
from probseg.checkpoint import save_checkpoint
from probseg.data.examples import Example
from probseg.data.medscribble import load_medscribble
from probseg.data.medical import (
    AugmentSpec,
    augment_example,
    build_medical_pool,
    evaluate_heldout,
    pool_batch_to_float,
)
from probseg.data.partials import PairSpec
from probseg.data.synth import SynthSpec, label_objects, make_synth_example
from probseg.model import CONFIGS, ModelConfig
from probseg.predictor import resize_to_work
from probseg.train import TrainSettings, _step_loss, train
from probseg.train import main as train_main

MEDICAL = ["medical", "medical-complete", "medical-unet-complete"]
MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"


def _model(name: str) -> ProbSeg:
    torch.manual_seed(0)
    return ProbSeg(build_network(name), name=name)


MODELS = {name: _model(name) for name in MEDICAL}


def _case(h: int, w: int, seed: int = 0, density: str = "clicks"):
    """An image with a bright blob, and an annotation: clicks (tiny), a scribble-like band, or dense."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    blob = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 5) ** 2
    image = (rng.normal(size=(h, w)) * 0.2 + blob).astype(np.float32)
    mask = np.zeros((h, w), dtype=bool)
    if density == "clicks":
        mask[h // 2, w // 2] = True  # a one-pixel positive click
        mask[2, 3] = True  # and a one-pixel negative one
    elif density == "band":
        mask[h // 2 - 2 : h // 2 + 2, w // 5 : 4 * w // 5] = True
    else:
        mask = rng.random((h, w)) < 0.6
    seg = mask & blob
    return image, mask, seg


def _check_contract(masks, segs, mask, seg, k):
    h, w = mask.shape
    assert masks.shape == (k, h, w) and segs.shape == (k, h, w)
    assert masks.dtype == bool and segs.dtype == bool
    assert (masks | ~mask[None]).all()  # masks ⊇ mask
    assert (segs[:, mask] == seg[mask][None]).all()  # segs == seg on mask
    assert not (segs & ~masks).any()  # segs ⊆ masks


# --- configurations and the network ----------------------------------------------------------------


def test_medical_configs():
    for name in MEDICAL:
        cfg = CONFIGS[name]
        assert cfg.arch == "punet" and cfg.work_size == 128
        assert ModelConfig(**cfg.to_dict()) == cfg
    assert CONFIGS["medical"].mode == "partial" and CONFIGS["medical"].stochastic
    assert CONFIGS["medical-complete"].mode == "complete" and CONFIGS["medical-complete"].stochastic
    assert CONFIGS["medical-unet-complete"].mode == "complete" and not CONFIGS["medical-unet-complete"].stochastic
    # the same backbone in all three
    shapes = [{k: v.shape for k, v in MODELS[n].net.decoder.backbone.state_dict().items()} for n in MEDICAL]
    assert shapes[0] == shapes[1] == shapes[2]
    # the disk configurations keep working at their native size
    assert all(CONFIGS[n].work_size == 0 for n in ("paper", "wide", "wide-complete", "unet-complete", "paper-complete"))


@pytest.mark.parametrize("kwargs, field", [({"work_size": 12}, "work_size"), ({"work_size": -8}, "work_size"), ({"width": 6}, "width")])
def test_bad_config_values_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(arch="punet", **kwargs)


def test_size_and_parameter_budget(tmp_path):
    for name in MEDICAL:
        net = MODELS[name].net
        n = sum(p.numel() for p in net.parameters())
        assert 0.5e6 < n < 2e6, (name, n)
        path = save_checkpoint(tmp_path / f"{name}.pt", net, {"tasks": ["ACDC"]}, {}, {})
        assert path.stat().st_size < 20e6


# --- the API contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MEDICAL)
@pytest.mark.parametrize("shape", [(256, 256), (200, 173), (40, 30), (128, 128)])
@pytest.mark.parametrize("density", ["clicks", "band", "dense"])
def test_propose_contract(name, shape, density):
    model = MODELS[name]
    image, mask, seg = _case(*shape, density=density)
    masks, segs, scores = model.propose(image, mask, seg, k=3, seed=1, return_scores=True)
    _check_contract(masks, segs, mask, seg, 3)
    assert scores.shape == (3,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    if not model.is_partial:
        assert masks.all()  # complete models decide every pixel
    m0, s0 = model.propose(image, mask, seg, k=2, mean=True)
    _check_contract(m0, s0, mask, seg, 2)
    assert (m0 == m0[0]).all() and (s0 == s0[0]).all()


@pytest.mark.parametrize("name", MEDICAL)
def test_empty_and_full_inputs(name):
    model = MODELS[name]
    image, _, _ = _case(64, 80)
    empty = np.zeros(image.shape, dtype=bool)
    _check_contract(*model.propose(image, empty, empty, k=2, seed=0), empty, empty, 2)
    full = np.ones(image.shape, dtype=bool)
    seg = image > 0.5
    masks, segs = model.propose(image, full, seg, k=2, seed=0)
    assert masks.all() and (segs == seg[None]).all()


@pytest.mark.parametrize("name", MEDICAL)
def test_seeded_reproducibility(name):
    model = MODELS[name]
    image, mask, seg = _case(256, 256, density="band")
    a = model.propose(image, mask, seg, k=4, seed=7, return_scores=True)
    b = model.propose(image, mask, seg, k=4, seed=7, return_scores=True)
    c = model.propose(image, mask, seg, k=4, seed=np.random.default_rng(3))
    d = model.propose(image, mask, seg, k=4, seed=np.random.default_rng(3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(c, d):
        np.testing.assert_array_equal(x, y)


def test_stochastic_samples_differ_and_deterministic_ones_do_not():
    image, mask, seg = _case(256, 256, density="band")
    with torch.no_grad():
        # the latent changes the probabilities of a stochastic network (before binarising)
        net = MODELS["medical"].net
        img, xm, xs = resize_to_work(image / image.max(), mask, seg, (128, 128))
        z = torch.randn((2, *net.latent_shape(128, 128)), generator=torch.Generator().manual_seed(0)) * 3
        pm, ps = net.decode(img, xm, xs, z)
        assert not torch.allclose(ps[0], ps[1])
    det = MODELS["medical-unet-complete"]
    a_m, a_s = det.propose(image, mask, seg, k=5, seed=0)
    b_m, b_s = det.propose(image, mask, seg, k=5, seed=99)
    np.testing.assert_array_equal(a_s, b_s)
    assert (a_s == a_s[0]).all()
    np.testing.assert_array_equal(det.propose(image, mask, seg, k=1, seed=5)[1][0], a_s[0])


@pytest.mark.parametrize("name", ["medical", "medical-complete"])
def test_backbone_runs_once_and_samples_in_one_batch(name):
    net = MODELS[name].net
    calls: list[int] = []
    head_batches: list[int] = []
    h1 = net.decoder.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    h2 = net.decoder.mixer.register_forward_hook(lambda m, i, o: head_batches.append(i[0].shape[0]))
    try:
        image, mask, seg = _case(256, 256)
        MODELS[name].propose(image, mask, seg, k=8, seed=0)
    finally:
        h1.remove()
        h2.remove()
    assert calls == [1]  # the input-dependent backbone: once, on one input
    assert head_batches == [8]  # the latent-dependent head: once, all K samples in one batch


def test_deterministic_backbone_runs_once():
    net = MODELS["medical-unet-complete"].net
    calls: list[int] = []
    hook = net.decoder.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        image, mask, seg = _case(100, 120)
        MODELS["medical-unet-complete"].propose(image, mask, seg, k=8, seed=0)
    finally:
        hook.remove()
    assert calls == [1]


def test_resize_to_work_keeps_every_decided_pixel():
    h = w = 256
    image = np.random.default_rng(0).random((h, w)).astype(np.float32)
    mask = np.zeros((h, w), dtype=bool)
    mask[101, 57] = True  # a one-pixel positive click
    mask[10, 11] = True  # a one-pixel negative click
    seg = np.zeros_like(mask)
    seg[101, 57] = True
    img, xm, xs = resize_to_work(image, mask, seg, (128, 128))
    assert img.shape == xm.shape == xs.shape == (1, 1, 128, 128) and img.dtype == torch.float32
    assert xm[0, 0, 50, 28] == 1 and xs[0, 0, 50, 28] == 1  # the click survives the 2x reduction
    assert xm[0, 0, 5, 5] == 1 and xs[0, 0, 5, 5] == 0
    assert xm.sum() == 2 and xs.sum() == 1
    # majority label among the decided pixels of a working pixel
    seg2 = np.zeros_like(mask)
    mask2 = np.zeros_like(mask)
    mask2[0:2, 0:2] = True
    seg2[0, 0:2] = True  # 2 of 4 foreground: a tie goes to foreground
    mask2[2:4, 0:2] = True
    seg2[2, 0] = True  # 1 of 4: background
    _, xm2, xs2 = resize_to_work(image, mask2, seg2, (128, 128))
    assert xs2[0, 0, 0, 0] == 1 and xs2[0, 0, 1, 0] == 0 and (xs2 <= xm2).all()
    # enlarging: every working pixel comes from the input pixel it lies in
    small = np.zeros((32, 32), dtype=bool)
    small[3, 4] = True
    _, xm3, xs3 = resize_to_work(np.zeros((32, 32), np.float32), small, small, (128, 128))
    assert xm3.sum() == 16 and xm3[0, 0, 12:16, 16:20].all() and torch.equal(xm3, xs3)
    # the working size itself is passed through
    img4, xm4, _ = resize_to_work(image[:128, :128], mask[:128, :128], seg[:128, :128], (128, 128))
    assert torch.equal(img4[0, 0], torch.from_numpy(image[:128, :128]))


@pytest.mark.parametrize(
    "mutate, arg",
    [
        (lambda i, m, s: (i[None], m, s), "image"),
        (lambda i, m, s: (np.where(m, np.nan, i), m, s), "image"),
        (lambda i, m, s: (i, m.astype(np.uint8), s), "mask"),
        (lambda i, m, s: (i, m[:, :-1], s), "mask"),
        (lambda i, m, s: (i, m, s | ~m), "seg"),
    ],
)
def test_bad_input_raises_naming_argument(mutate, arg):
    image, mask, seg = mutate(*_case(64, 64, density="band"))
    with pytest.raises(ValueError, match=f"^{arg}"):
        MODELS["medical"].propose(image, mask, seg, k=1, seed=0)


def test_bad_k_and_seed_raise():
    image, mask, seg = _case(64, 64)
    with pytest.raises(ValueError, match="^k"):
        MODELS["medical"].propose(image, mask, seg, k=0)
    with pytest.raises(ValueError, match="^seed"):
        MODELS["medical"].propose(image, mask, seg, k=1, seed=-1)


# --- checkpoints and the registry ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["medical", "medical-unet-complete"])
def test_checkpoint_roundtrip(tmp_path, name):
    net = MODELS[name].net
    spec = {"dataset": "medical", "tasks": ["ACDC", "BTCV", "HipXRay", "STARE"]}
    path = save_checkpoint(tmp_path / "m.pt", net, spec, {"steps": 0}, {"heldout_dice_z0": 0.5})
    loaded = probseg.load(path)
    assert loaded.config == CONFIGS[name] and not loaded.net.training
    assert loaded.trained_tasks == ["ACDC", "BTCV", "HipXRay", "STARE"]
    image, mask, seg = _case(200, 173, density="band")
    for kwargs in ({"k": 4, "seed": 2}, {"k": 1, "mean": True}):
        a = MODELS[name].propose(image, mask, seg, return_scores=True, **kwargs)
        b = loaded.propose(image, mask, seg, return_scores=True, **kwargs)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_registry_lists_medical_only_when_installed(tmp_path, monkeypatch):
    from probseg import registry

    for name in MEDICAL:
        assert registry.REGISTRY[name] == f"{name}.pt"
    monkeypatch.setattr(registry, "CHECKPOINT_DIR", tmp_path)
    assert registry.available() == []
    with pytest.raises(ValueError, match="checkpoint.*not installed"):
        probseg.load("medical")
    save_checkpoint(tmp_path / "medical.pt", MODELS["medical"].net, {"tasks": ["ACDC"]}, {}, {})
    registry.write_manifest()  # a file installed by name is loaded only when its SHA-256 is recorded
    assert registry.available() == ["medical"]
    assert probseg.load("medical").config.name == "medical"


# --- synthetic images ------------------------------------------------------------------------------


def test_synth_examples():
    spec = SynthSpec()
    for j in range(12):
        ex = make_synth_example(np.random.default_rng([4, j]), spec)
        assert ex.image.shape == (128, 128) and ex.image.dtype == np.float32
        assert 0.0 <= ex.image.min() and ex.image.max() <= 1.0 and ex.image.std() > 0.01
        assert ex.labels.shape == (128, 128) and ex.labels.dtype == np.int64
        assert ex.target.dtype == bool and ex.target.sum() >= spec.min_target_frac * ex.target.size
        assert ex.objects.dtype == bool and ex.objects.ndim == 3 and ex.objects.shape[1:] == (128, 128)
        assert len(ex.objects) >= 1 and (ex.objects.sum(axis=(1, 2)) >= spec.min_object_px).all()
        # objects do not overlap, and each lies in one label
        assert ex.objects.sum(0).max() <= 1
        for obj in ex.objects[:5]:
            assert len(np.unique(ex.labels[obj])) == 1
        # a target is made of whole labels or of one connected piece
        labs = np.unique(ex.labels[ex.target])
        whole = np.array_equal(np.isin(ex.labels, labs), ex.target)
        piece = any(np.array_equal(o, ex.target) for o in ex.objects)
        assert whole or piece
    # deterministic per generator state
    a = make_synth_example(np.random.default_rng(11))
    b = make_synth_example(np.random.default_rng(11))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.target, b.target)
    assert not np.array_equal(a.image, make_synth_example(np.random.default_rng(12)).image)
    small = make_synth_example(np.random.default_rng(0), SynthSpec(size=48))
    assert small.image.shape == (48, 48)


def test_label_objects():
    labels = np.array([[0, 0, 1, 1], [2, 2, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])
    objs = label_objects(labels)
    assert objs.shape == (5, 4, 4)  # labels 0 and 2 in two 4-connected pieces each, label 1 in one
    assert objs.sum(0).max() == 1 and objs.sum() == labels.size
    assert len(label_objects(labels, min_px=4)) == 3
    assert len(label_objects(labels, min_px=100)) == 3  # no piece big enough: the labels themselves


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"size": 8}, "size"),
        ({"n_labels": (1, 4)}, "n_labels"),
        ({"blur": (2.0, 1.0)}, "blur"),
        ({"gamma": (0.0, 1.0)}, "gamma"),
        ({"target_kinds": {"organ": 1.0}}, "target_kinds"),
        ({"min_target_frac": 1.0}, "min_target_frac"),
        ({"scales": ()}, "scales"),
    ],
)
def test_synth_spec_bad_values_raise(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        SynthSpec(**kwargs)


def test_specs_dict_roundtrip():
    s = SynthSpec()
    assert SynthSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    a = AugmentSpec()
    assert AugmentSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    with pytest.raises(ValueError, match="^zoom"):
        AugmentSpec(zoom=(0.0, 1.0))


# --- real examples and the pool --------------------------------------------------------------------


def _fake_examples(task: str = "T1", n: int = 3, size: int = 96) -> list[Example]:
    out = []
    for i in range(n):
        img, _, _ = _case(size, size + 8, seed=i)
        img = (img - img.min()) / (img.max() - img.min())
        yy, xx = np.mgrid[0:size, 0 : size + 8]
        target = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 5) ** 2
        out.append(Example(task=task, example_id=f"{task}/s/{i}", image=img.astype(np.float32), target=target))
    return out


def test_augment_example():
    ex = _fake_examples(n=1)[0]
    for j in range(10):
        img, tgt = augment_example(np.random.default_rng(j), ex.image, ex.target, 64)
        assert img.shape == tgt.shape == (64, 64) and img.dtype == np.float32 and tgt.dtype == bool
        assert 0 <= img.min() and img.max() <= 1 and tgt.any()
    a = augment_example(np.random.default_rng(1), ex.image, ex.target)
    b = augment_example(np.random.default_rng(1), ex.image, ex.target)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # a one-pixel target is never lost
    tiny = np.zeros_like(ex.target)
    tiny[40, 40] = True
    for j in range(5):
        assert augment_example(np.random.default_rng(j), ex.image, tiny, 32)[1].any()


def _check_pool(pool: torch.Tensor, n: int, size: int) -> None:
    assert pool.shape == (n, 5, size, size) and pool.dtype == torch.float32
    image, x_m, x_s, y_m, y_s = (pool[:, c] for c in range(5))
    assert image.min() >= 0 and image.max() <= 1
    for t in (x_m, x_s, y_m, y_s):
        assert set(t.unique().tolist()) <= {0.0, 1.0}
    assert (x_m <= y_m).all()  # y_m ⊇ x_m
    assert (x_s <= x_m).all() and (y_s <= y_m).all()
    assert torch.equal(y_s * x_m, x_s)  # y_s agrees with x_s on x_m
    assert (y_s.flatten(1).sum(1) > 0).float().mean() > 0.3  # targets are mostly found


def test_pool_deterministic_nested_and_mixed():
    exs = _fake_examples("T1") + _fake_examples("T2", n=1)
    spec = PairSpec()
    pool = build_medical_pool(12, seed=5, real_fraction=0.5, pair_spec=spec, size=64, examples=exs)
    _check_pool(pool, 12, 64)
    # pair j depends only on (seed, j): a smaller pool is a prefix
    assert torch.equal(build_medical_pool(5, seed=5, real_fraction=0.5, pair_spec=spec, size=64, examples=exs), pool[:5])
    assert not torch.equal(build_medical_pool(5, seed=6, real_fraction=0.5, pair_spec=spec, size=64, examples=exs), pool[:5])
    # uint8 storage holds the same pairs
    small = build_medical_pool(12, seed=5, real_fraction=0.5, pair_spec=spec, size=64, examples=exs, dtype=torch.uint8)
    assert small.dtype == torch.uint8
    back = pool_batch_to_float(small)
    assert torch.equal(back[:, 1:], pool[:, 1:]) and (back[:, 0] - pool[:, 0]).abs().max() <= 0.5 / 255 + 1e-6
    # all synthetic, with no folder; all real
    _check_pool(build_medical_pool(6, seed=1, real_fraction=0.0, size=64, medscribble_path="/no/such/folder"), 6, 64)
    _check_pool(build_medical_pool(6, seed=1, real_fraction=1.0, size=64, examples=exs), 6, 64)
    complete = build_medical_pool(4, seed=5, real_fraction=0.5, pair_spec=PairSpec(mode="complete"), size=64, examples=exs)
    assert (complete[:, 3] == 1).all()


@pytest.mark.parametrize(
    "kwargs, field",
    [({"n_pairs": 0}, "n_pairs"), ({"real_fraction": 1.5}, "real_fraction"), ({"dtype": torch.int32}, "dtype"), ({"size": 60}, "size")],
)
def test_pool_bad_arguments(kwargs, field):
    args = {"n_pairs": 2, "seed": 0, "real_fraction": 0.0, "size": 64, **kwargs}
    with pytest.raises(ValueError, match=f"^{field}"):
        build_medical_pool(**args)


@pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason=f"{MEDSCRIBBLE} not present")
def test_pool_from_medscribble_training_tasks():
    pool = build_medical_pool(6, seed=0, real_fraction=1.0, medscribble_path=MEDSCRIBBLE)
    _check_pool(pool, 6, 128)


# --- training and the held-out check ---------------------------------------------------------------


def _fake_medscribble(root: Path) -> Path:
    """Two tasks (T1 to train on, T2 held out), two 64 x 64 examples each, MedScribble's layout."""
    for task in ("T1", "T2"):
        for i, ex in enumerate(_fake_examples(task, n=2, size=64)):
            d = root / task / "sub" / f"ex{i}"
            d.mkdir(parents=True)
            np.save(d / "img.npy", ex.image)
            np.save(d / "seg.npy", ex.target.astype(np.float32))
            scribble = np.zeros((2, *ex.image.shape), np.float32)
            scribble[0, 30:33, 28:36] = 1.0
            scribble[1, 2:5, 2:20] = 1.0
            np.save(d / "scribble_0.npy", scribble)
    return root


def _click_start(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The held-out check's start: the simulator's click start at the default brush radius."""
    start = interaction.click_start(target, interaction.default_brush_radius(target.shape[0]))
    return start.mask, start.seg


def test_click_start_and_heldout_metrics():
    exs = _fake_examples("T2", n=2, size=64)
    mask, seg = _click_start(exs[0].target)
    assert mask.any() and seg.any() and (seg <= mask).all() and (seg == (mask & exs[0].target)).all()
    metrics = evaluate_heldout(MODELS["medical"], exs, k=3, seed=0)
    assert metrics["heldout_n_images"] == 2 and metrics["heldout_tasks"] == ["T2"] and metrics["heldout_k"] == 3
    for key in ("heldout_start_dice", "heldout_dice_z0", "heldout_dice_best_of_k", "heldout_added_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["heldout_added_px"] >= 0 and set(metrics["heldout_dice_z0_by_task"]) == {"T2"}
    complete = evaluate_heldout(MODELS["medical-unet-complete"], exs, k=2)
    assert complete["heldout_added_px"] == 64 * 72 - (_click_start(exs[0].target)[0].sum() + _click_start(exs[1].target)[0].sum()) / 2


def _mean_loss(net, batch: torch.Tensor) -> float:
    with torch.no_grad():
        vals = []
        for s in range(3):
            torch.manual_seed(1000 + s)
            vals.append(_step_loss(net, batch)["loss"].item())
    return float(np.mean(vals))


def test_short_medical_training_learns_and_writes_a_checkpoint(tmp_path):
    root = _fake_medscribble(tmp_path / "ms")
    settings = TrainSettings(
        config="medical", dataset="medical", steps=20, batch_size=4, n_pairs=16, eval_images=2, threads=1,
        medscribble=str(root), train_tasks=["T1"], real_fraction=0.5, lr=3e-3,
    )
    torch.manual_seed(settings.seed)
    before_net = build_network("medical")  # train() seeds the same way: its starting weights
    out = tmp_path / "run" / "m.pt"
    model, metrics = train(settings, out, progress=False, command="probseg-train --dataset medical")
    # its own training pairs: the loss went down
    examples = load_medscribble(root, tasks=["T1"])
    pool = pool_batch_to_float(
        build_medical_pool(16, settings.seed, ["T1"], root, 0.5, PairSpec(mode="partial"), examples=examples, dtype=torch.uint8)
    )
    assert _mean_loss(model.net.train(), pool) < _mean_loss(before_net.train(), pool) - 0.05
    model.net.eval()
    assert np.isfinite(metrics["final_loss"])
    assert metrics["heldout_n_images"] == 2 and metrics["heldout_tasks"] == ["T2"]
    loaded = probseg.load(out)
    assert loaded.config == CONFIGS["medical"]
    assert loaded.trained_tasks == ["T1"]
    spec = loaded.meta["data_spec"]
    assert spec["dataset"] == "medical" and spec["heldout_tasks"] == ["T2"] and spec["work_size"] == 128
    assert spec["real_fraction"] == 0.5 and spec["synth_spec"]["size"] == 128 and spec["train_examples"]
    assert json.loads(out.with_suffix(".json").read_text())["settings"]["train_tasks"] == ["T1"]
    image, mask, seg = _case(256, 256, density="band")
    _check_contract(*loaded.propose(image, mask, seg, k=8, seed=0), mask, seg, 8)


def test_train_cli_medical(tmp_path, capsys):
    root = _fake_medscribble(tmp_path / "ms")
    out = tmp_path / "m.pt"
    argv = [
        "--config", "medical-unet-complete", "--dataset", "medical", "--steps", "2", "--batch-size", "2",
        "--n-pairs", "4", "--eval-images", "0", "--threads", "1", "--no-progress", "--medscribble", str(root),
        "--train-tasks", "T1", "--real-fraction", "0.25", "--out", str(out),
    ]
    assert train_main(argv) == 0
    loaded = probseg.load(out)
    assert loaded.trained_tasks == ["T1"] and loaded.meta["data_spec"]["real_fraction"] == 0.25
    assert loaded.meta["data_spec"]["pair_spec"]["mode"] == "complete"
    assert train_main([*argv[:-2], "--train-tasks", "T1,NOPE", "--out", str(tmp_path / "b.pt")]) == 2
    assert "train_tasks" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"config": "medical"}, "dataset"),  # a medical configuration on disks
        ({"dataset": "medical", "config": "wide"}, "config"),  # disks configuration on medical data
        ({"dataset": "medical", "config": "medical", "real_fraction": 1.5}, "real_fraction"),
        ({"dataset": "medical", "config": "medical", "train_tasks": []}, "train_tasks"),
        ({"dataset": "medical", "config": "medical", "train_tasks": ["A", "A"]}, "train_tasks"),
        ({"dataset": "medical", "config": "medical", "medscribble": "/no/such/folder"}, "medscribble"),
        ({"dataset": "medical", "config": "medical", "synth_spec": {"colour": 1}}, "synth_spec"),
    ],
)
def test_medical_settings_validate(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        TrainSettings(**kwargs).validate()


def test_medical_settings_need_tasks_in_the_folder(tmp_path):
    root = _fake_medscribble(tmp_path / "ms")
    base = {"dataset": "medical", "config": "medical", "medscribble": str(root)}
    with pytest.raises(ValueError, match="^train_tasks"):
        TrainSettings(**base, train_tasks=["ACDC"]).validate()
    with pytest.raises(ValueError, match="^eval_images"):
        TrainSettings(**base, train_tasks=["T1", "T2"]).validate()
    TrainSettings(**base, train_tasks=["T1", "T2"], eval_images=0).validate()
    # synthetic only, no evaluation: no folder needed
    TrainSettings(dataset="medical", config="medical", medscribble="/no/such", real_fraction=0.0, eval_images=0).validate()
