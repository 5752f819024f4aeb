"""``unet-tta``: K candidates from the deterministic U-Net under test-time augmentation, the diversity
control of the 2x2 design (a multi-candidate arm that no training made diverse)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from probseg.model import build_network
from probseg.predictor import ProbSeg
from simulator.corrections import click_start
from simulator.methods import ProbSegMethod, TTAMethod, make_method
from simulator.metrics import dice
from simulator.runner import RunSettings, run
from simulator.session import SessionConfig

MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"


def _untrained(config: str, seed: int = 0) -> ProbSeg:
    torch.manual_seed(seed)  # an untrained network's output changes under any transform: a diverse fixture
    return ProbSeg(build_network(config), name=f"untrained-{config}")


def _fixture(h: int = 24, w: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = np.zeros((h, w), dtype=bool)
    target[5:15, 6:17] = True
    image = target.astype(np.float32) + rng.normal(0, 0.2, (h, w)).astype(np.float32)
    start = click_start(target, 1)
    return image, target, start.mask, start.seg


def test_candidate_0_is_the_model_and_every_candidate_keeps_the_input() -> None:
    image, _, mask, seg = _fixture()
    net = _untrained("unet-complete")
    tta = TTAMethod(ProbSegMethod(net))
    masks, segs, scores = tta.propose(image, mask, seg, 8, np.random.default_rng(0))
    plain_m, plain_s, _ = ProbSegMethod(net).propose(image, mask, seg, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(segs[0], plain_s[0])
    assert masks.all()  # complete: every pixel decided
    assert (segs[:, mask] == seg[mask]).all()  # the annotator's input survives every transform exactly
    assert len({s.tobytes() for s in segs}) > 1  # the untrained net is not equivariant: candidates differ
    assert scores.shape == (8,) and np.all((scores >= 0) & (scores <= 1))


def test_scores_are_the_dice_against_the_majority() -> None:
    image, _, mask, seg = _fixture()
    tta = TTAMethod(ProbSegMethod(_untrained("unet-complete", seed=3)))
    _, segs, scores = tta.propose(image, mask, seg, 5, np.random.default_rng(1))
    majority = segs.sum(axis=0) >= 3  # 2 x votes >= 5
    np.testing.assert_allclose(scores, [dice(s, majority) for s in segs])
    _, _, one = tta.propose(image, mask, seg, 1, np.random.default_rng(1))
    assert one.tolist() == [1.0]


def test_candidates_follow_the_seed_and_do_not_depend_on_k() -> None:
    image, _, mask, seg = _fixture(24, 30)  # not square: the 4 shape-keeping symmetries
    tta = TTAMethod(ProbSegMethod(_untrained("unet-complete")))
    _, a, _ = tta.propose(image, mask, seg, 6, np.random.default_rng(7))
    _, b, _ = tta.propose(image, mask, seg, 6, np.random.default_rng(7))
    _, c, _ = tta.propose(image, mask, seg, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:3], c)


def test_bad_settings_and_a_stochastic_model_are_refused() -> None:
    with pytest.raises(ValueError, match="^gamma_sd: "):
        TTAMethod(ProbSegMethod(_untrained("unet-complete")), gamma_sd=-1)
    with pytest.raises(ValueError, match="^model: "):
        TTAMethod("unet-complete")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^beta: not a setting of method 'unet-tta'"):
        make_method("unet-tta", beta=1.0)
    image, _, mask, seg = _fixture()
    with pytest.raises(ValueError, match="^method: 'unet-tta' wraps a deterministic model"):
        TTAMethod(ProbSegMethod(_untrained("paper-complete"))).propose(image, mask, seg, 2, np.random.default_rng(0))


def test_unet_tta_runs_end_to_end_and_its_scores_rank(tmp_path: Path) -> None:
    m = make_method("unet-tta")
    assert (m.name, m.kind, m.multi) == ("unet-tta", "complete", True)
    _, sessions, summary = run(RunSettings(method="unet-tta", policy="model-ranked", n_sessions=3,
                                           session=SessionConfig(k=4, max_iters=4)),
                               out=tmp_path / "r", workers=0, progress=False)
    assert len(sessions) == 3 and summary["method"] == "unet-tta"


@pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")
def test_unet_tta_candidates_differ_on_a_real_image() -> None:
    from simulator.datasets import make_dataset

    case = make_dataset(f"medscribble:{MEDSCRIBBLE}?tasks=CAMUS", None, start="human").case(0, 0)
    pos, neg = case.human_scribbles
    tta = make_method("unet-tta", checkpoint="medical-unet-complete")
    _, segs, _ = tta.propose(case.image, pos | neg, pos.copy(), 8, np.random.default_rng(1))
    dices = [dice(s, case.target) for s in segs]
    assert len({s.tobytes() for s in segs}) == 8
    assert max(dices) - min(dices) > 0.01


def test_a_checked_base_is_accepted() -> None:
    tta = TTAMethod(make_method("unet-complete"))
    assert isinstance(tta.base, ProbSegMethod)
