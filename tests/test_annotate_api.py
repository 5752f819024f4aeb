"""probseg-annotate without a browser: the study file, the JSON API, the log, export and replay."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from simulator.annotate.cli import main as annotate_main
from simulator.annotate.human_session import HumanSession
from simulator.annotate.server import MAX_BODY, create_app
from simulator.annotate.service import StudyService, encode_labels
from simulator.annotate.store import Store
from simulator.annotate.study import latin_square_row, load_user_study, parse_user_study
from simulator.datasets import make_dataset, session_rng
from simulator.policies import make_policy
from simulator.session import STEP_KEYS, SessionConfig, run_session

# The study of these tests and of the browser tests: 2 cases, 1 practice case, 4 proposals at most.
STUDY_HEADER = 'dataset = "disks"\ncases = 2\npractice = 1\nmax_iters = 4\n'
PROBSEG_ARM = '[[arms]]\nlabel = "probseg best-of-4"\nmethod = "probseg"\nk = 4\n'
STUDY = f'name = "pilot"\n{STUDY_HEADER}{PROBSEG_ARM}[[arms]]\nmethod = "unet-complete"\n'


def write_study(tmp: Path, text: str = STUDY) -> Path:
    path = tmp / "study.toml"
    path.write_text(text)
    return path


@pytest.fixture
def service(tmp_path: Path) -> StudyService:
    study = load_user_study(write_study(tmp_path))
    return StudyService(study, Store(tmp_path / "log.sqlite", study.name, study.fingerprint()))


@pytest.fixture
def client(service: StudyService) -> tuple[TestClient, list[str]]:
    tokens = [t for _, t in service.store.ensure_participants(2)]
    return TestClient(create_app(service)), tokens


def robot_actions(service: StudyService, participant: int, task_index: int) -> tuple[list[dict[str, Any]], list[float]]:
    """What a participant who follows the robot's rule does in a case: the oracle's choice, the RITM
    clicks, Enter when the robot is done. Returns the actions (choice positions resolved on the
    participant's screen by content) and the robot's Dice per step from ``run_session``."""
    study = service.study
    task = study.plan(participant)[task_index]
    settings = study.run_settings(task.arm)
    case = make_dataset(settings.dataset, settings.n_sessions).case(task.case, study.seed)
    trace: list[dict[str, Any]] = []
    steps = run_session(case.image, case.target, service.method(task.arm), make_policy("best-of-k"),
                        settings.session, session_rng(study.seed, task.case), trace=trace)
    shadow = service.new_session(participant, task)  # to find the chosen candidate on this participant's screen
    actions: list[dict[str, Any]] = []
    for step, t in zip(steps, trace):
        if t["chosen"] < 0:
            pos = 0
        else:
            want = encode_labels(t["masks"][t["chosen"]], t["segs"][t["chosen"]])
            pos = 1 + [encode_labels(m, s) for m, s in shadow.candidates()].index(want)
        todo = [{"type": "choose", "position": pos}]
        todo += [{"type": "click", "row": r, "col": c, "positive": bool(p)} for r, c, p in step["clicks"]]
        todo.append({"type": "accept" if step["stop"] == "done" else "next"})
        for a in todo:
            shadow.apply(a)
        actions += todo
    return actions, [s["dice"] for s in steps]


def post(client: TestClient, token: str, seq: int, task: int, action: dict[str, Any], t: float = 10.0):
    return client.post(f"/api/{token}/event", json={"seq": seq, "task": task, "t": t, **action})


def play(client: TestClient, token: str, state: dict[str, Any], actions: list[dict[str, Any]]) -> dict[str, Any]:
    for a in actions:
        r = post(client, token, state["seq"], -1 if a["type"] == "consent" else state["task"], a)
        assert r.status_code == 200, r.text
        state = r.json()
    return state


# -- the study file ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[[arms]]\nmethod = "nope"\n', "arms[0].method: unknown value 'nope'"),
    ('name = "x"\ncases = 0\n[[arms]]\nmethod = "probseg"\n', "cases: expected a number of cases >= 1"),
    ('name = "x"\n[[arms]]\nmethod = "probseg"\nk = 0\n', "arms[0].k: expected an integer >= 1"),
    ('name = "x"\nmax_iter = 3\n[[arms]]\nmethod = "probseg"\n', "max_iter: unknown field"),
    ('name = "x"\n', "arms: missing"),
    ('name = "x"\ncases = 1001\n[[arms]]\nmethod = "probseg"\n', "needs 1001 sessions"),
    ('name = "x"\ndataset = "nowhere"\n[[arms]]\nmethod = "probseg"\n', "dataset: unknown dataset"),
    ('name = "x"\n[[arms]]\nmethod = "probseg"\n[[arms]]\nmethod = "probseg"\n', "two arms are labelled"),
    ('name = "x" y', "not valid TOML"),
])
def test_bad_study_is_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    import uvicorn

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a bad study must not be served")

    monkeypatch.setattr(uvicorn, "run", never)
    path = write_study(tmp_path, text)
    assert annotate_main(["serve", str(path), "--db", str(tmp_path / "log.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("probseg-annotate: error: ") and message in err
    assert not (tmp_path / "log.sqlite").exists()


def test_latin_square_balances_order() -> None:
    for n in (2, 3, 4, 6):
        rows = [latin_square_row(n, r) for r in range(n)]
        for row in rows:
            assert sorted(row) == list(range(n))
        for pos in range(n):  # every arm at every position once
            assert sorted(r[pos] for r in rows) == list(range(n))
        if n % 2 == 0:  # Williams: every ordered pair of neighbours once
            pairs = [(r[i], r[i + 1]) for r in rows for i in range(n - 1)]
            assert len(set(pairs)) == n * (n - 1)
    assert latin_square_row(4, 5) == latin_square_row(4, 1)


def test_plan_practice_first_then_arms_in_latin_order(tmp_path: Path) -> None:
    study = load_user_study(write_study(tmp_path))
    assert study.cases == (0, 1) and study.practice == (2,)
    p0, p1 = study.plan(0), study.plan(1)
    assert [(t.kind, t.arm, t.case) for t in p0] == [
        ("practice", 0, 2), ("study", 0, 0), ("study", 0, 1), ("study", 1, 0), ("study", 1, 1)]
    assert [t.arm for t in p1] == [1, 1, 1, 0, 0]


def test_check_prints_the_arms_and_plans(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert annotate_main(["check", str(write_study(tmp_path))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pilot: 2 cases, 1 practice, dataset disks"
    assert out[1:3] == ["  arm 0: probseg best-of-4 (probseg, K=4)", "  arm 1: unet-complete K=1 (unet-complete, K=1)"]
    assert out[4] == ("  participant 1: practice case 2 arm 1, study case 0 arm 1, study case 1 arm 1, "
                      "study case 0 arm 0, study case 1 arm 0")


# -- the session is the simulator's --------------------------------------------------------------------
@pytest.mark.parametrize("arm", [0, 1])
def test_participant_following_the_robot_gets_the_robots_dice(service: StudyService, arm: int) -> None:
    task_index = 1 if arm == 0 else 3  # participant 0 does arm 0's cases first
    actions, robot_dice = robot_actions(service, 0, task_index)
    session = service.new_session(0, service.study.plan(0)[task_index])
    for a in actions:
        session.apply(a)
    assert session.finished
    assert [s["dice"] for s in session.steps] == robot_dice


@pytest.mark.parametrize("method, k", [("probseg", 8), ("probseg-mean", 1), ("random-walker-partial", 1)])
def test_robot_following_participant_matches_every_step_record(tmp_path: Path, method: str, k: int) -> None:
    """Longer sessions: every step record but the timings. On these 6 disk cases the robot rejects every
    candidate at times (probseg, probseg-mean) and runs out of iterations after error clicks (the walker)."""
    study = parse_user_study({"name": "long", "cases": 6, "max_iters": 6, "arms": [{"method": method, "k": k}]})
    service = StudyService(study, Store(tmp_path / "log.sqlite", study.name, study.fingerprint()))
    for task_index, task in enumerate(study.plan(0)):
        actions, _ = robot_actions(service, 0, task_index)
        session = service.new_session(0, task)
        for a in actions:
            session.apply(a)
        settings = study.run_settings(task.arm)
        case = make_dataset(settings.dataset, settings.n_sessions).case(task.case, study.seed)
        robot = run_session(case.image, case.target, service.method(task.arm), make_policy("best-of-k"),
                            settings.session, session_rng(study.seed, task.case))
        # ``chosen`` may name another of several identical candidates (the participant picks by what they see)
        drop = ("model_seconds", "total_seconds", "click_reason", "candidate_scores", "chosen")
        assert [{k_: v for k_, v in s.items() if k_ not in drop} for s in session.steps] == \
            [{k_: v for k_, v in s.items() if k_ not in drop and k_ in STEP_KEYS} for s in robot]  # a person's: no states
        assert [s["chosen"] < 0 for s in session.steps] == [s["chosen"] < 0 for s in robot]


def test_undo_restores_the_state_exactly(service: StudyService) -> None:
    session = service.new_session(0, service.study.plan(0)[1])
    session.apply({"type": "choose", "position": 2})
    before = [a.copy() for a in session.current]
    session.apply({"type": "click", "row": 3, "col": 3, "positive": True})
    session.apply({"type": "stroke", "points": [[0, 0], [5, 9]], "positive": False, "radius": 1})
    assert not np.array_equal(session.current[0], before[0])
    session.apply({"type": "undo"})
    session.apply({"type": "undo"})
    assert all(np.array_equal(a, b) for a, b in zip(session.current, before))
    session.apply({"type": "undo"})  # then the choice
    assert session.chosen_position() is None


# -- the API ---------------------------------------------------------------------------------------------
def test_whole_flow_resume_export_and_report(client: tuple[TestClient, list[str]], service: StudyService,
                                             tmp_path: Path) -> None:
    c, (token, _) = client
    assert c.get("/").status_code == 200 and "<canvas" in c.get("/").text
    state = c.get(f"/api/{token}/state").json()
    assert not state["consented"] and state["case"] is None and state["n_tasks"] == 5
    state = play(c, token, state, [{"type": "consent"}])
    assert state["kind"] == "practice" and state["case"]["k"] == 4 and len(state["case"]["candidates"]) == 4
    # practice: a choice, a stroke, an undo, a click, hand in
    state = play(c, token, state, [
        {"type": "choose", "position": 1},
        {"type": "stroke", "points": [[2, 2], [2, 8]], "positive": True, "radius": 1},
        {"type": "undo"}, {"type": "click", "row": 16, "col": 16, "positive": True}, {"type": "accept"}])
    assert state["task"] == 1 and state["kind"] == "study" and "image" in state["case"]  # a new case: its image
    assert "image" not in play(c, token, state, [{"type": "painted", "iteration": 1, "latency_ms": 3.0}])["case"]
    state = c.get(f"/api/{token}/state").json()
    robot_dice = {}
    for task_index in range(1, 5):
        if task_index == 2:  # a reload (a new server on the same log) resumes where the person was
            actions, robot_dice[task_index] = robot_actions(service, 0, task_index)
            half = len(actions) // 2
            state = play(c, token, state, actions[:half])
            state = c.get(f"/api/{token}/state").json()  # the image comes with the state, not with each answer
            fresh = StudyService(service.study, Store(service.store.path, service.study.name,
                                                      service.study.fingerprint()))
            c2 = TestClient(create_app(fresh))
            again = c2.get(f"/api/{token}/state").json()
            assert again == state
            state = play(c2, token, again, actions[half:])
            continue
        actions, robot_dice[task_index] = robot_actions(service, 0, task_index)
        state = play(c, token, state, [{"type": "painted", "iteration": 1, "latency_ms": 12.5}, *actions])
    assert state["finished"] and state["case"] is None
    # every proposal's model latency and screen order is logged beside the event that brought it
    log = service.store.events(0)
    opened = [e["result"] for e in log if "next_order" in e["result"]]
    n_proposals = sum(1 for e in log if e["type"] == "next") + 5  # each case's first proposal, and each "next"
    assert len(opened) == n_proposals and all(r["model_seconds"] > 0 and len(r["next_order"]) in (1, 4) for r in opened)
    assert log[0]["type"] == "consent" and log[0]["result"]["next_task"] == 0
    assert post(c, token, state["seq"], 5, {"type": "next"}).status_code == 422

    out = tmp_path / "export"
    assert annotate_main(["export", str(service.study.path), "--db", str(service.store.path), "--out", str(out)]) == 0
    runs = sorted(p.name for p in out.iterdir())
    assert runs == ["probseg-best-of-4--human-0", "unet-complete-k-1--human-0"]
    import pandas as pd

    steps = pd.read_parquet(out / runs[0] / "steps.parquet")
    sessions = pd.read_parquet(out / runs[0] / "sessions.parquet")
    assert set(steps["annotator"]) == {"human:0"} and list(sessions["session"]) == [0, 1]
    assert steps[steps["session"] == 1]["dice"].tolist() == robot_dice[2]
    # the columns a robot run writes: candidates shown (none on a hand-in step) and each step's priced effort
    assert 4 in set(steps["n_shown"]) and set(steps["n_shown"]) <= {0, 4}
    for session, g in steps.groupby("session"):
        clicks = np.diff(np.concatenate([[0], g["clicks_so_far"].to_numpy()]))
        by_hand = clicks * 2.45 + 1.35 + 0.15 * np.log2(np.maximum(1, g["n_shown"].to_numpy()))
        assert np.allclose(g["effort_seconds"], by_hand, rtol=0, atol=1e-12)
    assert json.loads((out / runs[0] / "config.json").read_text())["settings"]["policy"] == "human"

    # probseg-report reads the export beside a robot arm of the same cases
    from simulator.report import main as report_main
    from simulator.runner import RunSettings, run

    robot = tmp_path / "robot"
    run(RunSettings(method="unet-complete", policy="best-of-k", n_sessions=2,
                    session=SessionConfig(max_iters=4)), out=robot, workers=0,
        progress=False)
    report = tmp_path / "report"
    assert report_main([str(robot), str(out / runs[1]), str(out / runs[0]), "--out", str(report), "--no-figures",
                        "--n-boot", "50"]) == 0
    summary = pd.read_csv(report / "summary.csv")
    assert list(summary["label"]) == ["robot", runs[1], runs[0]]
    # the person who followed the robot's rule under the robot's arm scores what the robot scored
    cmp = summary.set_index("label")
    assert cmp.loc[runs[1], "noc_90"] == pytest.approx(cmp.loc["robot", "noc_90"])


def test_bad_events_get_422_and_change_nothing(client: tuple[TestClient, list[str]], service: StudyService) -> None:
    c, (token, _) = client
    state = play(c, token, c.get(f"/api/{token}/state").json(), [{"type": "consent"}])
    bad = [
        {"type": "click", "row": 1, "col": 1, "positive": True},           # before a choice
        {"type": "choose", "position": 5},                                # K = 4
        {"type": "choose", "position": -1},
        {"type": "choose", "position": "1"},
        {"type": "undo", "extra": 1},
        {"type": "jump"},
        {"type": "next"},                                                 # before a choice
        {"type": "stroke", "points": [], "positive": True, "radius": 1},
        {"type": "consent"},                                              # twice
    ]
    for action in bad:
        r = post(c, token, state["seq"], state["task"], action)
        assert r.status_code == 422, (action, r.text)
    play(c, token, state, [{"type": "choose", "position": 1}])
    state = c.get(f"/api/{token}/state").json()
    n_events = len(service.store.events())
    for action in [{"type": "click", "row": 32, "col": 0, "positive": True},  # outside the 32x32 image
                   {"type": "click", "row": 0, "col": 0, "positive": 1},
                   {"type": "stroke", "points": [[0, 0], [1, 99]], "positive": True, "radius": 1},
                   {"type": "choose", "position": 2, "t": float("nan")}]:
        r = c.post(f"/api/{token}/event", content=json.dumps(
            {"seq": state["seq"], "task": state["task"], "t": 1.0, **action}).replace("NaN", "NaN"))
        assert r.status_code == 422, (action, r.text)
    state_after = c.get(f"/api/{token}/state").json()
    assert state_after == state and len(service.store.events()) == n_events
    # a stale page: wrong seq or task gets 409 with the state to resync from
    r = post(c, token, state["seq"] + 1, state["task"], {"type": "undo"})
    assert r.status_code == 409 and r.json()["state"] == state
    r = post(c, token, state["seq"], state["task"] + 1, {"type": "undo"})
    assert r.status_code == 409
    # a retry of the last logged event (its answer was lost) is answered again, not logged twice
    last = service.store.events()[-1]["payload"]
    assert c.post(f"/api/{token}/event", json=last).json() == state
    assert len(service.store.events()) == n_events


def test_tokens_paths_and_body_size(client: tuple[TestClient, list[str]], service: StudyService) -> None:
    c, (token0, token1) = client
    assert c.get("/api/not-a-token-at-all/state").status_code == 404
    assert c.get("/api/../state").status_code == 404
    assert post(c, "WRONGTOKEN123", 0, -1, {"type": "consent"}).status_code == 404
    play(c, token0, c.get(f"/api/{token0}/state").json(), [{"type": "consent"}])
    # each token is its own participant
    assert c.get(f"/api/{token1}/state").json()["participant"] == 1
    assert not c.get(f"/api/{token1}/state").json()["consented"]
    for path in ("/static/../study.toml", "/study.toml", "/..%2f..%2fetc%2fpasswd", "/app.js/../../log.sqlite"):
        assert c.get(path).status_code == 404, path
    big = {"seq": 1, "task": 0, "t": 1.0, "type": "stroke", "positive": True, "radius": 1,
           "points": [[1, 1]] * (MAX_BODY // 4)}
    r = c.post(f"/api/{token0}/event", json=big)
    assert r.status_code == 413
    assert len(service.store.events()) == 1


def test_log_is_wal_and_refuses_another_study(service: StudyService, tmp_path: Path) -> None:
    service.store.ensure_participants(1)
    with sqlite3.connect(service.store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = parse_user_study({"name": "other", "arms": [{"method": "probseg"}]})
    with pytest.raises(ValueError, match="db: .* another study"):
        Store(service.store.path, other.name, other.fingerprint())


def test_replay_equals_live_and_catches_a_tampered_log(client: tuple[TestClient, list[str]],
                                                       service: StudyService, capsys: pytest.CaptureFixture) -> None:
    c, (token, _) = client
    state = play(c, token, c.get(f"/api/{token}/state").json(), [{"type": "consent"}])
    state = play(c, token, state, [
        {"type": "choose", "position": 3}, {"type": "click", "row": 10, "col": 12, "positive": False},
        {"type": "stroke", "points": [[4, 4], [20, 20]], "positive": True, "radius": 2}, {"type": "next"},
        {"type": "choose", "position": 0}, {"type": "click", "row": 30, "col": 1, "positive": True},
        {"type": "undo"}, {"type": "accept"}])
    args = ["replay", str(service.study.path), "--db", str(service.store.path)]
    assert annotate_main(args) == 0
    assert "8 actions replayed, 0 mismatches" in capsys.readouterr().out
    with sqlite3.connect(service.store.path) as db:
        (raw,) = db.execute("SELECT result FROM events WHERE seq = 3").fetchone()
        result = json.loads(raw)
        result["dice"] += 0.01
        db.execute("UPDATE events SET result = ? WHERE seq = 3", (json.dumps(result),))
    assert annotate_main(args) == 1
    assert "1 mismatches" in capsys.readouterr().out


def test_serve_warns_on_a_public_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: seen.update(host=host, port=port))
    path = write_study(tmp_path)
    assert annotate_main(["serve", str(path), "--db", str(tmp_path / "log.sqlite"), "--participants", "3",
                          "--host", "0.0.0.0", "--port", "8123"]) == 0
    captured = capsys.readouterr()
    links = [line for line in captured.out.splitlines() if line.startswith("participant ")]
    assert len(links) == 3 and all("http://0.0.0.0:8123/?t=" in line for line in links)
    assert "warning: serving on 0.0.0.0" in captured.err and seen == {"host": "0.0.0.0", "port": 8123}
    # the same log gives the same links again
    assert annotate_main(["serve", str(path), "--db", str(tmp_path / "log.sqlite"), "--participants", "3",
                          "--port", "8123"]) == 0
    again = [line for line in capsys.readouterr().out.splitlines() if line.startswith("participant ")]
    assert [a.split("?t=")[1] for a in again] == [b.split("?t=")[1] for b in links]


def test_human_session_refuses_without_changing(service: StudyService) -> None:
    session: HumanSession = service.new_session(0, service.study.plan(0)[1])
    view = [a.copy() for a in session.current]
    for action in ({"type": "click", "row": 0, "col": 0, "positive": True}, {"type": "undo"}, {"type": "next"}):
        with pytest.raises(ValueError):
            session.apply(action)
    assert all(np.array_equal(a, b) for a, b in zip(session.current, view)) and session.steps == []
