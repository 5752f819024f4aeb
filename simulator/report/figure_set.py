"""Which figures a report draws (curves, NoC per arm, K sweep, a filmstrip per method), all with one
palette, and their section of ``report.md``."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from pathlib import Path


from probseg.lazy import lazy_import

from ..arms import Arm
from ..figures import (
    Palette,
    plot_dice_vs_clicks,
    plot_dice_vs_clicks_per_task,
    plot_dice_vs_effort,
    plot_dice_vs_iteration,
    plot_filmstrip,
    plot_k_sweep,
    plot_noc90,
)
from .real_tables import study_tasks

pd = lazy_import("pandas")  # imported on first use: commands start faster


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "method"


def draw_figures(arms: Sequence[Arm], summary: pd.DataFrame, reference: str, out: Path, n_boot: int, seed: int,
             references: Collection[str] = ()) -> tuple[list[tuple[str, Path]], list[str]]:
    """Draw the report's figures into ``out``: ``([(title, path)], warnings)``.

    One :class:`~simulator.figures.Palette` for all of them, so a method has one colour throughout;
    ``references`` (the labels of the reference arms) are drawn in every panel of their group.
    """
    palette = Palette(arms)
    style = {"palette": palette, "references": set(references) | {reference}}
    figs: list[tuple[str, Path]] = []
    warns: list[str] = []
    # With several training seeds the curves of one seed are already a line per arm; the spread across
    # seeds has its own table, and the K sweep and NoC figures show every seed.
    seeds = sorted({a.train_seed for a in arms if a.train_seed is not None})
    curves, note = list(arms), ""
    if len(seeds) > 1:
        curves = [a for a in arms if a.train_seed in (None, seeds[0])]
        note = f" (training seed {seeds[0]}; see 'Across training seeds' for the others)"
    figs.append((f"Dice against clicks{note}", plot_dice_vs_clicks(curves, out / "dice-vs-clicks.png", n_boot, seed, **style)))
    if len(study_tasks(arms)) > 1:
        figs.append(("Dice against clicks per task",
                     plot_dice_vs_clicks_per_task(curves, out / "dice-vs-clicks-per-task.png", **style)))
    figs.append((f"Dice against annotator seconds{note}",
                 plot_dice_vs_effort(curves, out / "dice-vs-effort.png", n_boot, seed, **style)))
    figs.append((f"Dice per iteration{note}", plot_dice_vs_iteration(curves, out / "dice-vs-iteration.png", n_boot, seed,
                                                                    **style)))
    figs.append(("NoC@90 per arm", plot_noc90(summary, out / "noc90.png", arms=arms, **style)))
    ks = plot_k_sweep(arms, summary, out / "k-sweep.png", palette)
    if ks is not None:
        figs.append(("NoC@90 and effort against K", ks))
    # A filmstrip per method, from its first arm (the reference first) whose steps.parquet stores states.
    by_method: dict[str, list[Arm]] = {}
    for a in sorted(arms, key=lambda a: a.label != reference):
        by_method.setdefault(a.method, []).append(a)
    for method, candidates in by_method.items():
        first_error = ""
        for arm in candidates:
            index = 0 if (arm.sessions["session"] == 0).any() else int(arm.sessions["session"].iloc[0])
            try:
                path, warning = plot_filmstrip(arm, out / f"filmstrip-{_safe_name(method)}.png", index=index)
            except (ValueError, OSError) as exc:  # a run without stored states, or its data gone from this machine
                first_error = first_error or f"no filmstrip for method {method!r} (arm {arm.label!r}): {exc}"
                continue
            figs.append((f"Example session of `{method}` (arm `{arm.label}`, session {index})", path))
            if warning:
                warns.append(warning)
            break
        else:
            warns.append(first_error)
    return figs, warns




_CAPTIONS = {
    "dice-vs-clicks.png": "mean Dice after c clicks (a session's Dice at the first iteration with at least "
                          "c clicks, else its last Dice); bands: 95% CI, images resampled.",
    "dice-vs-effort.png": "mean Dice on screen after t annotator seconds (clicks, inspections and choices "
                          "priced with the run's effort model; 0 before the first proposal); bands: 95% CI.",
    "dice-vs-iteration.png": "mean Dice at each iteration; bands: 95% CI.",
    "noc90.png": "NoC@90 per arm, mean and 95% CI, best at the top.",
    "k-sweep.png": "NoC@90 and effort against K for arms that differ only in K.",
    "dice-vs-clicks-per-task.png": "mean Dice after c clicks per task, a line per arm (no CI bands: a task "
                                   "holds only a few images).",
}
_FILMSTRIP_CAPTION = ("first iterations of a session, as its steps.parquet stores them: the candidates (chosen one in a gold frame), the "
                      "robot's clicks (green positive, red negative) and the state after them; red: decided "
                      "foreground, blue: decided background.")
_CURVES_NOTE = ("Each method family has one colour in every figure (its arms: shades and line styles of it); "
                "panels with more than a handful of arms are split by variant, start or method family, with the "
                "reference arm in each panel.")


def figure_lines(figs: Sequence[tuple[str, Path]]) -> list[str]:
    """The ``## Figures`` section of report.md: each figure with its caption."""
    if not figs:
        return []
    lines = ["## Figures", "", _CURVES_NOTE, ""]
    for title, p in figs:
        lines += [f"### {title}", "", f"![{title}]({p.name})", "", _CAPTIONS.get(p.name, _FILMSTRIP_CAPTION), ""]
    return lines
