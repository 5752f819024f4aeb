"""Replay: a logged human session's inputs fed through the simulator's session again.

The server logs, with every action, the Dice of the segmentation the person then saw (never shown
to them). :func:`replay_check` rebuilds every logged case from a fresh
:class:`~simulator.annotate.human_session.HumanSession` (the simulator's streams, methods, brush and
step records) and compares, action by action, the Dice it reaches with the logged one, so a human
session can be set beside a robot session of the same case step by step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .human_session import ACTIONS, HumanSession
from .service import StudyService
from .study import Task

__all__ = ["logged_sessions", "replay_check"]


def _by_task(events: list[dict[str, Any]]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for e in events:
        if e["task"] >= 0 and e["type"] in ACTIONS:
            out.setdefault((e["participant"], e["task"]), []).append(e)
    return out


def logged_sessions(service: StudyService) -> Iterator[tuple[int, Task, HumanSession]]:
    """``(participant, task, case rebuilt from its logged actions)`` for every case with an action, in order."""
    for (pid, task_index), events in sorted(_by_task(service.store.events()).items()):
        yield pid, service.study.plan(pid)[task_index], service.rebuild(pid, task_index, events)


def replay_check(service: StudyService, atol: float = 1e-12) -> tuple[int, list[str]]:
    """Replay every logged action; return ``(actions replayed, mismatches)`` (one line per mismatch).

    A mismatch is an action after which the replayed Dice differs from the logged one by more than
    ``atol``, or a logged action the replay refuses.
    """
    n, bad = 0, []
    for (pid, task_index), events in sorted(_by_task(service.store.events()).items()):
        session = service.new_session(pid, service.study.plan(pid)[task_index])
        for e in events:
            n += 1
            where = f"participant {pid}, case {task_index}, event {e['seq']} ({e['type']})"
            try:
                session.apply(e["payload"])
            except ValueError as exc:
                bad.append(f"{where}: the replay refuses it: {exc}")
                break
            logged = float(e["result"]["dice"])
            if abs(session.shown_dice() - logged) > atol:
                bad.append(f"{where}: Dice {session.shown_dice():.6f} replayed, {logged:.6f} logged")
    return n, bad
