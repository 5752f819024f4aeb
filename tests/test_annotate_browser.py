"""probseg-annotate in a real browser (Debian's Chromium driven by Playwright) and under SIGKILL.

The server runs as its own process (``probseg-annotate serve``) bound to 127.0.0.1 on a free port,
and every test stops the servers it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from simulator.annotate.cli import main as annotate_main
from simulator.annotate.service import StudyService
from simulator.annotate.store import Store
from simulator.annotate.study import load_user_study

from test_annotate_api import PROBSEG_ARM, STUDY_HEADER, robot_actions

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = os.environ.get("PROBSEG_SCREENSHOTS")  # a folder to keep the screenshots in (default: tmp)

STUDY = f'name = "browser"\n{STUDY_HEADER}{PROBSEG_ARM}'  # one arm, 2 cases, 1 practice case


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``probseg-annotate serve`` in a subprocess; ``links`` holds the printed participant links."""

    def __init__(self, study: Path, db: Path, port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.err = db.parent / f"server-{port}.err"
        self._err = self.err.open("a")  # a file, not a pipe: a pipe nobody reads could fill up and stall the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.annotate.cli", "serve", str(study), "--participants", "1",
             "--port", str(port), "--db", str(db)],
            stdout=subprocess.PIPE, stderr=self._err, text=True, env=env, cwd=ROOT,
        )
        self.links: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("participant "):
                self.links.append(line.split(": ", 1)[1].strip().replace("localhost", "127.0.0.1"))
            if line.startswith("log: "):
                break
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # uvicorn binds after the links are printed
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"server did not start: {self.err.read_text()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture
def server(study_file: Path, tmp_path: Path) -> Iterator[Server]:
    srv = Server(study_file, tmp_path / "log.sqlite", free_port())
    try:
        yield srv
    finally:
        srv.stop()


