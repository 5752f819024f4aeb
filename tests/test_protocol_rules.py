"""Protocol 0.2: the robot corrects what a person would hand in, the oracle never accepts a worse
segmentation, a session ends when the annotator is done, and the v0.1 rules survive as variants.

Hand-computed cases on a 16x16 square, a null method that decides nothing (it must still reach the
target through the robot's clicks alone, as a brush-only annotator would), and whole runs of every
method on disks and MedScribble in which every click changes the segmentation a person hands in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probseg.data.partials import brush_disk
from simulator.corrections import Click, apply_click, click_start, deepest_point, resolve_brush_radius
from simulator.datasets import make_dataset, session_rng
from simulator.methods import make_method
from simulator.metrics import dice, session_metrics
from simulator.policies import BestOfK, NoisyBestOfK, make_policy, state_score
from simulator.runner import RunSettings, run
from simulator.session import STOP_REASONS, SessionConfig, run_session

H = 16
GT = np.zeros((H, H), dtype=bool)
GT[4:12, 4:12] = True  # an 8x8 square: 64 target pixels
IMAGE = GT.astype(np.float32)
MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"
needs_medscribble = pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason="MedScribble data not found")


class Null:
    """A method that never decides anything new: partial, it proposes its input back; complete, it
    calls every undecided pixel background (an empty prediction outside the annotator's input)."""

    multi = False

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"null-{kind}"

    def propose(self, image, mask, seg, k, rng):  # noqa: ANN001, ANN201 - the Method protocol
        new_mask = mask.copy() if self.kind == "partial" else np.ones_like(mask)
        return np.repeat(new_mask[None], k, 0), np.repeat(seg[None], k, 0), None


class Scripted:
    """A single-proposal method that proposes ``fn(mask, seg)``."""

    multi = False

    def __init__(self, kind: str, fn) -> None:  # noqa: ANN001
        self.kind, self.fn, self.name = kind, fn, "scripted"

    def propose(self, image, mask, seg, k, rng):  # noqa: ANN001, ANN201
        m, s = self.fn(mask, seg)
        return np.repeat(m[None], k, 0), np.repeat(s[None], k, 0), None


def _session(method: object, policy: str = "first", **kw: object) -> list[dict]:
    """A session on the test image; ``kw`` are :class:`SessionConfig` fields."""
    kw.setdefault("max_iters", 4)
    return run_session(IMAGE, GT, method, make_policy(policy), SessionConfig(**kw), np.random.default_rng(0))


# --- the fallback clicks what a person would hand in ------------------------------------------------------


def test_the_fallback_never_clicks_undecided_background() -> None:
    steps = _session(Null("partial"), max_iters=12)
    clicks = [c for s in steps for c in s["clicks"]]
    assert clicks and all(c[2] == 1 and GT[c[0], c[1]] for c in clicks)  # all positive, on the target
    assert [s["click_reason"] for s in steps[:-1]] == ["stall"] * (len(steps) - 1)
    # The first release's fallback (kept as the v0.1 variant) clicks the background's deep corners.
    old = _session(Null("partial"), max_iters=12, fallback="v0.1", early_stop=False)
    assert any(c[2] == 0 and not GT[c[0], c[1]] for s in old for c in s["clicks"])


def test_a_robot_with_nothing_to_correct_makes_no_click() -> None:
    # A complete method that is exactly right: no error, so no click, and the annotator is done at once.
    perfect = Scripted("complete", lambda mask, seg: (np.ones_like(mask), GT.copy()))
    steps = _session(perfect)
    assert len(steps) == 1 and steps[0]["clicks"] == [] and steps[0]["stop"] == "done"
    # A partial method whose accepted state is right but leaves background undecided: nothing to hand in wrong.
    partial_right = Scripted("partial", lambda mask, seg: (mask | GT, seg | GT))
    steps = _session(partial_right)
    assert steps[0]["n_pending"] > 0 and steps[0]["dice"] == 1.0
    assert steps[0]["clicks"] == [] and steps[0]["stop"] == "done"


def test_after_a_rejection_the_robot_clicks_the_handed_in_errors() -> None:
    # Every pending pixel as foreground: far worse than the start, rejected; the fallback clicks the
    # undecided target (positive) and never the undecided background.
    everything_fg = Scripted("partial", lambda mask, seg: (np.ones_like(mask), seg | ~mask))
    steps = _session(everything_fg, policy="best-of-k", max_iters=6)
    assert [s["chosen"] for s in steps] == [-1] * 6
    assert all(s["click_reason"] == "reject" for s in steps)
    assert all(c[2] == 1 and GT[c[0], c[1]] for s in steps for c in s["clicks"])


# --- the oracle judges the foreground a person sees --------------------------------------------------------


def _wide_background_with_one_wrong_pixel(mask: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decides rows 0-1 (32 background pixels, correct) and one wrong foreground pixel at (15, 15)."""
    new_mask, new_seg = mask.copy(), seg.copy()
    new_mask[:2] = True
    new_mask[15, 15] = True
    new_seg[15, 15] = True
    return new_mask, new_seg


def test_the_oracle_never_accepts_a_lower_dice_however_much_background_it_adds() -> None:
    start = click_start(GT, 1)
    mask, seg = _wide_background_with_one_wrong_pixel(start.mask, start.seg)
    masks, segs = np.stack([start.mask, mask]), np.stack([start.seg, seg])
    kw = dict(gt=GT, current_mask=start.mask, current_seg=start.seg, allow_reject=True, rng=np.random.default_rng(0))
    # Hand-computed: the current foreground is the 5 brush pixels of the positive click, Dice
    # 2 x 5 / (5 + 64) = 10/69; the candidate's adds one wrong pixel, 10/70. Its pixel score gains the
    # new correct background of rows 0-1 and loses 2 for the wrong pixel: the v0.1 rule takes it.
    assert dice(seg, GT) == pytest.approx(10 / 70) and dice(start.seg, GT) == pytest.approx(10 / 69)
    gained = int((mask & ~start.mask & ~GT).sum()) - 1  # new correct background (the wrong pixel is background)
    assert state_score(mask, seg, GT, 2.0) == state_score(start.mask, start.seg, GT, 2.0) + gained - 2.0
    assert gained > 2
    assert BestOfK(acceptance="pixel-score").choose(masks, segs, None, **kw) == 1
    assert BestOfK().choose(masks, segs, None, **kw) == -1  # candidate 0 equals the current state: no gain
    assert NoisyBestOfK(epsilon=0.0).choose(masks, segs, None, **kw) == -1
    # Without rejection the oracle still prefers an eligible candidate, and takes the best of all if none is.
    assert BestOfK().choose(masks, segs, None, **{**kw, "allow_reject": False}) == 0
    only_bad = BestOfK().choose(masks[1:], segs[1:], None, **{**kw, "allow_reject": False})
    assert only_bad == 0


def test_equal_dice_candidates_stay_eligible_and_rank_by_pixel_score() -> None:
    start = click_start(GT, 1)
    more_bg = start.mask.copy()
    more_bg[:2] = True  # 32 correct background pixels, foreground unchanged: same Dice
    masks, segs = np.stack([start.mask, more_bg]), np.stack([start.seg, start.seg])
    got = BestOfK().choose(masks, segs, None, gt=GT, current_mask=start.mask, current_seg=start.seg,
                           allow_reject=True, rng=np.random.default_rng(0))
    assert got == 1


def test_acceptance_is_validated_and_passed_by_name() -> None:
    with pytest.raises(ValueError, match="^acceptance: unknown rule 'maybe'"):
        BestOfK(acceptance="maybe")
    with pytest.raises(ValueError, match="^acceptance: "):
        make_policy("noisy-best-of-k", acceptance="maybe")
    assert make_policy("best-of-k", acceptance="pixel-score").acceptance == "pixel-score"
    with pytest.raises(ValueError, match="^acceptance: "):
        RunSettings(acceptance="maybe").validate()


# --- a session ends when the annotator is done ------------------------------------------------------------


def _grow_correctly(mask: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decides the next undecided row with its true labels."""
    rows = np.flatnonzero(~mask.all(axis=1))
    new_mask, new_seg = mask.copy(), seg.copy()
    if rows.size:
        new_mask[rows[0]] = True
        new_seg[rows[0]] |= GT[rows[0]] & ~mask[rows[0]]
    return new_mask, new_seg


def test_a_session_ends_when_the_segmentation_has_no_error() -> None:
    steps = _session(Scripted("partial", _grow_correctly), max_iters=20)
    # The start decides rows 6-8 around (7, 7) and (0, 0)'s brush; the method adds one row a time and the
    # handed-in foreground is right once row 11, the square's last, is decided.
    assert steps[-1]["stop"] == "done" and steps[-1]["dice"] == 1.0
    assert all(s["stop"] == "" for s in steps[:-1]) and len(steps) < 20
    assert all(s["dice"] < 1.0 for s in steps[:-1])
    # Under pending_as_errors nothing may be pending either: it goes on until every row is decided.
    strict = _session(Scripted("partial", _grow_correctly), max_iters=20, pending_as_errors=True)
    assert strict[-1]["stop"] == "done" and strict[-1]["n_pending"] == 0 and len(strict) > len(steps)
    # Without early stop every iteration runs (v0.1); the last record says why it ended.
    full = _session(Scripted("partial", _grow_correctly), max_iters=20, early_stop=False)
    assert len(full) == 20 and full[-1]["stop"] == "max-iters" and full[-1]["dice"] == 1.0


def test_stop_at_ends_at_a_chosen_dice() -> None:
    steps = _session(Null("partial"), max_iters=40, stop_at=0.5)
    assert steps[-1]["stop"] == "stop-at" and steps[-1]["dice"] >= 0.5
    assert all(s["dice"] < 0.5 for s in steps[:-1])
    assert {s["stop"] for s in steps} <= set(STOP_REASONS) | {""}


@pytest.mark.parametrize("kw, match", [
    (dict(stop_at=0.0), "^stop_at: "), (dict(stop_at=1.5), "^stop_at: "), (dict(stop_at=True), "^stop_at: "),
    (dict(stop_at=0.9, early_stop=False), "^stop_at: .*early_stop"), (dict(fallback="v0.2"), "^fallback: "),
    (dict(early_stop="yes"), "^early_stop: "),
])
def test_bad_stop_and_fallback_settings_raise_naming_them(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SessionConfig(**kw)


def test_the_protocol_is_given_as_one_config_object() -> None:
    with pytest.raises(ValueError, match="^config: expected a SessionConfig, got NoneType"):
        run_session(IMAGE, GT, Null("partial"), make_policy("first"), None, np.random.default_rng(0))
    with pytest.raises(TypeError):  # the protocol's fields are no keyword arguments of a session
        run_session(IMAGE, GT, Null("partial"), make_policy("first"), SessionConfig(), np.random.default_rng(0),
                    max_iters=5)
    steps = run_session(IMAGE, GT, Null("partial"), make_policy("first"), SessionConfig(max_iters=5, early_stop=False),
                        np.random.default_rng(0))
    assert len(steps) == 5


def test_metrics_carry_the_final_value_forward() -> None:
    steps = _session(Scripted("partial", _grow_correctly), max_iters=20)
    n = len(steps)
    m = session_metrics(steps, max_iters=20)
    dices = [s["dice"] for s in steps]
    assert m["dice_at_iter_20"] == 1.0 and m["dice_at_iter_10"] == (dices[9] if n > 9 else 1.0)
    assert m["dice_auc"] == pytest.approx((sum(dices) + (20 - n) * 1.0) / 20)
    assert m["iterations"] == n and m["stopped_early"] and m["stop"] == "done"
    assert m["final_dice"] == 1.0 and m["dice_at_clicks_10"] == 1.0  # never spent 10 clicks: the last Dice
    assert (m["correction_clicks"], m["positive_clicks"]) == (0, 0)


# --- a null method reaches the target through the robot's clicks alone -----------------------------------


def _brush_only_clicks(target: np.ndarray, radius: int, goal: float) -> int:
    """Clicks a brush-only annotator needs after the click start: each stamps the brush, restricted to the
    target, at the deepest unpainted target pixel, until the painted foreground reaches Dice ``goal``."""
    start = click_start(target, radius)
    painted = start.seg.copy()
    clicks = 0
    while dice(painted, target) < goal:
        r, c = deepest_point(target & ~painted)
        painted |= brush_disk(target.shape, (r, c), radius) & target
        clicks += 1
    return clicks


def _null_session_clicks(image: np.ndarray, target: np.ndarray, kind: str, goal: float = 0.9) -> tuple[int, float]:
    steps = run_session(image, target, Null(kind), make_policy("best-of-k"), SessionConfig(max_iters=400, stop_at=goal),
                        np.random.default_rng(0))
    clicks = sum(len(s["clicks"]) for s in steps)
    return clicks, steps[-1]["dice"]


def _disk_target() -> tuple[np.ndarray, np.ndarray]:
    case = make_dataset("disks", 10).case(3, 0)
    return case.image, case.target


@pytest.mark.parametrize("kind", ["partial", "complete"])
def test_a_null_method_reaches_dice_090_on_a_disk_by_clicks_alone(kind: str) -> None:
    image, target = _disk_target()
    radius = resolve_brush_radius(None, target.shape)
    clicks, final = _null_session_clicks(image, target, kind)
    budget = _brush_only_clicks(target, radius, 0.9)
    assert final >= 0.9
    assert clicks <= budget
    # Sanity of the budget itself: never far above the area bound a perfect painter could reach.
    area = int(brush_disk(target.shape, (H // 2, H // 2), radius).sum())
    assert budget <= 3 * int(np.ceil(0.9 * target.sum() / area))


@needs_medscribble
@pytest.mark.parametrize("kind", ["partial", "complete"])
def test_a_null_method_reaches_dice_090_on_a_medscribble_image_by_clicks_alone(kind: str) -> None:
    folder = MEDSCRIBBLE / "ACDC" / "Challenge2017" / "patient050_axis2_maxslice"
    image = np.load(folder / "img.npy").astype(np.float32)
    target = np.load(folder / "seg.npy") > 0.5
    radius = resolve_brush_radius(None, target.shape)
    clicks, final = _null_session_clicks(image, target, kind)
    budget = _brush_only_clicks(target, radius, 0.9)
    assert final >= 0.9
    assert clicks <= budget


# --- whole runs: every click changes the handed-in segmentation ---------------------------------------------


METHOD_NAMES = ("probseg", "probseg-mean", "probseg-complete", "unet-complete", "unet-tta", "random-walker",
                "random-walker-partial")


def _check_every_click_changes_the_hand_in(settings: RunSettings, index: int) -> list[dict]:
    from simulator.figures import replay_session
    from simulator.arms import Arm

    arm = Arm(label="a", run_dir=Path("."), config={"settings": settings.to_dict()}, sessions=None, steps=None)  # type: ignore[arg-type]
    steps, trace, case = replay_session(arm, index)
    radius = resolve_brush_radius(settings.session.brush_radius, case.target.shape)
    for t in trace:
        mask, seg = t["mask"], t["seg"]
        for r, c, positive in t["clicks"]:
            new_mask, new_seg = apply_click(case.target, mask, seg, Click(r, c, bool(positive)), radius)
            assert (new_seg != seg).any(), f"{settings.method}: click {(r, c)} changed nothing a person hands in"
            assert seg[r, c] != case.target[r, c]  # it clicked an error of the handed-in segmentation
            mask, seg = new_mask, new_seg
    return steps


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_click_changes_the_hand_in_on_disks(method: str) -> None:
    multi = method in ("probseg", "probseg-complete", "unet-tta")
    for index in range(4):
        settings = RunSettings(method=method, policy="best-of-k" if multi else "first", n_sessions=4,
                               session=SessionConfig(k=8 if multi else 1, max_iters=20))
        steps = _check_every_click_changes_the_hand_in(settings, index)
        assert steps[-1]["stop"] in STOP_REASONS


@needs_medscribble
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_click_changes_the_hand_in_on_medscribble(method: str) -> None:
    multi = method in ("probseg", "probseg-complete", "unet-tta")
    settings = RunSettings(dataset=f"medscribble:{MEDSCRIBBLE}?tasks=WBC", method=method,
                           policy="best-of-k" if multi else "first",
                           session=SessionConfig(start="human", k=4 if multi else 1, max_iters=4))
    _check_every_click_changes_the_hand_in(settings, 1)


# --- runs count how sessions ended ---------------------------------------------------------------------------


def test_a_run_reports_steps_per_session_and_early_stops(tmp_path: Path) -> None:
    settings = RunSettings(n_sessions=12, session=SessionConfig(max_iters=20))
    _, sessions, summary = run(settings, out=tmp_path / "r", workers=0, progress=False)
    assert summary["n_stopped_early"] == int(sessions["stopped_early"].sum()) > 0
    assert summary["steps_per_session"] == pytest.approx(sessions["iterations"].mean())
    assert summary["steps_per_session"] < 20
    assert set(sessions["stop"]) <= set(STOP_REASONS)
    # The v0.1 protocol as named variants: no early stop runs every iteration.
    _, old, old_summary = run(RunSettings(n_sessions=12, acceptance="pixel-score",
                                          session=SessionConfig(max_iters=20, early_stop=False, fallback="v0.1")),
                              out=tmp_path / "old", workers=0, progress=False)
    assert old_summary["n_stopped_early"] == 0 and (old["iterations"] == 20).all()


def test_a_run_made_under_the_old_protocol_is_not_resumed(tmp_path: Path) -> None:
    import json

    out = tmp_path / "r"
    run(RunSettings(n_sessions=2, session=SessionConfig(max_iters=3)), out=out, workers=0, progress=False)
    cfg = json.loads((out / "config.json").read_text())
    for key in ("fallback", "early_stop", "stop_at", "acceptance"):
        cfg["settings"].pop(key)  # what a run written before protocol 0.2 recorded
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="^out: .*v0.1 session rules"):
        run(RunSettings(n_sessions=2, session=SessionConfig(max_iters=3)), out=out, workers=0, progress=False)


def test_session_rng_streams_are_unchanged_by_the_stop_rule() -> None:
    case = make_dataset("disks", 3).case(1, 0)
    method, policy = make_method("probseg"), make_policy("best-of-k")
    early = run_session(case.image, case.target, method, policy, SessionConfig(), session_rng(0, 1))
    full = run_session(case.image, case.target, method, policy, SessionConfig(early_stop=False), session_rng(0, 1))
    n = len(early)
    assert [s["dice"] for s in early] == [s["dice"] for s in full[:n]]


# --- small structures in a NIfTI volume -----------------------------------------------------------------------


def _small_structures_volume(folder: Path, size: int = 128, depth: int = 6, seed: int = 0) -> Path:
    """A T1-like synthetic volume: a bright brain ellipse with six small darker deep structures
    (semi-axes 3-6 px, shrinking away from the middle slice), labelled 1..6, and a manifest with one
    row per structure (its largest axial slice). Returns the manifest's path."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = size / 2
    brain = ((yy - c) / (0.42 * size)) ** 2 + ((xx - c) / (0.36 * size)) ** 2 <= 1
    centres = [(-14, -10), (-14, 10), (0, -16), (0, 16), (14, -8), (14, 8)]
    radii = [(5, 4), (5, 4), (6, 3), (6, 3), (4, 4), (4, 4)]
    vol = np.zeros((size, size, depth), np.float32)
    lab = np.zeros((size, size, depth), np.int16)
    for z in range(depth):
        img = np.where(brain, 0.75, 0.05).astype(np.float32)
        shrink = 1 - 0.1 * abs(z - depth // 2)
        for i, ((dy, dx), (ry, rx)) in enumerate(zip(centres, radii)):
            inside = ((yy - c - dy) / (ry * shrink)) ** 2 + ((xx - c - dx) / (rx * shrink)) ** 2 <= 1
            img[inside] = 0.15 + 0.03 * i
            lab[..., z][inside] = i + 1
        vol[..., z] = img + rng.normal(0, 0.03, img.shape).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(folder / "t1.nii.gz"))
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(folder / "t1_seg.nii.gz"))
    rows = "".join(f"t1.nii.gz,t1_seg.nii.gz,{i + 1},2,largest\n" for i in range(6))
    (folder / "manifest.csv").write_text("image,label,label_values,axis,slices\n" + rows)
    return folder / "manifest.csv"


def test_small_nifti_structures_partial_best_of_8_reaches_the_unet(tmp_path: Path) -> None:
    import probseg

    if not {"medical", "medical-unet-complete"} <= set(probseg.available()):
        pytest.skip("the shipped medical checkpoints are not installed")
    dataset = f"nifti:{_small_structures_volume(tmp_path / 'vol')}"
    final = {}
    for method, policy, k in (("probseg", "best-of-k", 8), ("unet-complete", "first", 1)):
        _, sessions, _ = run(RunSettings(dataset=dataset, method=method, policy=policy,
                                         session=SessionConfig(k=k, max_iters=20)),
                             out=tmp_path / method, workers=0, progress=False)
        assert len(sessions) == 6
        final[method] = float(sessions["final_dice"].mean())
    assert final["probseg"] >= final["unet-complete"] - 0.05, final
    # Under the v0.1 rules the partial model's fallback clicked undecided background and never got there.
    _, old, _ = run(RunSettings(dataset=dataset, method="probseg", policy="best-of-k", acceptance="pixel-score",
                                session=SessionConfig(k=8, max_iters=20, fallback="v0.1", early_stop=False)),
                    out=tmp_path / "v0.1", workers=0, progress=False)
    assert float(old["final_dice"].mean()) < final["unet-complete"] - 0.05


# --- the command line ---------------------------------------------------------------------------------------


def test_simulate_cli_takes_the_session_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from simulator.cli import main

    base = ["--n-sessions", "4", "--workers", "0", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a"), "--stop-at", "0.9", "--json"]) == 0
    out = capsys.readouterr().out
    assert "ended early (annotator done): 4 of 4" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n_stopped_early"] == 4 and summary["steps_per_session"] >= 1
    settings = json.loads((tmp_path / "a" / "config.json").read_text())["settings"]
    assert (settings["stop_at"], settings["fallback"], settings["acceptance"], settings["early_stop"]) == (
        0.9, "hand-in", "no-worse-dice", True)
    assert main([*base, "--out", str(tmp_path / "b"), "--no-early-stop", "--fallback", "v0.1",
                 "--acceptance", "pixel-score", "--max-iters", "3"]) == 0
    assert "ended early (annotator done): 0 of 4" in capsys.readouterr().out
    for bad, word in ((["--stop-at", "1.5"], "stop_at"), (["--fallback", "v9"], "fallback"),
                      (["--acceptance", "maybe"], "acceptance"), (["--stop-at", "0.9", "--no-early-stop"], "stop_at")):
        assert main([*base, "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"probseg-simulate: error: {word}:"), err
        assert not (tmp_path / "bad").exists()


def test_study_files_take_the_session_rules() -> None:
    from simulator.study import parse_study

    raw = {"name": "t", "reference": "a", "protocol": {"fallback": "v0.1", "early_stop": False, "acceptance": "pixel-score"},
           "arms": [{"label": "a", "method": "random-walker", "policy": "first", "k": 1}]}
    s = parse_study(raw)
    assert (s.arms[0].settings["fallback"], s.arms[0].settings["early_stop"]) == ("v0.1", False)
    with pytest.raises(ValueError, match=r"fallback: unknown value 'v9'"):
        parse_study({**raw, "protocol": {"fallback": "v9"}})
    with pytest.raises(ValueError, match=r"stop_at: expected a number"):
        parse_study({**raw, "protocol": {"stop_at": "high"}})
    with pytest.raises(ValueError, match=r"early_stop: expected true or false"):
        parse_study({**raw, "protocol": {"early_stop": 1}})


# --- reports say what the protocol change moved -------------------------------------------------------------


def test_protocol_change_table_pairs_arms_by_label() -> None:
    import pandas as pd

    from simulator.report import protocol_change_table

    now = pd.DataFrame({"label": ["a", "b", "new"], "noc_90": [2.0, 3.5, 1.0], "nof_90": [0, 2, 0],
                        "dice_at_clicks_5": [0.9, 0.8, 1.0]})
    before = pd.DataFrame({"label": ["b", "a", "gone"], "noc_90": [4.0, 2.5, 9.0], "nof_90": [5, 1, 0],
                           "dice_at_clicks_5": [0.5, 0.9, 0.1]})
    t = protocol_change_table(now, before, "dice_at_clicks_5")
    assert list(dict.fromkeys(t["label"])) == ["a", "b"]  # only arms in both, in this run's order
    assert list(t[t["label"] == "a"]["metric"]) == ["dice_at_clicks_5", "noc_90", "nof_90"]  # endpoint first
    row = t[(t["label"] == "b") & (t["metric"] == "noc_90")].iloc[0]
    assert (row["before"], row["after"], row["change"]) == (4.0, 3.5, -0.5)


def test_session_ends_hand_computed() -> None:
    import pandas as pd

    from simulator.metrics import session_ends

    sessions = pd.DataFrame({"iterations": [2, 20, 5], "stopped_early": [True, False, True],
                             "correction_clicks": [1, 6, 3], "positive_clicks": [1, 2, 0]})
    ends = session_ends(sessions)
    assert ends == {"steps_per_session": 9.0, "n_stopped_early": 2.0, "correction_clicks": 10 / 3,
                    "positive_click_share": 0.3}
    old = session_ends(pd.DataFrame({"iterations": [20, 20]}))  # a run made before protocol 0.2
    assert old["steps_per_session"] == 20.0 and np.isnan(old["n_stopped_early"]) and np.isnan(old["positive_click_share"])
