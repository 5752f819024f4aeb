"""Multi-head networks (issue 13, family (a)): the best-candidate loss against hand-computed values,
the heads and their score head, how ``propose`` orders and repeats them, and a short training run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import probseg
from probseg.losses import best_candidate_weights, hard_dice, multi_head_loss, per_sample_seg_loss
from probseg.model import CONFIGS, SSN_TRAIN_SAMPLES, ModelConfig, _ssn_sample, build_network
from probseg.predictor import ProbSeg
from probseg.train import TrainSettings, train


# --- the loss, by hand -------------------------------------------------------------------------------


def test_best_candidate_weights_winner_takes_all_with_spread() -> None:
    w = best_candidate_weights(torch.tensor([[0.2, 0.1, 0.5], [0.3, 0.3, 0.9]]), temperature=0.0, spread=0.3)
    # 0.7 on the lowest loss, 0.1 on every candidate; a tie goes to the first.
    torch.testing.assert_close(w, torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]]))


def test_best_candidate_weights_soft_minimum() -> None:
    # losses 0 and ln 2 at temperature 1: softmin weights 2/3 and 1/3.
    w = best_candidate_weights(torch.tensor([[0.0, float(np.log(2.0))]]), temperature=1.0, spread=0.0)
    torch.testing.assert_close(w, torch.tensor([[2 / 3, 1 / 3]]))
    assert not w.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"temperature": -1.0, "spread": 0.0}, "temperature"), ({"temperature": 0.0, "spread": 1.5}, "spread")],
)
def test_best_candidate_weights_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        best_candidate_weights(torch.zeros(1, 2), **kwargs)
    with pytest.raises(ValueError, match="losses"):
        best_candidate_weights(torch.zeros(3), 0.0, 0.0)


def test_multi_head_loss_by_hand() -> None:
    # One sample of two pixels, both to be decided; the first is foreground.
    y_m = torch.tensor([[[1.0, 1.0]]])
    y_s = torch.tensor([[[1.0, 0.0]]])
    x_m = torch.zeros(1, 1, 2)
    pred_m = torch.ones(1, 2, 1, 2)
    # head 0 is right (loss 0); head 1 swaps the labels: WDL = 1 - (0 + 1) / (1 + 1 + 1) = 2/3, DL = 0.
    pred_s = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    per = per_sample_seg_loss(y_m.expand(2, -1, -1), y_s.expand(2, -1, -1), x_m.expand(2, -1, -1), pred_m[0], pred_s[0])
    torch.testing.assert_close(per, torch.tensor([0.0, 2 / 3]))
    score = torch.tensor([[0.5, 0.5]])
    target = torch.tensor([[1.0, 0.0]])
    terms = multi_head_loss(y_m, y_s, x_m, pred_m, pred_s, score, target, temperature=0.0, spread=0.1)
    # weights 0.95 / 0.05: seg = 0.05 * 2/3; score MSE = (0.25 + 0.25) / 2.
    torch.testing.assert_close(terms["seg"], torch.tensor(0.05 * 2 / 3))
    torch.testing.assert_close(terms["score_mse"], torch.tensor(0.25))
    torch.testing.assert_close(terms["loss"], torch.tensor(0.05 * 2 / 3 + 0.25))
    torch.testing.assert_close(terms["best"], torch.tensor(0.0))
    with pytest.raises(ValueError, match="shapes"):
        multi_head_loss(y_m, y_s, x_m, pred_m, pred_s, score[:, :1], target)


def test_hard_dice() -> None:
    a = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool).view(1, 2, 2)
    b = torch.tensor([[1, 0, 1, 0]], dtype=torch.bool).view(1, 2, 2)
    torch.testing.assert_close(hard_dice(a, b), torch.tensor([0.5]))
    empty = torch.zeros(1, 2, 2, dtype=torch.bool)
    torch.testing.assert_close(hard_dice(empty, empty), torch.tensor([1.0]))


# --- the network -------------------------------------------------------------------------------------


def test_heads_need_a_deterministic_punet_or_wide_network() -> None:
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(name="x", arch="punet", latent_dim=4, heads=2, work_size=128)
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(name="x", arch="paper", latent_dim=1, heads=2)
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(name="x", arch="wide", latent_dim=0, heads=0)
    assert CONFIGS["medical-heads"].multi_head and not CONFIGS["medical-heads"].stochastic


@pytest.mark.parametrize(
    "name",
    ["heads", "heads-complete", "medical-heads", "medical-heads-complete", "ssn", "ssn-complete", "medical-ssn",
     "medical-ssn-complete"],
)
def test_every_candidate_respects_the_output_constraints(name: str) -> None:
    torch.manual_seed(0)
    net = build_network(name).eval()
    size = CONFIGS[name].work_size or 32
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(2, 1, size, size, generator=gen)
    x_m = (torch.rand(2, 1, size, size, generator=gen) > 0.7).float()
    x_s = x_m * (torch.rand(2, 1, size, size, generator=gen) > 0.5).float()
    with torch.no_grad():
        out = net(image, x_m, x_s, x_m, x_s)
    k = SSN_TRAIN_SAMPLES if CONFIGS[name].ssn else CONFIGS[name].heads
    assert out["pred_m"].shape == (2, k, size, size) and out["score"].shape == (2, k)
    assert ((out["score"] > 0) & (out["score"] < 1)).all()
    pm, ps = out["pred_m"], out["pred_s"]
    assert (pm >= x_m - 1e-6).all() and (ps <= pm + 1e-6).all()
    on = x_m.expand_as(pm).bool()
    assert torch.equal(ps[on], x_s.expand_as(ps)[on])
    if CONFIGS[name].mode == "complete":
        assert torch.equal(pm, torch.ones_like(pm))
    # decode gives one input's heads (an SSN's mean logits)
    with torch.no_grad():
        m1, s1 = net.decode(image[:1], x_m[:1], x_s[:1], None)
        if CONFIGS[name].ssn:
            mean_m, mean_s, _ = net.decode_candidates(image[:1], x_m[:1], x_s[:1], 1, mean=True)
            torch.testing.assert_close(m1, mean_m[0])
        else:
            torch.testing.assert_close(m1, pm[0])
    with pytest.raises(ValueError, match="z"):
        net.decode(image[:1], x_m[:1], x_s[:1], torch.zeros(1, 1, 4, 4))


def test_ssn_needs_a_deterministic_single_head_network() -> None:
    with pytest.raises(ValueError, match="ssn_rank"):
        ModelConfig(name="x", arch="wide", latent_dim=0, heads=2, ssn_rank=3)
    with pytest.raises(ValueError, match="ssn_rank"):
        ModelConfig(name="x", arch="wide", latent_dim=2, ssn_rank=3)
    with pytest.raises(ValueError, match="ssn_rank"):
        ModelConfig(name="x", arch="wide", latent_dim=0, ssn_rank=-1)
    cfg = CONFIGS["medical-ssn"]
    assert cfg.ssn and cfg.scored and cfg.sampled and not cfg.stochastic and cfg.out_channels == 2 * (2 + 10)


def test_ssn_samples_by_hand() -> None:
    # rank 1 on a 1 x 2 image: mean (0, 1) / (2, 3), log variance 0 / -20 (clamped to -10), factor (1, 1) / (0, 2)
    params = torch.tensor(
        [[[[0.0, 1.0]], [[2.0, 3.0]], [[0.0, 0.0]], [[-20.0, -20.0]], [[1.0, 1.0]], [[0.0, 2.0]]]]
    )  # (1, 6, 1, 2)
    gen = torch.Generator().manual_seed(4)
    got = _ssn_sample(params, 1, 3, gen, mean=False)
    gen = torch.Generator().manual_seed(4)
    eps_r = torch.randn((1, 3, 1), generator=gen)
    eps = torch.randn((1, 3, 2, 1, 2), generator=gen)
    mu = params[0, :2]
    factor = params[0, 4:6]
    scale = torch.stack([torch.ones(1, 2), torch.full((1, 2), float(np.exp(-5.0)))])
    want = torch.stack([mu + eps_r[0, i, 0] * factor + scale * eps[0, i] for i in range(3)])[None]
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(_ssn_sample(params, 1, 2, None, mean=True), mu[None, None].expand(1, 2, 2, 1, 2))


def test_ssn_propose_draws_seeded_samples() -> None:
    model = _untrained("medical-ssn")
    image, mask, seg = _state()
    a = model.propose(image, mask, seg, k=5, seed=1, return_scores=True)
    b = model.propose(image, mask, seg, k=5, seed=1, return_scores=True)
    c = model.propose(image, mask, seg, k=5, seed=2, return_scores=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    assert a[0].shape == (5, 90, 110) and ((a[2] > 0) & (a[2] < 1)).all()
    assert np.all(a[0] | ~mask[None]) and np.all(a[1] <= a[0]) and np.all(a[1][:, mask] == seg[mask])
    mean = model.propose(image, mask, seg, k=3, mean=True)
    assert all(np.array_equal(mean[1][i], mean[1][0]) for i in range(3))
    assert model.is_multi and model.is_stochastic


def _untrained(name: str = "medical-heads") -> ProbSeg:
    torch.manual_seed(3)
    return ProbSeg(build_network(name), name=name)


def _state(h: int = 90, w: int = 110) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(h, w))
    mask = np.zeros((h, w), bool)
    mask[30:40, 40:60] = True
    seg = mask.copy()
    seg[30:35] = False
    return image, mask, seg


def test_propose_orders_heads_by_score_and_repeats_them_beyond_the_heads() -> None:
    model = _untrained()
    image, mask, seg = _state()
    heads = model.config.heads
    masks, segs, scores = model.propose(image, mask, seg, k=heads, return_scores=True)
    assert masks.shape == (heads, 90, 110) and scores.dtype == np.float64
    assert np.all(np.diff(scores) <= 0)  # highest first
    assert np.all(masks | ~mask[None]) and np.all(segs <= masks) and np.all(segs[:, mask] == seg[mask])
    top3 = model.propose(image, mask, seg, k=3, return_scores=True)
    assert np.array_equal(top3[0], masks[:3]) and np.array_equal(top3[2], scores[:3])
    many = model.propose(image, mask, seg, k=heads + 3, return_scores=True)
    assert np.array_equal(many[1][heads:], segs[:3]) and np.array_equal(many[2][:heads], scores)
    mean = model.propose(image, mask, seg, k=4, mean=True, return_scores=True)
    assert all(np.array_equal(mean[1][i], segs[0]) for i in range(4))
    # no draw: the seed changes nothing
    again = model.propose(image, mask, seg, k=heads, seed=123, return_scores=True)
    assert np.array_equal(again[1], segs) and np.array_equal(again[2], scores)
    assert model.is_multi and not model.is_stochastic


def test_disk_heads_model_proposes_at_native_size() -> None:
    model = _untrained("heads")
    image, mask, seg = _state(61, 64)
    masks, segs, scores = model.propose(image, mask, seg, k=8, return_scores=True)
    assert masks.shape == (8, 61, 64) and np.all(np.diff(scores) <= 0)


def test_multi_head_configs_need_the_interaction_loop() -> None:
    with pytest.raises(ValueError, match="interaction-loop"):
        TrainSettings(config="heads", steps=1, eval_images=0).validate()
    with pytest.raises(ValueError, match="deterministic"):
        TrainSettings(config="wide", steps=1, eval_images=0, interaction_loop=True).validate()
    with pytest.raises(ValueError, match="loop_spec"):
        TrainSettings(config="heads", steps=1, eval_images=0, interaction_loop=True, loop_spec={"bogus": 1}).validate()


# --- a short training run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_heads(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProbSeg, dict]:
    out = tmp_path_factory.mktemp("heads") / "heads.pt"
    settings = TrainSettings(
        config="heads", interaction_loop=True, steps=40, batch_size=8, n_pairs=200, n_train_images=50,
        eval_images=20, threads=1,
    )
    model, metrics = train(settings, out, progress=False, command="probseg-train --config heads --interaction-loop")
    return probseg.load(out), metrics


def test_trained_heads_checkpoint_reloads_and_its_candidates_differ(trained_heads: tuple[ProbSeg, dict]) -> None:
    model, metrics = trained_heads
    assert model.config == CONFIGS["heads"]
    assert model.meta["data_spec"]["interaction_loop"]["max_steps"] == 3
    assert np.isfinite(metrics["final_loss"]) and "final_score_mse" in metrics
    from probseg.evaluate import heldout_cases

    for case in heldout_cases(5, seed=7):
        masks, segs, scores = model.propose(case.disk.image, case.x_m, case.x_s, k=8, return_scores=True)
        distinct = {segs[i].tobytes() + masks[i].tobytes() for i in range(8)}
        assert len(distinct) >= 2, "a trained multi-head model's candidates must differ"
    # the best of 8 heads is at least as good as the top-scored one, by construction, on every image
    assert metrics["target_dice_at_8"] >= metrics["target_dice_at_1"]


@pytest.mark.parametrize("config", ["heads-complete", "ssn"])
def test_loop_training_is_reproducible_from_seed(config: str) -> None:
    s = TrainSettings(
        config=config, interaction_loop=True, steps=2, batch_size=4, n_pairs=8, n_train_images=10,
        eval_images=0, threads=1,
    )
    a, _ = train(s, progress=False)
    b, _ = train(s, progress=False)
    for key, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[key])


def test_a_replaced_head_count_is_recorded_in_the_checkpoint(tmp_path) -> None:
    cfg = replace(CONFIGS["heads"], heads=3)
    net = build_network(cfg)
    from probseg.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "h3.pt", net, {"tasks": ["disks"]}, {}, {})
    loaded = probseg.load(tmp_path / "h3.pt")
    assert loaded.config.heads == 3
    image, mask, seg = _state(32, 32)
    assert loaded.propose(image, mask, seg, k=5)[0].shape == (5, 32, 32)


@pytest.mark.parametrize("name", ["medical-heads", "medical-ssn"])
def test_propose_batch_equals_propose_for_scored_models(name: str) -> None:
    model = _untrained(name)
    a = _state(90, 110)
    b = _state(64, 64)
    batch = model.propose_batch([a[0], b[0]], [a[1], b[1]], [a[2], b[2]], k=5, seeds=[1, 2], return_scores=True)
    for inputs, seed, got in zip((a, b), (1, 2), batch):
        want = model.propose(*inputs, k=5, seed=seed, return_scores=True)
        assert all(np.array_equal(x, y) for x, y in zip(got, want))


def test_the_score_stage_trains_the_score_head_alone_after_the_main_steps(tmp_path) -> None:
    common = dict(config="heads", interaction_loop=True, steps=6, batch_size=4, n_pairs=40, n_train_images=20,
                  eval_images=0, threads=1)
    plain, _ = train(TrainSettings(**common), None, progress=False)
    staged, metrics = train(TrainSettings(**common, score_steps=5), tmp_path / "s.pt", progress=False)
    before, after = plain.net.state_dict(), staged.net.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    # Only the score head moved: the candidates are those of the model without the stage, bit for bit.
    assert changed and all(k.startswith("score_head.") for k in changed)
    assert np.isfinite(metrics["final_score_stage_mse"])
    assert all(p.requires_grad for p in staged.net.parameters())  # nothing left frozen for later use
    history = probseg.load(tmp_path / "s.pt").meta["train"]["history"]
    assert [h.get("stage") for h in history][-1] == "score" and history[-1]["step"] == 6 + 5 - 1
    with pytest.raises(ValueError, match="^score_steps: configuration 'unet-complete' has no score head"):
        TrainSettings(config="unet-complete", interaction_loop=True, score_steps=3).validate()
    with pytest.raises(ValueError, match="^score_steps: must be an integer >= 0"):
        TrainSettings(**common, score_steps=-1).validate()


# --- the score head that ranks (fine head, listwise loss, refit) -------------------------------------


def test_score_rank_loss_by_hand() -> None:
    from probseg.losses import score_rank_loss

    # Scores 0.5 and 0.5 (log-odds 0 and 0) predict (1/2, 1/2). Target Dice 1 and 0 at temperature
    # t = 1 / ln 2 give softmax(dice / t) = (2/3, 1/3); the cross-entropy is then ln 2.
    t = float(1 / np.log(2.0))
    loss = score_rank_loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), temperature=t)
    torch.testing.assert_close(loss, torch.tensor(float(np.log(2.0))))
    # Log-odds ln 2 and 0 (scores 2/3 and 1/2) match that target: cross-entropy = its entropy.
    loss = score_rank_loss(torch.tensor([[2 / 3, 0.5]]), torch.tensor([[1.0, 0.0]]), temperature=t)
    entropy = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    torch.testing.assert_close(loss, torch.tensor(float(entropy)))
    # The gradient pushes the better candidate's score up, the worse one's down.
    score = torch.tensor([[0.5, 0.5]], requires_grad=True)
    score_rank_loss(score, torch.tensor([[0.9, 0.1]])).backward()
    assert score.grad[0, 0] < 0 < score.grad[0, 1]
    with pytest.raises(ValueError, match="temperature"):
        score_rank_loss(torch.full((1, 2), 0.5), torch.zeros(1, 2), temperature=0.0)
    with pytest.raises(ValueError, match="score, score_target"):
        score_rank_loss(torch.full((1, 2), 0.5), torch.zeros(1, 3))


def test_multi_head_loss_adds_the_weighted_ranking_term() -> None:
    from probseg.losses import score_rank_loss

    y_m = torch.ones(1, 2, 2)
    y_s = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    x_m = torch.zeros(1, 2, 2)
    pred_m = torch.ones(1, 3, 2, 2)
    pred_s = torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    score = torch.tensor([[0.2, 0.5, 0.7]])
    target = torch.tensor([[0.9, 0.3, 0.1]])
    plain = multi_head_loss(y_m, y_s, x_m, pred_m, pred_s, score, target)
    ranked = multi_head_loss(y_m, y_s, x_m, pred_m, pred_s, score, target, score_rank_weight=0.5)
    assert "score_rank" not in plain
    torch.testing.assert_close(ranked["score_rank"], score_rank_loss(score, target))
    torch.testing.assert_close(ranked["loss"], plain["loss"] + 0.5 * ranked["score_rank"])


@pytest.mark.parametrize("name", ["heads", "medical-heads-complete", "medical-ssn"])
def test_the_fine_score_head_scores_every_candidate(name: str) -> None:
    config = replace(CONFIGS[name], score_head="fine")
    torch.manual_seed(0)
    net = build_network(config).eval()
    size = config.work_size or 40  # 40: a disk-sized input that is a multiple of 8 but not of 32
    image = torch.rand(2, 1, size, size)
    x_m = torch.zeros(2, 1, size, size)
    x_m[:, :, 5:9, 5:9] = 1
    x_s = x_m.clone()
    pred_m, pred_s, score = net.decode_candidates(image, x_m, x_s, 4)
    assert score.shape == pred_m.shape[:2] and bool(((score > 0) & (score < 1)).all())
    # It reads the candidates: change one candidate's input map and its score moves.
    coarse = net.decoder.coarse(net.decoder.features(torch.cat([image, x_m, x_s], 1)))
    other = pred_s.clone()
    other[:, 0] = 1 - other[:, 0]
    moved = net.score_head(coarse, pred_m, other, x_m, x_s, image)
    assert not torch.allclose(moved[:, 0], score[:, 0])
    with pytest.raises(ValueError, match="^image"):
        net.score_head(coarse, pred_m, pred_s, x_m, x_s)
    with pytest.raises(ValueError, match="score_head"):
        replace(CONFIGS[name], score_head="sharp")


def test_refit_score_head_keeps_the_candidates_and_records_its_base(tmp_path) -> None:
    from probseg.train import refit_score_head

    common = dict(config="heads", interaction_loop=True, steps=4, batch_size=4, n_pairs=40, n_train_images=20,
                  eval_images=0, threads=1)
    base, _ = train(TrainSettings(**common), tmp_path / "base.pt", progress=False, command="probseg-train base")
    model, metrics = refit_score_head(
        tmp_path / "base.pt", tmp_path / "refit.pt", score_steps=3, score_head="fine", score_rank_weight=1.0,
        progress=False, command="probseg-train --refit-score base.pt",
    )
    loaded = probseg.load(tmp_path / "refit.pt")
    assert loaded.net.config.score_head == "fine" and base.net.config.score_head == "coarse"
    old, new = base.net.state_dict(), loaded.net.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if not k.startswith("score_head."))
    image, mask, seg = _state(64, 64)
    (m0, s0, _), (m1, s1, sc1) = (m.propose(image, mask, seg, k=8, seed=0, return_scores=True) for m in (base, loaded))
    # The same 8 candidates (perhaps in another order: propose sorts by score).
    key = lambda masks, segs: sorted(bytes(np.packbits(a)) + bytes(np.packbits(b)) for a, b in zip(masks, segs))  # noqa: E731
    assert key(m0, s0) == key(m1, s1)
    assert np.isfinite(metrics["final_score_stage_mse"]) and np.isfinite(metrics["final_score_stage_rank"])
    record = loaded.meta["train"]
    assert record["base_command"] == "probseg-train base" and len(record["base_sha256"]) == 64
    assert record["settings"]["loop_spec"]["score_rank_weight"] == 1.0
    n_base = len(base.meta["train"]["history"])
    stages = [h.get("stage") for h in record["history"]]
    assert stages[:n_base] == [h.get("stage") for h in base.meta["train"]["history"]]
    assert stages[n_base:] and set(stages[n_base:]) == {"refit"}
    # The same refit again gives the same weights (the fresh head and the batches come from the seed).
    again, _ = refit_score_head(tmp_path / "base.pt", None, score_steps=3, score_head="fine", score_rank_weight=1.0,
                                progress=False)
    assert all(torch.equal(v, again.net.state_dict()[k]) for k, v in new.items())
    with pytest.raises(ValueError, match="^score_steps"):
        refit_score_head(tmp_path / "base.pt", None, score_steps=0)
    unet, _ = train(TrainSettings(**{**common, "config": "unet-complete"}), tmp_path / "unet.pt", progress=False)
    with pytest.raises(ValueError, match="^base: .* no score head"):
        refit_score_head(tmp_path / "unet.pt", None, score_steps=2)


def test_probseg_train_refit_score_cli(tmp_path, capsys) -> None:
    from probseg.train_cli import main

    common = dict(config="heads", interaction_loop=True, steps=3, batch_size=4, n_pairs=40, n_train_images=20,
                  eval_images=0, threads=1)
    train(TrainSettings(**common), tmp_path / "base.pt", progress=False)
    assert main(["--refit-score", str(tmp_path / "base.pt"), "--score-steps", "2", "--score-head", "fine",
                 "--score-rank-weight", "0.5", "--no-progress", "--out", str(tmp_path / "r.pt")]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["command"].startswith("probseg-train --refit-score") and record["config"]["score_head"] == "fine"
    assert main(["--refit-score", str(tmp_path / "missing.pt"), "--score-steps", "2", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--refit-score: no such checkpoint" in capsys.readouterr().err
    assert main(["--refit-score", str(tmp_path / "base.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "--score-steps" in capsys.readouterr().err
    # An option that describes a training run is refused, not silently ignored.
    assert main(["--refit-score", str(tmp_path / "base.pt"), "--score-steps", "2", "--steps", "50",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "--steps: not read with --refit-score" in capsys.readouterr().err
