"""The sections of ``report.md`` for real-image studies (smallest detectable difference, per task,
per annotator, simulated against human starts) and for a study's paper reproduction."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from probseg.lazy import lazy_import

from ..arms import annotator_index, format_metric, lower_is_better, metric_label, metric_statistic
from .formatting import fmt_ci_short, fmt_diff, fmt_diff_short, md_table
from .real_tables import ALL_TASKS, endpoint_metrics
from .tables import MDD_ALPHA, MDD_POWER

pd = lazy_import("pandas")  # imported on first use: commands start faster

def _rms(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    return float(np.sqrt(np.mean(v ** 2))) if v.size else float("nan")


def mdd_lines(comparison: pd.DataFrame, per_task: pd.DataFrame | None, endpoint: str,
               summary: pd.DataFrame) -> list[str]:
    """The smallest detectable difference of the primary endpoint: overall, per comparison and per task
    (``summary`` gives each compared arm's number of images)."""
    prim = comparison[comparison["primary"]] if not comparison.empty else comparison
    if prim.empty:
        return []
    label = metric_label(endpoint)
    n_of = dict(zip(summary["label"], summary["n_images"].astype(int)))
    counts = sorted({n_of[lab] for lab in prim["label"]})
    n_images = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    z = NormalDist().inv_cdf(1 - MDD_ALPHA / 2) + NormalDist().inv_cdf(MDD_POWER)
    overall = _rms(prim["mdd"].tolist())
    lines = ["## Smallest detectable difference", ""]
    if math.isfinite(overall):
        lines.append(f"With {n_images} images this study can detect differences of about "
                     f"**{format_metric(endpoint, overall)}** in {label} between an arm and its reference (two-sided "
                     f"alpha {MDD_ALPHA:g}, power {MDD_POWER:g}; the root-mean-square over the {len(prim)} "
                     "comparison(s)). A smaller true difference would often be missed: a CI that includes zero here "
                     "does not show that two arms are equal.")
    else:
        lines.append(f"With {n_images} image(s) this study cannot estimate how large a difference in {label} it could "
                     "detect (that needs at least 2 images).")
    lines += ["", f"Minimal detectable difference MDD = (z_0.975 + z_0.80) × SD / √n = {z:.2f} × SD / √n, "
              "with n the images and SD the standard deviation over images of the per-image mean paired difference "
              "(arm − reference; an image's sessions, such as its annotators' sessions, are averaged first because "
              "they are not independent)" + (
                  "; for a count (NoF) the MDD of the difference in counts is "
                  f"{z:.2f} × SD × √n, SD over the per-image sums" if metric_statistic(endpoint) == "sum" else "")
              + ". A normal approximation: with few images it is optimistic.", ""]
    rows = [[f"`{r['label']}`", f"`{r['reference']}`", n_of[r["label"]], format_metric(endpoint, r["mdd"]),
             fmt_diff(endpoint, r["diff"], r["diff_lo"], r["diff_hi"])] for _, r in prim.iterrows()]
    lines += md_table(["arm", "reference", "images", f"MDD ({label})", "observed difference [95% CI]"], rows) + [""]
    if per_task is not None and not per_task.empty:
        pt = per_task[per_task["primary"] & per_task["label"].ne(per_task["reference"])]
        rows = []
        for task, g in pt.groupby("task", sort=True):
            finite = g["mdd"][np.isfinite(g["mdd"])]
            span = f"{format_metric(endpoint, finite.min())}–{format_metric(endpoint, finite.max())}" if len(finite) else "–"
            rows.append([task or "(none)", int(g["n_images"].max()), format_metric(endpoint, _rms(g["mdd"].tolist())),
                         span])
        if rows:
            lines += ["Per task, from the task's own images only (– with a single image):", ""]
            lines += md_table(["task", "images", f"MDD ({label}), RMS over comparisons", "range over comparisons"],
                               rows) + [""]
    return lines


def per_task_lines(per_task: pd.DataFrame, endpoint: str, n_boot: int) -> list[str]:
    if per_task.empty:
        return []
    metrics = endpoint_metrics(endpoint)
    counts = per_task.drop_duplicates("task")["n_images"]
    lo_n, hi_n = int(counts.min()), int(counts.max())
    span = f"{lo_n}" if lo_n == hi_n else f"{lo_n}–{hi_n}"
    lines = ["## Per task", "",
             f"Per task, each arm's {' and '.join(metric_label(m) for m in metrics)} (mean over the task's sessions, "
             f"95% CI from {n_boot} bootstrap resamples of the task's images) and the paired difference against the "
             f"arm's reference within the task. **The tasks hold only {span} image(s) each, so these CIs are wide**, "
             "and a percentile bootstrap over a handful of images is itself rough (it understates the uncertainty); "
             "a task with one image has its value and no CI (–). Read this table as a description of where the arms "
             "differ, not as a test per task.", ""]
    by = {(r["task"], r["label"], r["metric"]): r for _, r in per_task.iterrows()}
    header = ["task", "arm", "images", "sessions"]
    for m in metrics:
        header += [f"{metric_label(m)} [95% CI]", "diff vs reference [95% CI]"]
    rows = []
    for task, label in per_task[["task", "label"]].drop_duplicates().itertuples(index=False):
        first = by[(task, label, metrics[0])]
        row = [task or "(none)", f"`{label}`", int(first["n_images"]), int(first["n_sessions"])]
        for m in metrics:
            r = by[(task, label, m)]
            row.append(fmt_ci_short(m, r["value"], r["value_lo"], r["value_hi"]))
            row.append("(reference)" if r["label"] == r["reference"]
                       else fmt_diff_short(m, r["diff"], r["diff_lo"], r["diff_hi"]))
        rows.append(row)
    return lines + md_table(header, rows) + [""]


def per_annotator_lines(per_annotator: pd.DataFrame, endpoint: str) -> list[str]:
    if per_annotator.empty:
        return []
    df = per_annotator[per_annotator["metric"] == endpoint]
    annotators = sorted(df["annotator"].unique(), key=lambda a: annotator_index(a) or 0)
    n_ann = len(annotators)
    lines = ["## Per annotator (human start)", "",
             f"The human start runs one session per annotator of an image, from that annotator's scribbles. Per arm "
             f"with the human start: the mean {metric_label(endpoint)} over each annotator's sessions, and the spread "
             f"of these per-annotator means (mean, standard deviation and min–max). With {n_ann} annotator(s) the SD "
             "describes how much the result depends on who scribbled; it is not a precise estimate.", ""]
    all_rows = df[df["task"] == ALL_TASKS]
    uneven = all_rows.groupby("label")["n_images"].nunique().gt(1).any()
    if uneven:
        lines += ["Not every annotator scribbled every image (`n_images` in `per_annotator.csv`), so the "
                  "per-annotator means are over different images.", ""]
    header = ["arm", "task"] + annotators + ["mean", "SD", "min–max"]

    def table(part: pd.DataFrame) -> list[list[Any]]:
        rows = []
        for (label, task), g in part.groupby(["label", "task"], sort=False):
            v = dict(zip(g["annotator"], g["value"]))
            r = g.iloc[0]
            rows.append([f"`{label}`", task] + [format_metric(endpoint, v.get(a, float("nan"))) for a in annotators] + [
                format_metric(endpoint, r["annotators_mean"]), format_metric(endpoint, r["annotators_sd"]),
                f"{format_metric(endpoint, r['annotators_min'])}–{format_metric(endpoint, r['annotators_max'])}"])
        return rows

    lines += md_table(header, table(all_rows)) + [""]
    per_task = df[df["task"] != ALL_TASKS]
    n_rows = per_task[["label", "task"]].drop_duplicates().shape[0]
    if n_rows:
        if n_rows <= 40:
            lines += ["Per task (a handful of images per annotator and task: descriptive only):", ""]
            lines += md_table(header, table(per_task)) + [""]
        else:
            lines += ["Per task: see `per_annotator.csv`.", ""]
    return lines


def starts_lines(starts: pd.DataFrame, endpoint: str, n_boot: int) -> list[str]:
    if starts.empty:
        return []
    metrics = endpoint_metrics(endpoint)
    main_rows = starts[starts["task"] == ALL_TASKS]
    lines = ["## Simulated against human starts", "",
             "Arms that differ only in their start (same method, policy, K, checkpoint and protocol): the "
             f"{' and '.join(metric_label(m) for m in metrics)} from each start as the mean over images (the human "
             "start's annotators averaged per image first, so every image counts once), with a 95% CI, and each "
             f"simulated start minus the human start on the same images, with a paired bootstrap CI ({n_boot} "
             "resamples of images).", ""]
    by = {(r["group"], r["start"], r["metric"]): r for _, r in main_rows.iterrows()}
    header = ["method", "start", "images"]
    for m in metrics:
        header += [f"{metric_label(m)} [95% CI]", "− human [95% CI]"]
    rows = []
    for group, start in main_rows[["group", "start"]].drop_duplicates().itertuples(index=False):
        first = by[(group, start, metrics[0])]
        row = [f"`{group}`", start, int(first["n_images"])]
        for m in metrics:
            r = by[(group, start, m)]
            row.append(fmt_ci_short(m, r["value"], r["value_lo"], r["value_hi"]))
            row.append("(human)" if start == "human" else fmt_diff_short(m, r["diff_vs_human"], r["diff_lo"],
                                                                           r["diff_hi"]))
        rows.append(row)
    lines += md_table(header, rows) + [""]
    prim = main_rows[main_rows["primary"] & (main_rows["start"] != "human")]
    label = metric_label(endpoint)
    low = lower_is_better(endpoint)
    for start, g in prim.groupby("start", sort=False):
        better, worse, open_ = [], [], []
        for _, r in g.iterrows():
            lo, hi = r["diff_lo"], r["diff_hi"]
            if math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0):
                good = (hi < 0) if low else (lo > 0)
                (better if good else worse).append(r["group"])
            else:
                open_.append(r["group"])
        n = len(g)
        n_img = int(g["n_images"].max())
        ways = "fewer" if low else "higher"
        if not better and not worse:
            cis = g[np.isfinite(g["diff_lo"]) & np.isfinite(g["diff_hi"])]
            bound = ""
            if len(cis):
                lo_s, hi_s = fmt_diff(endpoint, 0.0, float(cis["diff_lo"].min()), float(cis["diff_hi"].max())
                                       ).split(" [")[1].rstrip("]").split(", ")
                bound = f"; the CIs span {lo_s} to {hi_s}, and differences within that range are not ruled out"
            verdict = (f"this study does not tell simulated {start} from human scribbles as a start: for "
                       f"{'every method' if n > 1 else 'the method'} the 95% CI of the difference in {label} includes "
                       f"zero (with {n_img} images){bound}.")
        elif (better or worse) and not (better and worse) and not open_:
            good = bool(better)
            size = sorted(abs(float(x)) for x in g["diff_vs_human"])
            amount = format_metric(endpoint, size[0]) if len(size) == 1 or format_metric(endpoint, size[0]) == format_metric(
                endpoint, size[-1]) else f"{format_metric(endpoint, size[0])}–{format_metric(endpoint, size[-1])}"
            direction = ("lower" if low else "higher") if good else ("higher" if low else "lower")
            verdict = (f"simulated {start} are a {'better' if good else 'worse'} start than the human scribbles for "
                       f"{'every method' if n > 1 else 'the method'} ({label} {direction} by {amount}, the 95% CI "
                       f"excluding zero, {n_img} images), so on these images a study started from simulated {start} "
                       f"{'overstates' if good else 'understates'} what the method{'s reach' if n > 1 else ' reaches'} "
                       "from human scribbles.")
        else:
            parts = []
            if better:
                parts.append(f"better ({ways} {label}) for {', '.join(f'`{x}`' for x in better)}")
            if worse:
                parts.append(f"worse for {', '.join(f'`{x}`' for x in worse)}")
            if open_:
                parts.append(f"not distinguishable (CI includes zero) for {', '.join(f'`{x}`' for x in open_)}")
            verdict = f"simulated {start} as a start, compared with human scribbles, are " + "; ".join(parts) + "."
        lines.append(f"- **Simulated {start} against human scribbles**: {verdict}")
    lines += ["", "The robot draws a simulated start from the target mask; a human start is an annotator's own "
              "scribbles. The statement covers this study's images only.", ""]
    return lines


