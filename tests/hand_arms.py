"""Arms made by hand (no run, no model) for the tests of simulator.arms, curves, figures and report.

Imported by the test modules (pytest puts tests/ on the path); not a test module itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.arms import Arm


def hand_arm(
    sessions: Sequence[dict[str, Any]],
    label: str = "arm",
    settings: dict[str, Any] | None = None,
    effort: dict[str, float] | None = None,
    **arm_fields: Any,
) -> Arm:
    """An :class:`Arm` from per-session dicts.

    Each dict holds the session's columns (``session``, ``image``, ``target``, metrics, ...) and a
    ``steps`` list of per-iteration dicts (``dice``, ``clicks_so_far``, optional ``n_candidates``
    (default 1), ``click_made`` (default True), ``n_clicks`` (default 1)); iterations count from 1.
    """
    rows, steps = [], []
    for s in sessions:
        row = {k: v for k, v in s.items() if k != "steps"}
        row.setdefault("target", "mask")
        rows.append(row)
        for i, st in enumerate(s["steps"], start=1):
            steps.append({"session": row["session"], "iteration": i, "dice": float(st["dice"]),
                          "clicks_so_far": int(st["clicks_so_far"]), "click_made": bool(st.get("click_made", True)),
                          "n_clicks": int(st.get("n_clicks", 1)), "n_candidates": int(st.get("n_candidates", 1))})
    config = {"settings": {"method": "m", "policy": "first", "k": 1, **(settings or {})},
              "method": {"kind": "complete"}, "effort": effort or {}}
    return Arm(label=label, run_dir=Path("."), config=config, sessions=pd.DataFrame(rows),
               steps=pd.DataFrame(steps), **arm_fields)
