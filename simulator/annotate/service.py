"""The study behind the web page: participants' plans, their live cases and the log, without HTTP.

:class:`StudyService` answers two things: a participant's state (what the page draws) and an event
(checked, committed to the log, then applied). Live cases are kept in memory; after a restart a case
is rebuilt by applying its logged events again (:class:`~simulator.annotate.human_session.HumanSession`
is a pure function of them), so a reload, or a killed server, resumes where the person was.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import numpy as np

from simulator.datasets import SessionDataset, make_dataset
from simulator.methods import Method

from .human_session import ACTIONS, HumanSession
from .store import Store
from .study import UserStudy, Task

__all__ = ["Conflict", "StudyService", "encode_labels"]


class Conflict(Exception):
    """An event that does not follow the participant's last one (a stale page); carries the state."""

    def __init__(self, message: str, state: dict[str, Any]) -> None:
        super().__init__(message)
        self.state = state


def encode_labels(mask: np.ndarray, seg: np.ndarray) -> str:
    """A segmentation for the page: 0 undecided, 1 background, 2 foreground per pixel (row-major), packed
    four pixels to a byte (pixel i in bits 2(i % 4) and 2(i % 4) + 1 of byte i // 4), base64-encoded."""
    labels = np.where(mask, np.where(seg, 2, 1), 0).astype(np.uint8).ravel()
    labels = np.pad(labels, (0, -len(labels) % 4)).reshape(-1, 4)
    packed = labels[:, 0] | labels[:, 1] << 2 | labels[:, 2] << 4 | labels[:, 3] << 6
    return base64.b64encode(packed.astype(np.uint8).tobytes()).decode("ascii")


def encode_image(image: np.ndarray) -> str:
    """An image for the page: base64 of uint8 (H * W) grey levels, min to max stretched over 0..255."""
    lo, hi = float(image.min()), float(image.max())
    scaled = np.zeros(image.shape) if hi <= lo else (image - lo) / (hi - lo)
    return base64.b64encode(np.round(scaled * 255).astype(np.uint8).tobytes()).decode("ascii")


