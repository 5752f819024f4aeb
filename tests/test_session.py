"""Sessions: what each kind of method is fed, when the robot clicks, what a step records, and
end-to-end runs with the random walker and a tiny untrained probseg network."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from probseg.data import DiskSpec, make_disk_image
from probseg.model import build_network
from probseg.predictor import ProbSeg
from simulator.corrections import Click, apply_click, click_brush, click_start
from simulator.methods import METHODS, ProbSegMethod, RandomWalkerMethod, make_method
from simulator.metrics import dice, session_metrics
from simulator.policies import make_policy
from simulator.session import LOG_KEYS, TIMING_KEYS, SessionConfig, run_session

H = 16
GT = np.zeros((H, H), dtype=bool)
GT[4:12, 4:12] = True  # an 8x8 square: 64 target pixels
IMAGE = GT.astype(np.float32)
START = click_start(GT, radius=1)  # positive at (7, 7); 5 + 5 brush pixels


ProposeFn = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


class Fake:
    """A single-proposal method that records what it is fed and proposes ``fn(mask, seg, call)``."""

    multi = False

    def __init__(self, kind: str, fn: ProposeFn, name: str = "fake") -> None:
        self.kind = kind
        self.fn = fn
        self.name = name
        self.fed: list[tuple[np.ndarray, np.ndarray]] = []
        self.proposed: list[tuple[np.ndarray, np.ndarray]] = []

    def propose(
        self, image: np.ndarray, mask: np.ndarray, seg: np.ndarray, k: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, None]:
        self.fed.append((mask.copy(), seg.copy()))
        new_mask, new_seg = self.fn(mask, seg, len(self.fed))
        self.proposed.append((new_mask, new_seg))
        return np.repeat(new_mask[None], k, 0), np.repeat(new_seg[None], k, 0), None


def keep(mask: np.ndarray, seg: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
    """Decides nothing new: a stalled partial method."""
    return mask.copy(), seg.copy()


def add_row_as_foreground(mask: np.ndarray, seg: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
    """Decides row ``call + 2`` as all foreground: wrong on its background pixels."""
    new_mask, new_seg = mask.copy(), seg.copy()
    row = np.zeros_like(mask)
    row[call + 2] = True
    new_seg |= row & ~mask
    return new_mask | row, new_seg


def add_row_correctly(mask: np.ndarray, seg: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
    """Decides row ``call - 1`` with its true labels: progress without errors."""
    row = np.zeros_like(mask)
    row[call - 1] = True
    new_mask = mask | row
    new_seg = seg | (row & ~mask & GT)
    return new_mask, new_seg


def predict_all_foreground(mask: np.ndarray, seg: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
    """A complete method calling every undecided pixel foreground."""
    return np.ones_like(mask), seg | ~mask


def predict_input_only(mask: np.ndarray, seg: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
    """A complete method calling every undecided pixel background."""
    return np.ones_like(mask), seg.copy()


def decide_everything_foreground(mask: np.ndarray, seg: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
    """A partial method deciding all pending pixels as foreground (far worse than deciding nothing)."""
    return np.ones_like(mask), seg | ~mask


def session(method: object, policy: str = "first", *, trace: list | None = None,
            human_scribbles: tuple | None = None, **kw: object) -> list[dict]:
    """A session on the test image; ``kw`` are :class:`SessionConfig` fields."""
    kw.setdefault("max_iters", 4)
    return run_session(IMAGE, GT, method, make_policy(policy), SessionConfig(**kw), np.random.default_rng(0),
                       human_scribbles=human_scribbles, trace=trace)


def replay(mask: np.ndarray, seg: np.ndarray, clicks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    for r, c, positive in clicks:
        mask, seg = apply_click(GT, mask, seg, Click(r, c, bool(positive)), radius=1)
    return mask, seg


# --- what each kind of method receives ----------------------------------------------------------------


def test_partial_method_is_fed_the_accepted_state():
    fake = Fake("partial", add_row_as_foreground)
    steps = session(fake)
    np.testing.assert_array_equal(fake.fed[0][0], START.mask)
    for i in range(1, len(steps)):
        # Fed at i+1: the proposal chosen at i with the corrections made after it.
        expected = replay(*fake.proposed[i - 1], steps[i - 1]["clicks"])
        np.testing.assert_array_equal(fake.fed[i][0], expected[0])
        np.testing.assert_array_equal(fake.fed[i][1], expected[1])
    assert all(s["click_reason"] == "error" for s in steps)  # each added row has background pixels


def test_complete_method_is_fed_only_the_annotators_clicks():
    fake = Fake("complete", predict_all_foreground)
    steps = session(fake)
    mask, seg = START.mask, START.seg
    for i, step in enumerate(steps):
        np.testing.assert_array_equal(fake.fed[i][0], mask)
        np.testing.assert_array_equal(fake.fed[i][1], seg)
        # The previous prediction (all foreground) never leaks back: only correct clicked pixels.
        assert not (fake.fed[i][1] & ~GT).any() and fake.fed[i][0].sum() < 10 + 5 * (i + 1)
        mask, seg = replay(mask, seg, step["clicks"])
    assert all(s["clicks"] and s["clicks"][0][2] == 0 for s in steps)  # FP everywhere: negative clicks


def test_recorded_dice_is_before_this_iterations_correction():
    steps = session(Fake("complete", predict_input_only), max_iters=2)
    assert steps[0]["dice"] == pytest.approx(2 * 5 / (5 + 64))  # only the positive start brush
    r, c, positive = steps[0]["clicks"][0]
    assert positive == 1  # 59 missed target pixels are the deepest error
    fg = START.seg | click_brush(GT, Click(r, c, True), 1)
    assert steps[1]["dice"] == pytest.approx(dice(fg, GT))
    assert (steps[0]["clicks_so_far"], steps[1]["clicks_so_far"]) == (2, 3)
    assert (steps[0]["n_fn"], steps[0]["n_fp"], steps[0]["n_pending"]) == (59, 0, 0)


# --- when the robot clicks ------------------------------------------------------------------------------


def test_no_click_while_a_partial_method_progresses_without_errors():
    steps = session(Fake("partial", add_row_correctly))
    assert [s["click_made"] for s in steps] == [False] * 4
    assert [s["click_reason"] for s in steps] == [""] * 4
    assert [s["clicks_so_far"] for s in steps] == [2] * 4
    assert [s["n_fn"] + s["n_fp"] for s in steps] == [0] * 4
    assert steps[-1]["coverage"] > steps[0]["coverage"]


def test_pending_as_errors_clicks_on_pending_target_pixels():
    steps = session(Fake("partial", add_row_correctly), pending_as_errors=True)
    assert all(s["click_reason"] == "error" and s["clicks"][0][2] == 1 for s in steps)
    assert all(GT[r, c] for s in steps for r, c, _ in s["clicks"])
    assert [s["clicks_so_far"] for s in steps] == [2, 3, 4, 5]
    assert steps[0]["n_fn"] == 0  # recorded errors stay decided errors


def test_a_stall_makes_the_robot_click_on_pending_pixels():
    fake = Fake("partial", keep)
    steps = session(fake)
    assert [s["click_reason"] for s in steps] == ["stall"] * 4
    assert [s["clicks_so_far"] for s in steps] == [2, 3, 4, 5]
    coverage = [s["coverage"] for s in steps]
    assert coverage == sorted(coverage) and coverage[-1] > coverage[0]
    for i, step in enumerate(steps):
        r, c, _ = step["clicks"][0]
        assert not fake.fed[i][0][r, c]  # it clicked a pixel that was pending


def test_rejection_keeps_the_state_and_clicks_pending_pixels():
    fake = Fake("partial", decide_everything_foreground)
    steps = session(fake, policy="best-of-k")
    assert [s["chosen"] for s in steps] == [-1] * 4
    assert [s["click_reason"] for s in steps] == ["reject"] * 4
    assert steps[0]["dice"] == pytest.approx(10 / 69)  # the start state, kept
    assert steps[0]["coverage"] == pytest.approx(10 / 256)
    assert [s["clicks_so_far"] for s in steps] == [2, 3, 4, 5]
    # Without rejection the policy must take the bad proposal, which then locks in its errors.
    steps = session(Fake("partial", decide_everything_foreground), policy="best-of-k", allow_reject=False)
    assert steps[0]["chosen"] == 0 and steps[0]["n_fp"] == 256 - 64 - 5


def test_several_corrections_per_iteration_are_recomputed_in_turn():
    steps = session(Fake("complete", predict_all_foreground), corrections_per_iter=3, max_iters=3)
    assert [s["n_clicks"] for s in steps] == [3, 3, 3]
    assert [s["clicks_so_far"] for s in steps] == [2, 5, 8]
    for s in steps:
        brushes = np.zeros_like(GT)
        for r, c, positive in s["clicks"]:
            assert not brushes[r, c]  # the next click comes from the errors left after the last
            brushes |= click_brush(GT, Click(r, c, bool(positive)), 1)
    cells = [tuple(c[:2]) for s in steps for c in s["clicks"]]
    assert len(set(cells)) == len(cells)


def test_human_scribbles_are_kept_as_drawn():
    pos = np.zeros_like(GT)
    pos[6:9, 7] = True
    pos[0, 0] = True  # a slip outside the target
    neg = np.zeros_like(GT)
    neg[14, 2:14] = True
    fake = Fake("partial", add_row_correctly)  # progresses, so only decided errors are clicked
    steps = session(fake, start="human", human_scribbles=(pos, neg), max_iters=2)
    assert fake.fed[0][1][0, 0]  # decided as foreground anyway
    assert steps[0]["clicks_so_far"] == 3  # two positive strokes, one negative
    assert steps[0]["n_fp"] == 1
    assert steps[0]["clicks"] == [[0, 0, 0]] and steps[0]["click_reason"] == "error"
    assert not fake.fed[1][1][0, 0]  # the correction fixed it


def test_scribble_start_counts_strokes():
    steps = session(Fake("partial", keep), start="scribbles", max_iters=1)
    assert steps[0]["clicks_so_far"] == 2


# --- records, validation ---------------------------------------------------------------------------


def test_step_records_have_the_documented_fields():
    steps = session(Fake("complete", predict_input_only), max_iters=3)
    assert len(steps) == 3 and [s["iteration"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert tuple(s) == LOG_KEYS
        assert len(s["candidate_scores"]) == 1 and np.isnan(s["candidate_scores"][0])
        assert s["candidate_dice"] == [s["dice"]] and s["chosen"] == 0 and s["diversity"] == 0.0
        assert 0 <= s["model_seconds"] <= s["total_seconds"]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"start": "human"}, "human_scribbles"),
        ({"human_scribbles": (GT, ~GT)}, "human_scribbles"),
        ({"k": 0}, "k"),
        ({"start": "taps"}, "start"),
        ({"max_iters": 0}, "max_iters"),
        ({"corrections_per_iter": 0}, "corrections_per_iter"),
        ({"correction_rule": "nearest"}, "correction_rule"),
        ({"brush_radius": -2}, "brush_radius"),
    ],
)
def test_bad_settings_raise_naming_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        session(Fake("partial", keep), **kw)


def test_bad_inputs_raise_naming_the_argument():
    fake = Fake("partial", keep)
    first, cfg, rng = make_policy("first"), SessionConfig(), np.random.default_rng(0)
    with pytest.raises(ValueError, match="^target"):
        run_session(IMAGE, GT.astype(np.uint8), fake, first, cfg, rng)
    with pytest.raises(ValueError, match="^target"):
        run_session(IMAGE, GT[:8], fake, first, cfg, rng)
    with pytest.raises(ValueError, match="^image"):
        run_session(IMAGE[0], GT, fake, first, cfg, rng)
    with pytest.raises(ValueError, match="^rng"):
        run_session(IMAGE, GT, fake, first, cfg, 0)
    with pytest.raises(ValueError, match="^method: 'str' breaks the Method contract: it has no name"):
        run_session(IMAGE, GT, "sam", first, cfg, rng)  # a name is not a method: make_method("sam") makes one
    with pytest.raises(ValueError, match=r"^policy: expected a Policy.*make_policy\('first'\)"):
        run_session(IMAGE, GT, fake, "first", cfg, rng)
    with pytest.raises(ValueError, match="^config: expected a SessionConfig, got dict"):
        run_session(IMAGE, GT, fake, first, {"max_iters": 3}, rng)


def test_a_method_breaking_its_contract_is_caught():
    def leaks(mask: np.ndarray, seg: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
        return mask.copy(), seg | ~mask  # foreground outside the decided mask

    with pytest.raises(ValueError, match="method"):
        session(Fake("partial", leaks))
    with pytest.raises(ValueError, match="complete"):
        session(Fake("complete", keep))


def test_session_config_validates():
    assert SessionConfig().to_dict()["k"] == 8
    with pytest.raises(ValueError, match="k"):
        SessionConfig(k=True)


# --- the random walker -----------------------------------------------------------------------------


def test_random_walker_follows_its_seeds():
    rw = RandomWalkerMethod()
    nothing = np.zeros_like(GT)
    masks, segs, scores = rw.propose(IMAGE, START.mask & ~START.seg, nothing, 2, np.random.default_rng(0))
    assert masks.shape == (2, H, H) and masks.all() and not segs.any() and scores is None  # no fg seed
    masks, segs, _ = rw.propose(IMAGE, START.seg, START.seg, 1, np.random.default_rng(0))
    assert segs.all()  # no background seed
    masks, segs, _ = rw.propose(IMAGE, START.mask, START.seg, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(segs[0], GT)  # a clean two-level image: exact from two clicks


def test_random_walker_partial_decides_only_confident_pixels_and_keeps_its_input():
    image = IMAGE + np.linspace(0, 0.5, H, dtype=np.float32)[None, :]  # a ramp blurs the right side
    mask = START.mask.copy()
    seg = START.seg.copy()
    seg[0, 0] = mask[0, 0] = True  # a wrong seed must survive as given
    rw = RandomWalkerMethod(partial=True)
    masks, segs, _ = rw.propose(image, mask, seg, 1, np.random.default_rng(0))
    assert masks[0][mask].all() and (segs[0][mask] == seg[mask]).all()
    prob = rw.foreground_probability(image, mask, seg)
    confident = (prob > 0.95) | (prob < 0.05)
    np.testing.assert_array_equal(masks[0], mask | confident)
    assert rw.kind == "partial" and RandomWalkerMethod().kind == "complete"


def test_random_walker_cg_mg_without_pyamg_is_refused_not_swapped(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyamg" else real(name, *a))
    with pytest.raises(ValueError, match="^mode: 'cg_mg' needs the pyamg package"):
        RandomWalkerMethod(mode="cg_mg")
    RandomWalkerMethod(mode="cg_j")  # the other solvers need nothing extra


@pytest.mark.parametrize("name", ["random-walker", "random-walker-partial"])
def test_random_walker_sessions_on_one_disk_reach_high_dice_quickly(name):
    for seed in range(3):
        disk = make_disk_image(np.random.default_rng([11, seed]), DiskSpec(n_disks=1))
        steps = run_session(disk.image, disk.disks[0], make_method(name), make_policy("first"), SessionConfig(max_iters=10),
                            np.random.default_rng(seed))
        m = session_metrics(steps)
        assert m["final_dice"] > 0.8
        assert m["reached_90"] and m["noc_90"] <= 4


# --- probseg methods -------------------------------------------------------------------------------


def tiny(config: str) -> ProbSeg:
    import torch

    torch.manual_seed(0)  # the untrained weights; sessions draw their samples from the session rng
    return ProbSeg(build_network(config), name=f"tiny-{config}")


def test_make_method_registry_and_lazy_checkpoints(tmp_path):
    assert set(METHODS) == {"probseg", "probseg-mean", "probseg-complete", "unet-complete", "unet-tta",
                            "random-walker", "random-walker-partial"}
    with pytest.raises(ValueError, match=r"method.*random-walker"):
        make_method("sam")
    lazy = make_method("probseg", checkpoint=tmp_path / "missing.pt")  # constructing never loads
    assert lazy.name == "probseg"
    with pytest.raises(ValueError, match="checkpoint"):
        _ = lazy.kind
    lazy_tta = make_method("unet-tta", checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="checkpoint"):
        _ = lazy_tta.kind
    with pytest.raises(ValueError, match="checkpoint"):
        _ = make_method("probseg-complete", checkpoint=tiny("paper")).kind  # a partial model
    with pytest.raises(ValueError, match="checkpoint"):
        make_method("random-walker", checkpoint="disks")
    with pytest.raises(ValueError, match="beta"):
        make_method("random-walker", beta=-1.0)
    assert make_method("random-walker-partial", beta=50.0).beta == 50.0


def test_probseg_method_kinds_and_proposal_counts():
    m = ProbSegMethod(tiny("paper"))
    assert (m.kind, m.multi) == ("partial", True)
    mean = make_method("probseg-mean", checkpoint=tiny("paper"))
    assert (mean.kind, mean.multi, mean.name) == ("partial", False, "probseg-mean")
    masks, segs, scores = mean.propose(IMAGE, START.mask, START.seg, 3, np.random.default_rng(0))
    assert masks.shape == (3, H, H) and (masks == masks[0]).all() and scores.shape == (3,)
    assert ProbSegMethod(tiny("unet-complete")).multi is False
    assert ProbSegMethod(tiny("paper-complete")).kind == "complete"


def strip_timing(steps: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k not in TIMING_KEYS} for s in steps]


def test_probseg_session_end_to_end_and_deterministic():
    disk = make_disk_image(np.random.default_rng(3))
    method = ProbSegMethod(tiny("paper"))

    def run(seed: int):
        return run_session(disk.image, disk.disks[0], method, make_policy("best-of-k"),
                           SessionConfig(k=4, max_iters=4), np.random.default_rng(seed))

    steps = run(0)
    assert len(steps) == 4
    coverage = [s["coverage"] for s in steps]
    assert coverage == sorted(coverage)  # a partial method's accepted state only grows
    for s in steps:
        assert len(s["candidate_scores"]) == len(s["candidate_dice"]) == 4
        assert np.isfinite(s["candidate_scores"]).all() and 0 <= s["diversity"] <= 1
        assert -1 <= s["chosen"] < 4
        if s["chosen"] >= 0:
            assert s["dice"] == s["candidate_dice"][s["chosen"]]
    assert [s["clicks_so_far"] for s in steps[1:]] == [s["clicks_so_far"] + s["n_clicks"] for s in steps[:-1]]
    assert strip_timing(run(0)) == strip_timing(steps)
    assert [s["candidate_scores"] for s in run(1)] != [s["candidate_scores"] for s in steps]


def test_complete_probseg_session_decides_every_pixel():
    disk = make_disk_image(np.random.default_rng(4))
    steps = run_session(disk.image, disk.disks[1], ProbSegMethod(tiny("paper-complete")), make_policy("model-ranked"),
                        SessionConfig(k=3, max_iters=3), np.random.default_rng(0))
    assert all(s["coverage"] == 1.0 and s["n_pending"] == 0 for s in steps)
    assert all(s["chosen"] == int(np.argmax(s["candidate_scores"])) for s in steps)


def test_trace_records_candidates_and_choices_without_changing_the_session():
    plain = session(Fake("partial", add_row_as_foreground), max_iters=3)
    trace: list[dict] = []
    traced = session(Fake("partial", add_row_as_foreground), max_iters=3, trace=trace)
    strip = lambda steps: [{k: v for k, v in s.items() if k not in TIMING_KEYS} for s in steps]  # noqa: E731
    assert repr(strip(traced)) == repr(strip(plain))  # repr: NaN scores compare equal
    assert [t["iteration"] for t in trace] == [1, 2, 3]
    assert trace[0]["start_mask"].sum() == START.mask.sum()
    for shot, step in zip(trace, traced):
        assert shot["masks"].shape == (1, H, H) and shot["masks"].dtype == bool
        assert shot["chosen"] == step["chosen"]
        assert shot["clicks"] == step["clicks"]
        assert dice(shot["seg"], GT) == pytest.approx(step["dice"])
    # The state shown at iteration 2 is iteration 1's choice plus its corrections.
    mask, seg = replay(trace[0]["mask"], trace[0]["seg"], trace[0]["clicks"])
    assert (trace[1]["shown_mask"] == mask).all() and (trace[1]["shown_seg"] == seg).all()
