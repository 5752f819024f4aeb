"""steps.parquet stands alone: packed states round-trip, each step's n_shown and priced effort, and
filmstrips drawn from a run folder without its method."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.metrics import EffortModel, effort_counts, priced_steps, session_metrics, step_effort
from simulator.report.load import load_run
from simulator.runner import RunSettings, run
from simulator.steplog import LOGGED_ITERS, STATE_KEYS, decode, encode, read_states

# --- the packed masks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 64), (2, 7, 5), (8, 2, 13, 11), (1,), (0, 4), (3, 0, 2)])
def test_encode_decode_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    masks = rng.random(shape) < 0.3
    back = decode(encode(masks))
    assert back.dtype == bool and back.shape == shape and (back == masks).all()


def test_encoded_masks_are_small_and_bad_input_is_refused():
    disk = np.hypot(*np.mgrid[-32:32, -32:32]) < 20
    assert len(encode(np.stack([disk, disk]))) < 2 * 64 * 64 / 8  # fewer bytes than the bits themselves
    with pytest.raises(ValueError, match="masks"):
        encode(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="blob"):
        decode(None)  # type: ignore[arg-type]
    blob = encode(disk)
    for bad in (blob[:3], blob[:-4], blob[:1] + b"\xff" * 8 + blob[9:]):
        with pytest.raises(ValueError, match="blob: not the bytes of encode"):
            decode(bad)


# --- n_shown and effort_seconds, by hand -----------------------------------------------------------------------

MODEL = EffortModel(c_click=2.0, c_inspect=1.0, b_choose=0.5)


def _records(dices, so_far, last_clicks, shown=8):
    return [{"iteration": i + 1, "dice": d, "clicks_so_far": c, "n_shown": shown,
             "click_made": i < len(dices) - 1 or last_clicks > 0,
             "n_clicks": (so_far[i + 1] - c) if i < len(dices) - 1 else last_clicks}
            for i, (d, c) in enumerate(zip(dices, so_far))]


def test_step_effort_by_hand_and_the_session_effort_is_their_sum():
    # Start: 2 clicks; one correction after iterations 1 and 2; K = 8 (3 bits) every iteration.
    steps = _records([0.5, 0.95, 0.97], [2, 3, 4], last_clicks=0)
    # iteration 1: 2 start clicks * 2 + 1 inspection + 0.5 * 3 bits = 6.5; later: 1 click * 2 + 1 + 1.5 = 4.5
    assert step_effort(steps, MODEL) == [6.5, 4.5, 4.5]
    assert session_metrics(steps, effort_model=MODEL, effort_target=0.9)["effort_s"] == 6.5 + 4.5  # reached at 2
    assert session_metrics(steps, effort_model=MODEL, effort_target=0.99)["effort_s"] == 6.5 + 4.5 + 4.5  # never
    # Never reached, with corrections after the last proposal: they count too (no step follows them).
    tail = _records([0.5, 0.6, 0.7], [2, 3, 4], last_clicks=2)
    assert session_metrics(tail, effort_model=MODEL)["effort_s"] == sum(step_effort(tail, MODEL)) + 2 * 2.0
    single = _records([0.5, 0.95], [2, 3], last_clicks=1, shown=1)
    assert step_effort(single, MODEL) == [2 * 2 + 1, 2 + 1]  # one candidate: no choice to make
    assert [s["effort_seconds"] for s in priced_steps(single, MODEL)] == [5.0, 3.0]


def test_records_without_n_shown_count_their_candidates():
    steps = [{k: v for k, v in s.items() if k != "n_shown"} | {"candidate_dice": [0.1] * 4}
             for s in _records([0.5, 0.95], [2, 3], last_clicks=1)]
    assert step_effort(steps, MODEL) == [4 + 1 + 0.5 * 2, 2 + 1 + 0.5 * 2]
    assert effort_counts(steps).choice_bits == 4.0


# --- a run folder stands alone ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("steplog")
    out = {}
    for label, kw in {"probseg-k4": dict(method="probseg", k=4), "unet": dict(method="unet-complete", k=4)}.items():
        out[label] = root / label
        settings = RunSettings.from_dict({"n_sessions": 3, "max_iters": 5, "early_stop": False, "c_click": 2.0,
                                          "c_inspect": 1.0, "b_choose": 0.5, **kw})
        run(settings, out=out[label], workers=0, progress=False)
    return out


def test_a_run_stores_n_shown_priced_effort_and_first_states(arm_dirs):
    for label, shown in (("probseg-k4", 4), ("unet", 1)):
        steps = pd.read_parquet(arm_dirs[label] / "steps.parquet").sort_values(["session", "iteration"])
        sessions = pd.read_parquet(arm_dirs[label] / "sessions.parquet").set_index("session")
        assert (steps["n_shown"] == shown).all()
        for session, g in steps.groupby("session"):
            before = np.concatenate([[0], g["clicks_so_far"].to_numpy()[:-1]])
            by_hand = (g["clicks_so_far"] - before) * 2.0 + 1.0 + 0.5 * math.log2(shown)
            assert np.allclose(g["effort_seconds"], by_hand, rtol=0, atol=1e-12)
            reached = np.flatnonzero(g["dice"].to_numpy() >= 0.9)
            upto = g["effort_seconds"].to_numpy()[: reached[0] + 1] if len(reached) else g["effort_seconds"]
            tail = 0.0 if len(reached) else g["n_clicks"].iloc[-1] * 2.0
            assert sessions.loc[session, "effort_s"] == pytest.approx(float(np.sum(upto)) + tail, abs=1e-9)
            stored = g[STATE_KEYS[1]].notna().to_numpy()
            assert stored.tolist() == [it <= LOGGED_ITERS for it in g["iteration"]]
            assert g["start_state"].notna().tolist() == [it == 1 for it in g["iteration"]]


def test_stored_states_are_the_replayed_ones(arm_dirs):
    from simulator.figures import replay_session

    arm = load_run(arm_dirs["probseg-k4"])
    _, trace, case = replay_session(arm, 1)
    stored = read_states(arm.run_dir / "steps.parquet", 1)
    assert len(stored) == LOGGED_ITERS
    for t, s in zip(trace, stored):
        for key in ("shown_mask", "shown_seg", "masks", "segs", "mask", "seg"):
            assert np.array_equal(t[key], s[key]), key
        assert t["chosen"] == s["chosen"] and t["clicks"] == s["clicks"]
    assert np.array_equal(trace[0]["start_mask"], stored[0]["start_mask"])
    assert np.array_equal(stored[0]["after_mask"], stored[1]["shown_mask"])  # a partial method builds on it
    assert (stored[0]["start_seg"] <= case.target).all()


def test_filmstrip_needs_no_method(arm_dirs, tmp_path, monkeypatch):
    import simulator.methods
    from simulator.figures import plot_filmstrip

    def refuse(*args, **kwargs):
        raise AssertionError("a filmstrip must not build a method")

    monkeypatch.setattr(simulator.methods, "make_method", refuse)
    monkeypatch.setattr(RunSettings, "make_method", refuse)
    for label in arm_dirs:
        path, warning = plot_filmstrip(load_run(arm_dirs[label]), tmp_path / f"{label}.png", index=2)
        assert warning is None and path.stat().st_size > 1000


def _old_copy(run_dir: Path, old: Path) -> Path:
    """``run_dir`` as a run written before steps.parquet held n_shown, effort_seconds and states."""
    old.mkdir()
    for name in ("config.json", "sessions.parquet", "summary.json"):
        (old / name).write_bytes((run_dir / name).read_bytes())
    steps = pd.read_parquet(run_dir / "steps.parquet")
    steps.drop(columns=[*STATE_KEYS, "n_shown", "effort_seconds"]).to_parquet(old / "steps.parquet", index=False)
    return old


def test_old_run_folder_skips_the_filmstrip_with_a_warning(arm_dirs, tmp_path):
    from simulator.figures import plot_filmstrip
    from simulator.report import write_report

    old = _old_copy(arm_dirs["unet"], tmp_path / "old")
    with pytest.raises(ValueError, match="rerun the arm"):
        plot_filmstrip(load_run(old), tmp_path / "x.png")
    res = write_report([old, arm_dirs["probseg-k4"]], out=tmp_path / "report", n_boot=20)
    skipped = [w for w in res["warnings"] if "no filmstrip" in w]
    assert len(skipped) == 1 and "rerun the arm" in skipped[0] and "\n" not in skipped[0]
    assert (tmp_path / "report" / "filmstrip-probseg.png").is_file()
    assert not (tmp_path / "report" / "filmstrip-unet-complete.png").exists()


def test_a_methods_filmstrip_comes_from_an_arm_that_stores_states(arm_dirs, tmp_path):
    from simulator.report import write_report

    old = _old_copy(arm_dirs["unet"], tmp_path / "old")  # the reference: first in line, but no states
    res = write_report([old, arm_dirs["unet"]], out=tmp_path / "report", n_boot=20)
    assert not [w for w in res["warnings"] if "filmstrip" in w]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Example session of `unet-complete` (arm `unet`, session 0)" in text