def _shadow(study_file: Path, tmp_path: Path) -> StudyService:
    """The study with a log of its own, to plan a robot-following participant's actions."""
    study = load_user_study(study_file)
    return StudyService(study, Store(tmp_path / "shadow.sqlite", study.name, study.fingerprint()))


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_a_participant_in_chromium(server: Server, study_file: Path, tmp_path: Path) -> None:
    from playwright import sync_api  # the test extra installs it: a missing package fails, it does not skip

    shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    shadow = _shadow(study_file, tmp_path)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def settle() -> None:
                page.wait_for_function("document.body.dataset.busy === '0'", timeout=30_000)

            def at(row: int, col: int) -> tuple[float, float]:
                box = page.locator("#main").bounding_box()
                scale = float(page.locator("#main").get_attribute("data-scale"))
                return box["x"] + (col + 0.5) * scale, box["y"] + (row + 0.5) * scale

            def do(action: dict[str, Any]) -> None:
                kind = action["type"]
                if kind == "choose":
                    page.keyboard.press(str(action["position"]))
                elif kind == "click" and action["positive"]:
                    page.mouse.click(*at(action["row"], action["col"]))
                elif kind == "click":  # negative: right click, or Shift + left click (both are offered)
                    if action["row"] % 2:
                        page.mouse.click(*at(action["row"], action["col"]), button="right")
                    else:
                        page.keyboard.down("Shift")
                        page.mouse.click(*at(action["row"], action["col"]))
                        page.keyboard.up("Shift")
                elif kind == "next":
                    page.keyboard.press("Space")
                elif kind == "accept":
                    page.keyboard.press("Enter")
                settle()

            page.goto(server.links[0])
            page.wait_for_selector("#consent:not([hidden])")
            page.screenshot(path=str(shots / "consent.png"))
            page.click("#agree")
            settle()
            assert page.locator("#label").inner_text() == "Practice 1 of 1"
            # practice: choose, a brush stroke, back to clicks, a click, hand in
            do({"type": "choose", "position": 2})
            page.keyboard.press("b")
            page.keyboard.press("]")
            page.mouse.move(*at(4, 4))
            page.mouse.down()
            page.mouse.move(*at(4, 20), steps=8)
            page.mouse.up()
            settle()
            page.keyboard.press("b")
            do({"type": "click", "row": 16, "col": 16, "positive": True})
            do({"type": "click", "row": 1, "col": 1, "positive": False})   # right click
            do({"type": "click", "row": 2, "col": 30, "positive": False})  # Shift + click
            do({"type": "accept"})
            assert page.locator("#label").inner_text() == "Case 1 of 2"
            assert page.locator("#notice").inner_text() == "Practice done: the study cases begin now."
            assert page.locator("#progress").get_attribute("value") == "1"
            # the two study cases: a participant who follows the robot's rule, plus a click undone
            robot_dice = {}
            for task_index in (1, 2):
                actions, robot_dice[task_index] = robot_actions(shadow, 0, task_index)
                for i, action in enumerate(actions):
                    do(action)
                    if task_index == 1 and i == 0:
                        page.screenshot(path=str(shots / "case.png"))
                        do({"type": "click", "row": 0, "col": 0, "positive": True})
                        page.keyboard.press("Control+z")
                        settle()
            page.wait_for_selector("#finish:not([hidden])")
            page.screenshot(path=str(shots / "finish.png"))
            assert errors == []
        finally:
            browser.close()
    server.stop()

    study = load_user_study(study_file)
    store = Store(tmp_path / "log.sqlite", study.name, study.fingerprint())
    events = store.events()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "consent" and {"stroke", "undo", "choose", "click", "next", "accept", "painted"} <= set(kinds)
    strokes = [e["payload"] for e in events if e["type"] == "stroke"]
    assert len(strokes) == 1 and strokes[0]["radius"] == 2 and len(strokes[0]["points"]) > 5
    clicks = [e["payload"] for e in events if e["type"] == "click"]
    assert {c["pointer"] for c in clicks} == {"mouse"}
    assert [(c["row"], c["col"], c["positive"]) for c in clicks[:3]] == [(16, 16, True), (1, 1, False), (2, 30, False)]
    painted = [e["payload"] for e in events if e["type"] == "painted"]
    # every proposal the participant saw was reported painted, with the time from its request
    assert len(painted) == len({(e["task"], e["result"]["iteration"]) for e in events if e["type"] == "painted"})
    latencies = np.array([p["latency_ms"] for p in painted])
    print(f"candidates painted after the request: p50 {np.percentile(latencies, 50):.0f} ms, "
          f"p95 {np.percentile(latencies, 95):.0f} ms (n = {len(latencies)}, 32x32 disks, K = 4)")
    # the clock is the page's, and increases through the log
    times = [e["payload"]["t"] for e in events]
    assert times == sorted(times)

    out = tmp_path / "export"
    assert annotate_main(["export", str(study_file), "--db", str(store.path), "--out", str(out)]) == 0
    import pandas as pd

    steps = pd.read_parquet(out / "probseg-best-of-4--human-0" / "steps.parquet")
    # the browser participant who follows the robot's rule has the robot's Dice trajectory
    assert steps[steps["session"] == 0]["dice"].tolist() == robot_dice[1]
    assert steps[steps["session"] == 1]["dice"].tolist() == robot_dice[2]
    assert annotate_main(["replay", str(study_file), "--db", str(store.path)]) == 0
    from simulator.report import main as report_main

    assert report_main([str(out / "probseg-best-of-4--human-0"), "--out", str(tmp_path / "report"), "--no-figures",
                        "--n-boot", "20"]) == 0
    assert "probseg-best-of-4--human-0" in (tmp_path / "report" / "report.md").read_text()


def test_sigkill_loses_no_acknowledged_event(study_file: Path, tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite"
    port = free_port()
    srv = Server(study_file, db, port)
    acknowledged: list[dict[str, Any]] = []
    try:
        token = srv.links[0].split("?t=")[1]
        api = f"http://127.0.0.1:{port}/api/{token}"
        state = httpx.get(api + "/state").json()
        plan = [{"type": "consent", "task": -1}, {"type": "choose", "position": 1},
                {"type": "click", "row": 5, "col": 5, "positive": True},
                {"type": "click", "row": 6, "col": 20, "positive": False}, {"type": "undo"},
                {"type": "next"}, {"type": "choose", "position": 2}]
        for i, action in enumerate(plan):
            if i == 3:  # kill the server between two actions, then start it again on the same log
                srv.stop(signal.SIGKILL)
                assert srv.proc.returncode == -signal.SIGKILL
                srv = Server(study_file, db, port)
                state = httpx.get(api + "/state").json()
                assert state["seq"] == len(acknowledged)  # the page resumes where it was
            body = {"seq": state["seq"], "task": state["task"], "t": float(i), **action}
            r = httpx.post(api + "/event", json=body)
            assert r.status_code == 200, r.text
            acknowledged.append(body)
            state = r.json()
        srv.stop(signal.SIGKILL)
    finally:
        srv.stop()
    study = load_user_study(study_file)
    logged = [e["payload"] for e in Store(db, study.name, study.fingerprint()).events()]
    # every acknowledged event is in the log, as sent (the server adds the schema's defaults, e.g. pointer)
    assert len(logged) == len(acknowledged)
    assert all(log.items() >= sent.items() for log, sent in zip(logged, acknowledged))