# reproduce.csv's columns as the table names them (probseg-reproduce prints the same quantities).
_REPRODUCE_LABELS = {
    "added_fg_px": "added foreground px / proposal", "added_bg_px": "added background px / proposal",
    "max_dice": "max Dice over disk subsets (added region)", "threshold_max_dice": "same, Otsu threshold",
    "mean_target_dice": "target Dice, z = 0 (deterministic)", "mean_added_fg_px": "added foreground px, z = 0",
    "mean_added_bg_px": "added background px, z = 0", "n_images": "held-out images",
}


def _reproduce_label(column: str) -> str:
    """``target_dice_at_8`` -> ``target Dice@8``; the other columns by :data:`_REPRODUCE_LABELS`."""
    if column.startswith("target_dice_at_"):
        return f"target Dice@{column.removeprefix('target_dice_at_')}"
    return _REPRODUCE_LABELS.get(column, f"`{column}`")


def reproduce_lines(study: dict[str, Any], study_dir: Path, out: Path) -> tuple[list[str], list[str]]:
    spec = study.get("reproduce")
    if not spec:
        return [], []
    warns = []
    lines = ["## Reproducing the paper (disks)", ""]
    csv = study_dir / str(spec.get("csv", "reproduce.csv"))
    rel = os.path.relpath(csv, out)
    if csv.is_file():
        df = pd.read_csv(csv)
        lines.append(f"From [`{Path(rel).as_posix()}`]({Path(rel).as_posix()}): per checkpoint, one proposal per held-out "
                     "image; max Dice is over disk subsets on the added region (an Otsu threshold that decides every "
                     "pixel is given for calibration); target Dice@K is the best of K samples against the input's "
                     "own target.")
        lines.append("")
        # One column per checkpoint and one for the paper, so a reader compares along a row.
        from probseg.evaluate import PAPER_VALUES

        names = [str(c) for c in df["checkpoint"]] if "checkpoint" in df.columns else [str(i) for i in range(len(df))]
        rows = []
        for c in df.columns:
            if c == "checkpoint":
                continue
            cells = [_reproduce_label(c)]
            for v in df[c]:
                if isinstance(v, (float, np.floating)):
                    cells.append("–" if not math.isfinite(v) else f"{v:.1f}" if c.endswith("_px") else f"{v:.3f}")
                else:
                    cells.append(str(v))
            paper = PAPER_VALUES.get(c)
            cells.append("" if paper is None else f"{paper:g}")
            rows.append(cells)
        lines += md_table(["metric", *[f"`{n}`" for n in names], "paper"], rows) + [""]
    else:
        warns.append(f"the study names {csv} for the reproduce table, but it does not exist")
        lines += [f"(No table: `{csv.name}` was not found.)", ""]
    for fig in spec.get("figures") or []:
        p = study_dir / str(fig)
        relf = Path(os.path.relpath(p, out)).as_posix()
        if p.is_file():
            lines += [f"[{Path(fig).name}]({relf})", "", f"![{Path(fig).stem}]({relf})", ""]
        else:
            lines += [f"- `{fig}`: not found", ""]
            warns.append(f"the study names the figure {p}, but it does not exist")
    return lines, warns


