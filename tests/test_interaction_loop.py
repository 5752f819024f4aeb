"""Training in the interaction loop: the trainer's simulated sessions feed each model kind exactly what
the simulator feeds it, the oracle's choice is the simulator's, and the loop's loss trains."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from probseg.choice import best_of_k
from probseg.data.partials import PairSpec
from probseg.interaction import default_brush_radius
from probseg.interaction_loop import LoopSpec, advance, loop_loss, start_state
from probseg.model import CONFIGS, build_network
from simulator.policies import BestOfK
from simulator.session import SessionConfig, run_session


class ThresholdGrower:
    """A deterministic stand-in model: candidate i decides the input's surroundings up to 3 (i + 1)
    pixels away (everything for a complete model) and calls foreground what lies above threshold i."""

    thresholds = (0.35, 0.5, 0.65)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"grower-{kind}"

    @property
    def multi(self) -> bool:
        return True

    def propose(self, image, mask, seg, k, rng):
        masks, segs = [], []
        for i in range(k):
            thr = self.thresholds[i % len(self.thresholds)]
            if self.kind == "complete":
                m = np.ones_like(mask)
            else:
                m = mask | ndimage.binary_dilation(mask, iterations=3 * (i + 1))
            s = m & (image > thr)
            s[mask] = seg[mask]
            masks.append(m)
            segs.append(s)
        return np.stack(masks), np.stack(segs), np.zeros(k)


def _case(seed: int = 0, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    gt = (yy - 30) ** 2 + (xx - 26) ** 2 <= 12**2
    gt |= (yy - 48) ** 2 + (xx - 50) ** 2 <= 6**2
    image = 0.6 * gt + rng.normal(0.0, 0.12, size=gt.shape) + 0.1 * (xx > 40)
    return image.astype(np.float32), gt


@pytest.mark.parametrize("kind", ["partial", "complete"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_loop_feeds_each_model_kind_what_the_simulator_feeds_it(kind: str, seed: int) -> None:
    image, gt = _case(seed)
    method = ThresholdGrower(kind)
    trace: list[dict] = []
    n = 6
    run_session(image, gt, method, BestOfK(), SessionConfig(k=3, start="clicks", max_iters=n, early_stop=False),
                np.random.default_rng(seed), trace=trace)
    radius = default_brush_radius(gt.shape[0])
    state = start_state(np.random.default_rng(0), gt, LoopSpec(start_weights={"clicks": 1.0}), PairSpec(mode=kind), radius)
    partial = kind == "partial"
    changed = 0
    for t in range(n):
        feed_mask, feed_seg = state.feed(partial)
        assert np.array_equal(feed_mask, trace[t]["shown_mask"]), f"iteration {t + 1}: decided pixels differ"
        assert np.array_equal(feed_seg, trace[t]["shown_seg"]), f"iteration {t + 1}: foreground differs"
        masks, segs, _ = method.propose(image, feed_mask, feed_seg, 3, None)
        before = feed_mask.copy()
        state = advance(state, gt, masks, segs, partial=partial, radius=radius)
        changed += not np.array_equal(state.feed(partial)[0], before)
    assert changed >= 2  # the session really moved: the comparison is not of frozen states


def test_the_oracle_choice_is_the_simulators() -> None:
    rng = np.random.default_rng(5)
    policy = BestOfK()
    for trial in range(200):
        gt = rng.random((8, 8)) < 0.4
        masks = rng.random((4, 8, 8)) < rng.uniform(0.2, 1.0)
        segs = masks & (rng.random((4, 8, 8)) < 0.5) | (masks & gt & (rng.random((4, 8, 8)) < 0.5))
        cur_mask = rng.random((8, 8)) < 0.3
        cur_seg = cur_mask & (gt if trial % 2 else rng.random((8, 8)) < 0.5)
        for allow in (True, False):
            ours = best_of_k(masks, segs, gt, cur_mask, cur_seg, allow_reject=allow)
            theirs = policy.choose(masks, segs, None, gt=gt, current_mask=cur_mask, current_seg=cur_seg,
                                   allow_reject=allow, rng=rng)
            assert ours == theirs


@pytest.mark.parametrize("name", ["heads", "heads-complete", "ssn", "ssn-complete", "unet-complete", "partial-unet"])
def test_loop_loss_trains_every_deterministic_kind(name: str) -> None:
    cfg = replace(CONFIGS["unet-complete"], mode="partial", name=name) if name == "partial-unet" else CONFIGS[name]
    torch.manual_seed(0)
    net = build_network(cfg)
    images, gts = [], []
    for s in range(3):
        image, gt = _case(s, 32)
        images.append(image)
        gts.append(gt)
    x = torch.from_numpy(np.stack(images))[:, None]
    rngs = [np.random.default_rng([0, i]) for i in range(3)]
    history: list = []
    terms = loop_loss(net, x, np.stack(gts), rngs, 2, LoopSpec(), PairSpec(mode=cfg.mode), 1, 0.3, states_out=history)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    partial = cfg.mode == "partial"
    for states in history:
        assert len(states) == 3  # the start and two corrections
        for a, b in zip(states, states[1:]):
            assert int(b.clicked.sum()) - int(a.clicked.sum()) <= 1  # at most one click per step
            # the annotator's own input only grows, by the click
            assert np.all(b.input_mask | ~a.input_mask)
            if partial:
                assert np.all(b.mask | ~a.mask)  # an accepted state never loses decided pixels


def test_loop_loss_refuses_a_latent_model() -> None:
    net = build_network("wide")
    image, gt = _case(0, 32)
    with pytest.raises(ValueError, match="deterministic"):
        loop_loss(net, torch.from_numpy(image)[None, None], gt[None], [np.random.default_rng(0)], 0, LoopSpec(),
                  PairSpec(), 1, 0.0)


def test_loop_spec_validation_and_temperature_schedule() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        LoopSpec(max_steps=-1)
    with pytest.raises(ValueError, match="start_weights"):
        LoopSpec(start_weights={"box": 1.0})
    with pytest.raises(ValueError, match="spread"):
        LoopSpec(spread=2.0)
    spec = LoopSpec(temperature=0.4)
    assert spec.temperature_at(0, 100) == pytest.approx(0.4)
    assert spec.temperature_at(25, 100) == pytest.approx(0.2)
    assert spec.temperature_at(50, 100) == 0.0 and spec.temperature_at(99, 100) == 0.0
