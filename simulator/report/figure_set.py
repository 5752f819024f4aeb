"""Which figures a report draws (curves, NoC per arm, K sweep, a filmstrip per method)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..arms import Arm
from ..figures import (
    plot_dice_vs_clicks,
    plot_dice_vs_clicks_per_task,
    plot_dice_vs_effort,
    plot_dice_vs_iteration,
    plot_filmstrip,
    plot_k_sweep,
    plot_noc90,
)
from .real_tables import study_tasks


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "method"


def _figures(arms: Sequence[Arm], summary: pd.DataFrame, reference: str, out: Path, n_boot: int, seed: int
             ) -> tuple[list[tuple[str, Path]], list[str]]:
    figs: list[tuple[str, Path]] = []
    warns: list[str] = []
    # With several training seeds the curves of one seed are already a line per arm; the spread across
    # seeds has its own table, and the K sweep and NoC figures show every seed.
    seeds = sorted({a.train_seed for a in arms if a.train_seed is not None})
    curves, note = list(arms), ""
    if len(seeds) > 1:
        curves = [a for a in arms if a.train_seed in (None, seeds[0])]
        note = f" (training seed {seeds[0]}; see 'Across training seeds' for the others)"
    figs.append((f"Dice against clicks{note}", plot_dice_vs_clicks(curves, out / "dice-vs-clicks.png", n_boot, seed)))
    if len(study_tasks(arms)) > 1:
        figs.append(("Dice against clicks per task",
                     plot_dice_vs_clicks_per_task(arms, out / "dice-vs-clicks-per-task.png")))
    figs.append((f"Dice against annotator seconds{note}",
                 plot_dice_vs_effort(curves, out / "dice-vs-effort.png", n_boot, seed)))
    figs.append((f"Dice per iteration{note}", plot_dice_vs_iteration(curves, out / "dice-vs-iteration.png", n_boot, seed)))
    figs.append(("NoC@0.90 per arm", plot_noc90(summary, out / "noc90.png")))
    ks = plot_k_sweep(arms, summary, out / "k-sweep.png")
    if ks is not None:
        figs.append(("NoC@0.90 and effort against K", ks))
    ref = next(a for a in arms if a.label == reference)
    chosen: dict[str, Arm] = {ref.method: ref}
    for a in arms:
        chosen.setdefault(a.method, a)
    for method, arm in chosen.items():
        index = 0 if (arm.sessions["session"] == 0).any() else int(arm.sessions["session"].iloc[0])
        try:
            path, warning = plot_filmstrip(arm, out / f"filmstrip-{_safe_name(method)}.png", index=index)
        except (ValueError, OSError) as exc:  # e.g. a checkpoint no longer on this machine
            warns.append(f"no filmstrip for method {method!r} (arm {arm.label!r}): {exc}")
            continue
        figs.append((f"Example session of `{method}` (arm `{arm.label}`, session {index})", path))
        if warning:
            warns.append(warning)
    return figs, warns


