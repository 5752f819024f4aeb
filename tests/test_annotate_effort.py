"""fit-effort recovers the seconds a log was timed with, and probseg-simulate takes the effort file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from simulator.annotate.cli import main as annotate_main
from simulator.annotate.effort_fit import fit_effort, load_effort_file
from simulator.annotate.service import StudyService
from simulator.annotate.store import Store
from simulator.annotate.study import load_user_study
from simulator.cli import main as simulate_main

from test_annotate_api import write_study

C_INSPECT, B_CHOOSE, C_CLICK = 1.2, 0.4, 2.0  # seconds: the simulated participants' true costs


def timed_log(tmp_path: Path, n_participants: int, jitter: float = 0.0) -> StudyService:
    """A log of participants whose every choice takes C_INSPECT + B_CHOOSE log2(K) seconds and every
    click C_CLICK seconds (plus, with ``jitter``, a per-participant offset drawn from a seeded rng)."""
    study = load_user_study(write_study(tmp_path))  # arms: probseg K = 4, unet-complete K = 1
    service = StudyService(study, Store(tmp_path / "log.sqlite", study.name, study.fingerprint()))
    service.store.ensure_participants(n_participants)
    rng = np.random.default_rng(0)
    for pid in range(n_participants):
        slow = 1.0 + jitter * float(rng.uniform(-1, 1))
        t, seq = 1000.0, 0

        def post(action: dict, task: int, dt: float = 0.0) -> dict:
            nonlocal t, seq
            t += dt * 1000.0
            state = service.post(pid, {"seq": seq, "task": task, "t": t, **action})
            seq += 1
            return state

        state = post({"type": "consent"}, -1)
        while not state["finished"]:
            task, k = state["task"], state["case"]["k"]
            post({"type": "painted", "iteration": state["case"]["iteration"], "latency_ms": 5.0}, task, 0.3)
            post({"type": "choose", "position": 1}, task, slow * (C_INSPECT + B_CHOOSE * math.log2(k)))
            post({"type": "click", "row": 0, "col": 0, "positive": False}, task, slow * C_CLICK)
            post({"type": "undo"}, task, 0.5)
            post({"type": "click", "row": 31, "col": 31, "positive": False}, task, slow * C_CLICK)
            state = post({"type": "accept"}, task, 0.7)
    return service


def test_fit_recovers_the_costs_exactly(tmp_path: Path) -> None:
    service = timed_log(tmp_path, 2)
    fit = fit_effort(service.store.events(), service.study, n_boot=50)
    assert fit["n_participants"] == 2 and fit["n_choices"] == 2 * 4 and fit["n_corrections"] == 2 * 4 * 2
    e = fit["effort"]
    assert e["c_inspect"] == pytest.approx(C_INSPECT) and e["b_choose"] == pytest.approx(B_CHOOSE)
    assert e["c_click"] == pytest.approx(C_CLICK)
    # The other forms through the same two K values (1 and 4), by hand: a + b log2(K + 1) and a + c K.
    t1, t4 = C_INSPECT, C_INSPECT + 2 * B_CHOOSE
    b_hick = (t4 - t1) / (math.log2(5) - 1)
    assert fit["fits"]["log2(K+1).b"]["estimate"] == pytest.approx(b_hick)
    assert fit["fits"]["log2(K+1).a"]["estimate"] == pytest.approx(t1 - b_hick)
    assert fit["fits"]["K.c"]["estimate"] == pytest.approx((t4 - t1) / 3)
    # no spread between participants: every bootstrap resample gives the same values
    assert fit["fits"]["c_click"]["ci95"] == pytest.approx([C_CLICK, C_CLICK])


def test_bootstrap_over_participants(tmp_path: Path) -> None:
    fit = fit_effort((service := timed_log(tmp_path, 4, jitter=0.3)).store.events(), service.study, n_boot=200)
    for key in ("c_click", "log2(K).a", "log2(K).b", "log2(K+1).b", "K.c"):
        est, (lo, hi) = fit["fits"][key]["estimate"], fit["fits"][key]["ci95"]
        assert lo < est < hi, key
    assert fit_effort(service.store.events(), service.study, n_boot=200) == fit  # seeded


def test_effort_file_feeds_probseg_simulate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    service = timed_log(tmp_path, 2)
    effort_file = tmp_path / "effort.json"
    assert annotate_main(["fit-effort", str(service.study.path), "--db", str(service.store.path), "--out",
                          str(effort_file), "--n-boot", "20"]) == 0
    model = load_effort_file(effort_file)
    assert (model.c_click, model.c_inspect, model.b_choose) == pytest.approx((C_CLICK, C_INSPECT, B_CHOOSE))
    out = tmp_path / "run"
    assert simulate_main(["--method", "unet-complete", "--n-sessions", "2", "--max-iters", "3", "--workers", "0",
                          "--no-progress", "--out", str(out), "--effort-model", str(effort_file)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["effort"] == pytest.approx({"c_click": C_CLICK, "c_inspect": C_INSPECT, "b_choose": B_CHOOSE})
    capsys.readouterr()
    (tmp_path / "bad.json").write_text('{"effort": {"c_click": "fast"}}')
    assert simulate_main(["--effort-model", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "effort_model: " in err and "effort.c_click must be a number" in err


def test_a_study_reads_a_fitted_effort_file(tmp_path: Path) -> None:
    from simulator.study_schema import parse_study

    (tmp_path / "effort.json").write_text(json.dumps({"effort": {"c_click": 1.5, "c_inspect": 0.75, "b_choose": 0.25}}))
    raw = {"name": "fitted", "arms": [{"method": "unet-complete"}], "effort": {"file": "effort.json"},
           "reference": "unet-complete best-of-k K=8"}
    study = parse_study(raw, tmp_path / "study.toml")  # relative to the study file's folder
    assert {k: study.arms[0].settings[k] for k in ("c_click", "c_inspect", "b_choose")} == {
        "c_click": 1.5, "c_inspect": 0.75, "b_choose": 0.25}
    with pytest.raises(ValueError, match="^effort.file: give the constants either"):
        parse_study({**raw, "effort": {"file": "effort.json", "c_click": 2.0}}, tmp_path / "study.toml")
    with pytest.raises(ValueError, match="^effort.file: cannot read"):
        parse_study({**raw, "effort": {"file": "missing.json"}}, tmp_path / "study.toml")


def test_fit_needs_two_values_of_k(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, 'name = "one-k"\ncases = 1\n[[arms]]\nmethod = "probseg"\nk = 4\n')
    study = load_user_study(study_file)
    service = StudyService(study, Store(tmp_path / "log.sqlite", study.name, study.fingerprint()))
    service.store.ensure_participants(1)
    with pytest.raises(ValueError, match="db: the log holds no timed choice"):
        fit_effort(service.store.events(), study)
    for seq, action in enumerate([{"type": "consent", "task": -1}, {"type": "painted", "iteration": 1, "latency_ms": 1.0},
                                  {"type": "choose", "position": 1}, {"type": "click", "row": 1, "col": 1,
                                                                      "positive": True}]):
        service.post(0, {"seq": seq, "task": 0, "t": 100.0 * (seq + 1), **action})
    with pytest.raises(ValueError, match="at least two values of K"):
        fit_effort(service.store.events(), study)