class StudyService:
    """A study's participants, cases and log (see the module docstring).

    Args:
        study: the validated study.
        store: its log.
    """

    def __init__(self, study: UserStudy, store: Store) -> None:
        self.study = study
        self.store = store
        self._lock = threading.RLock()
        self._methods: dict[int, Method] = {}
        self._dataset: SessionDataset | None = None
        self._live: dict[int, tuple[int, HumanSession]] = {}  # participant -> (task, its case)

    # -- parts ---------------------------------------------------------------------------------------
    def method(self, arm: int) -> Method:
        if arm not in self._methods:
            self._methods[arm] = self.study.run_settings(arm).make_method()
        return self._methods[arm]

    def new_session(self, participant: int, task: Task) -> HumanSession:
        """A fresh case of ``task`` for ``participant`` (nothing applied yet)."""
        settings = self.study.run_settings(task.arm)
        if self._dataset is None:
            self._dataset = make_dataset(settings.dataset, settings.n_sessions, start=settings.session.start)
        case = self._dataset.case(task.case, self.study.seed)
        return HumanSession(case, self.method(task.arm), settings.session, self.study.seed,
                            (self.study.seed, participant))

    def rebuild(self, participant: int, task_index: int, events: list[dict[str, Any]]) -> HumanSession:
        """The case ``task_index`` of ``participant`` after applying its logged ``events`` again."""
        session = self.new_session(participant, self.study.plan(participant)[task_index])
        for e in events:
            if e["task"] == task_index and e["type"] in ACTIONS:
                session.apply(e["payload"])
        return session

    # -- the participant's progress -----------------------------------------------------------------
    def _progress(self, participant: int) -> tuple[list[dict[str, Any]], bool, int]:
        """``(events, consented, current task index)``; the index equals the plan's length when all are done."""
        events = self.store.events(participant)
        consented = any(e["type"] == "consent" for e in events)
        done = sum(1 for e in events if e["result"].get("finished"))
        return events, consented, done

    def _session(self, participant: int, task_index: int, events: list[dict[str, Any]]) -> HumanSession:
        live = self._live.get(participant)
        if live is None or live[0] != task_index:
            live = (task_index, self.rebuild(participant, task_index, events))
            self._live[participant] = live
        return live[1]

    def _open(self, participant: int, task_index: int, plan: list[Task]) -> dict[str, Any]:
        """Start case ``task_index`` (its first proposal) now, so the log holds that proposal's latency and
        order beside the event that opened it; ``{}`` past the plan's end."""
        if task_index >= len(plan):
            return {}
        session = self.new_session(participant, plan[task_index])
        self._live[participant] = (task_index, session)
        assert session.it is not None
        return {"next_task": task_index, "next_iteration": 1, "next_order": session.it.order,
                "model_seconds": session.it.model_seconds}

    def state(self, participant: int, image: bool = True) -> dict[str, Any]:
        """What the page needs to draw: the plan position and, during a case, its segmentations and (unless
        ``image`` is False: the page has it already) its image."""
        with self._lock:
            events, consented, current = self._progress(participant)
            plan = self.study.plan(participant)
            n_practice = sum(t.kind == "practice" for t in plan)
            out: dict[str, Any] = {
                "participant": participant, "seq": len(events), "consented": consented,
                "n_tasks": len(plan), "n_practice": n_practice, "task": current,
                "finished": current >= len(plan), "case": None,
            }
            if consented and current < len(plan):
                session = self._session(participant, current, events)
                out["kind"] = plan[current].kind
                out["case"] = self._case_view(session, image)
            return out

    @staticmethod
    def _case_view(session: HumanSession, image: bool) -> dict[str, Any]:
        h, w = session.case.target.shape
        it = session.it
        assert it is not None
        return {
            "h": h, "w": w, **({"image": encode_image(session.case.image)} if image else {}),
            "current": encode_labels(*session.current),
            "candidates": [encode_labels(m, s) for m, s in session.candidates()],
            "k": session.n_ask, "chosen": session.chosen_position(), "iteration": it.number,
            "max_iters": session.cfg.max_iters, "n_corrections": len(it.corrections),
            "brush_radius": session.radius,
        }

    # -- events --------------------------------------------------------------------------------------
    def post(self, participant: int, event: dict[str, Any]) -> dict[str, Any]:
        """Check, log and apply one event; return the new state.

        ``event`` holds ``seq`` (the participant's event count so far), ``task`` (the plan position,
        -1 for consent), ``type`` and the type's fields. Resending the last logged event (same ``seq``,
        same content: a retry after a lost answer) changes nothing and returns the state.
        Raises:
            ValueError: the event cannot be applied now (the log and the case are unchanged).
            Conflict: ``seq`` or ``task`` is not the participant's current one.
        """
        with self._lock:
            events, consented, current = self._progress(participant)
            seq = event["seq"]
            if seq < len(events) and events[seq]["payload"] == event:
                return self.state(participant)
            if seq != len(events):
                raise Conflict(f"seq: expected {len(events)}, got {seq}", self.state(participant))
            plan = self.study.plan(participant)
            kind = event["type"]
            if kind == "consent":
                if consented:
                    raise ValueError("type: consent was already given")
                if event["task"] != -1:
                    raise ValueError("task: consent belongs to no task (-1)")
                opened = self._open(participant, 0, plan)
                self.store.append(participant, seq, -1, event, opened)
                return self.state(participant)
            if not consented:
                raise ValueError("type: consent comes first")
            if current >= len(plan):
                raise ValueError("type: every case is finished")
            if event["task"] != current:
                raise Conflict(f"task: expected {current}, got {event['task']}", self.state(participant))
            session = self._session(participant, current, events)
            if kind == "painted":
                assert session.it is not None
                result = {"iteration": session.it.number, "order": session.it.order,
                          "model_seconds": session.it.model_seconds}
                self.store.append(participant, seq, current, event, result)
                return self.state(participant, image=False)
            session.check(event)  # ValueError: nothing is logged or changed
            iteration = session.it.number if session.it else 0
            order = list(session.it.order) if session.it else []
            session.apply(event)
            result = {
                "iteration": iteration, "order": order, "dice": session.shown_dice(),
                "finished": session.finished, "chosen": session.chosen_position(),
            }
            if session.it is not None and session.it.number != iteration and not session.finished:
                result.update(next_iteration=session.it.number, next_order=session.it.order,
                              model_seconds=session.it.model_seconds)
            if session.finished:
                result.update(self._open(participant, current + 1, plan))
            try:
                self.store.append(participant, seq, current, event, result)
            except BaseException:
                self._live.pop(participant, None)  # the case moved on in memory only: rebuild it from the log
                raise
            # The page has this case's image already; the next case's comes with the answer that opens it.
            return self.state(participant, image=session.finished)


def default_db(study: UserStudy) -> Path:
    """Where a study's log lives unless ``--db`` says otherwise: ``results/annotate/NAME/log.sqlite``."""
    return Path("results") / "annotate" / study.name / "log.sqlite"
