"""The log as the simulator's run directories, so ``probseg-report`` puts people beside robots.

Each (arm, participant) becomes one run directory, ``OUT/<arm>--human-<id>/``, holding
``steps.parquet``, ``sessions.parquet`` and ``config.json`` in :func:`simulator.runner.run`'s schema:
the ``session`` column is the case's index in the dataset, so a robot run of the same dataset and seed
with ``--n-sessions`` covering the cases holds the same ``(session, image, target)`` keys and pairs with
it. The rows carry ``annotator = human:<id>``; ``policy`` is ``human``. Practice cases and cases not
finished yet are left out. The step records are rebuilt by applying the logged actions again
(:mod:`simulator.annotate.replay`), which is how the server built them live.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from probseg.atomic import atomic_write
from simulator.metrics import EffortModel, priced_steps, session_metrics

from .replay import logged_sessions
from .service import StudyService

__all__ = ["export"]

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(label: str) -> str:
    return _SLUG.sub("-", label).strip("-").lower() or "arm"


def export(service: StudyService, out: str | Path, effort: EffortModel = EffortModel()) -> list[Path]:
    """Write one run directory per (arm, participant) with finished study cases; return their paths.

    Raises:
        ValueError: naming ``out`` when it cannot be written, or the log when it holds no finished case.
    """
    out = Path(out)
    study = service.study
    rows: dict[tuple[int, int], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for pid, task, session in logged_sessions(service):
        if task.kind != "study" or not session.finished:
            continue
        arm = study.arms[task.arm]
        settings = study.run_settings(task.arm)
        ident = {
            "session": task.case, "task": session.case.task, "image": session.case.image_id,
            "target": session.case.target_id, "start": study.start, "seed": study.seed, "method": arm.method,
            "policy": "human", "k": arm.k, "annotator": f"human:{pid}",
        }
        steps, sessions = rows.setdefault((task.arm, pid), ([], []))
        # n_shown as the simulator writes it; the states a filmstrip draws are not kept by a person's session
        steps.extend({**ident, **s, "n_shown": len(s["candidate_dice"])} for s in priced_steps(session.steps, effort))
        m = session_metrics(session.steps, corrections_per_iter=1, max_iters=settings.session.max_iters, effort_model=effort)
        sessions.append({**ident, **m, "session_seconds": sum(s["total_seconds"] for s in session.steps)})
    if not rows:
        raise ValueError(f"db: {service.store.path} holds no finished study case yet")
    written = []
    for (arm_index, pid), (steps, sessions) in sorted(rows.items()):
        run_dir = out / f"{_slug(study.arms[arm_index].label)}--human-{pid}"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"out: cannot create {run_dir}: {exc.strerror or exc}") from None
        settings = study.run_settings(arm_index)
        settings.n_sessions = max(study.cases) + 1
        method = service.method(arm_index)
        config = {
            "settings": settings.to_dict(), "session": settings.session.to_dict(),
            "effort": asdict(effort),
            "method": {"name": method.name, "kind": method.kind, "multi": method.multi},
            "annotator": f"human:{pid}", "study": study.to_dict(), "source": str(service.store.path),
        }
        steps_df = pd.DataFrame(steps).sort_values(["session", "iteration"], kind="stable")
        sessions_df = pd.DataFrame(sessions).sort_values("session", kind="stable")
        atomic_write(run_dir / "steps.parquet", lambda tmp, df=steps_df: df.to_parquet(tmp, index=False))
        atomic_write(run_dir / "sessions.parquet", lambda tmp, df=sessions_df: df.to_parquet(tmp, index=False))
        atomic_write(run_dir / "config.json",
                     lambda tmp, c=config: Path(tmp).write_text(json.dumps(c, indent=2, sort_keys=True, default=str)
                                                                + "\n"))
        written.append(run_dir)
    return written
