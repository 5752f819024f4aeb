"""``write_report``: a study's or runs' tables, ``report.md`` and figures, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from probseg.atomic import atomic_write
from probseg.lazy import lazy_import

from ..arms import image_codes
from ..stats import DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_weights
from .candidates import candidate_lines, candidate_table
from .figure_set import draw_figures, figure_lines
from .load import check_paired, image_set_warning, load_inputs
from .markdown import (
    comparison_lines,
    headline_lines,
    multi_seed_lines,
    protocol_change_lines,
    session_ends_lines,
    setup_lines,
)
from .markdown_real import mdd_lines, per_annotator_lines, per_task_lines, reproduce_lines, starts_lines
from .real_tables import has_real_tasks, per_annotator_table, per_task_table, starts_table
from .references import resolve_references
from .tables import (
    DEFAULT_ENDPOINT,
    comparison_table,
    multi_seed_table,
    resolve_metrics,
    session_ends_table,
    summary_table,
)

pd = lazy_import("pandas")  # imported on first use: commands start faster


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n"))


def write_report(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    reference: str | None = None,
    endpoint: str | None = None,
    n_boot: int | None = None,
    seed: int | None = None,
    figures: bool = True,
) -> dict[str, Any]:
    """Write ``summary.csv``, ``comparison.csv``, ``report.md`` and the figures for a study or runs.

    Args:
        paths: one study directory (with ``study.json``), or one or more run directories (arms
            labelled by their directory names).
        out: output folder (default: the study directory, or the single run directory; required with
            several run directories).
        reference: the label of the arm every other arm is compared with. Default: for a study, each
            arm's own ``reference`` in ``study.json`` (the reference arm of its variant and training
            seed), else the study's ``reference``; for plain runs, the first arm.
        endpoint: the primary endpoint metric (default: the study's ``primary_endpoint``, else
            ``noc_90``); one of :data:`METRICS` or ``EXTRA_METRICS``.
        n_boot, seed: bootstrap resamples and seed (default: the study's ``bootstrap``, else 2000 and 0).
        figures: draw the PNG figures.
    Returns:
        A dict: ``paths`` (name -> Path of every file written), ``summary`` and ``comparison``
        (DataFrames as in the CSV files), ``multi_seed`` (DataFrame), ``warnings`` (list of str),
        ``reference`` (the main reference label), ``references`` (each arm's reference), ``endpoint``,
        ``n_boot``, ``seed``; and, None where the data does not call for them, ``per_task`` (when the
        sessions hold more than one task, or one that is not ``disks``), ``per_annotator`` (arms with the
        human start) and ``starts`` (arms that differ only in start, one of them human), as in
        ``per_task.csv``, ``per_annotator.csv`` and ``starts.csv``. The same condition as ``per_task``
        adds the smallest-detectable-difference section to ``report.md`` and the per-task Dice figure
        (with more than one task).
    Raises:
        ValueError: naming the argument at fault: a missing or unfinished directory (``paths``), arms on
            different sessions (``paths``), an unknown ``reference`` or ``endpoint``, bad ``n_boot`` or
            ``seed``, a missing or unwritable ``out``.
    """
    study, arms, study_dir = load_inputs(paths)
    plist = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if out is None:
        if study_dir is not None:
            out = study_dir
        elif len(plist) == 1:
            out = plist[0]
        else:
            raise ValueError("out: required when reporting several run directories")
    out = Path(out)
    boot = (study or {}).get("bootstrap") or {}
    n_boot = int(boot.get("n_boot", DEFAULT_N_BOOT)) if n_boot is None else int(n_boot)
    seed = int(boot.get("seed", DEFAULT_SEED)) if seed is None else int(seed)
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")
    if seed < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    endpoint = endpoint or (study or {}).get("primary_endpoint") or DEFAULT_ENDPOINT
    metrics = resolve_metrics(str(endpoint), (study or {}).get("thresholds"), arms,
                              (study or {}).get("secondary_metrics"))
    labels = [a.label for a in arms]
    reference, ref_map = resolve_references(arms, study, reference)
    check_paired(arms, ref_map)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"out: cannot create {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"out: cannot write to {out}")

    # Plain runs: the reference first. A study keeps its own order.
    if arms and study is None:
        arms = [a for a in arms if a.label == reference] + [a for a in arms if a.label != reference]
    warns: list[str] = []
    if arms:
        _, n_img = image_codes(arms[0])
        w = bootstrap_weights(n_img, n_boot, seed)
        uneven = image_set_warning(arms)
        if uneven:
            warns.append(uneven)
    else:
        n_img, w = 0, None
    summary = summary_table(arms, metrics, n_boot, seed, weights=w)
    comparison = comparison_table(arms, ref_map, str(endpoint), metrics, n_boot, seed, weights=w)
    seeds = multi_seed_table(summary, [str(endpoint), "effort_s"])
    by_label = {a.label: a for a in arms}
    for a in arms:
        r = by_label[ref_map[a.label]]
        if r is not a and a.effort_model() != r.effort_model():
            warns.append(f"arm {a.label!r} was priced with other effort constants than its reference {r.label!r} "
                         f"({a.effort_model()} vs {r.effort_model()}); their effort is not comparable")

    # Real-image studies: per task, per annotator (human start), simulated against human starts.
    real = bool(arms) and has_real_tasks(arms)
    per_task = per_task_table(arms, ref_map, str(endpoint), n_boot, seed) if real else None
    per_annotator = per_annotator_table(arms, str(endpoint)) if arms else None
    if per_annotator is not None and per_annotator.empty:
        per_annotator = None
    starts = starts_table(arms, str(endpoint), n_boot, seed, weights=w) if arms else None
    if starts is not None and starts.empty:
        starts = None
    candidates = candidate_table(arms, n_boot, seed) if arms else None

    written: dict[str, Path] = {}
    if arms:  # a reproduce-only study has no arm tables
        _write_csv(summary, out / "summary.csv")
        written["summary.csv"] = out / "summary.csv"
        _write_csv(comparison, out / "comparison.csv")
        written["comparison.csv"] = out / "comparison.csv"
    ends = session_ends_table(arms)
    if arms:
        _write_csv(ends, out / "session_ends.csv")
        written["session_ends.csv"] = out / "session_ends.csv"
    for name, table in (("per_task.csv", per_task), ("per_annotator.csv", per_annotator), ("starts.csv", starts),
                        ("candidates.csv", candidates)):
        if table is not None:
            _write_csv(table, out / name)
            written[name] = out / name

    figs: list[tuple[str, Path]] = []
    if figures and arms:
        figs, fwarn = draw_figures(arms, summary, str(reference), out, n_boot, seed, set(ref_map.values()))
        warns += fwarn
        for _, p in figs:
            written[p.name] = p

    # report.md
    title = (study or {}).get("name") or ("report: " + ", ".join(labels) if labels else "report")
    lines = [f"# {title}", ""]
    if study and study.get("description"):
        lines += [str(study["description"]).strip(), ""]
    if study and study.get("notes"):
        lines += ["> " + "\n> ".join(str(study["notes"]).strip().splitlines()), ""]
    if study and study.get("quick"):
        lines += ["**Quick study**: run at reduced size to check the pipeline; its numbers are not for conclusions.", ""]
    if arms:
        lines += setup_lines(arms, study, n_img)
        lines += headline_lines(summary, metrics, str(endpoint), n_boot)
        lines += session_ends_lines(ends)
        lines += protocol_change_lines(summary, out, str(endpoint))
        lines += comparison_lines(comparison, arms, str(endpoint), metrics, n_boot)
        lines += multi_seed_lines(seeds, str(endpoint))
        lines += candidate_lines(candidates, n_boot)
        if real:
            lines += mdd_lines(comparison, per_task, str(endpoint), summary)
            lines += per_task_lines(per_task, str(endpoint), n_boot)
        if per_annotator is not None:
            lines += per_annotator_lines(per_annotator, str(endpoint))
        if starts is not None:
            lines += starts_lines(starts, str(endpoint), n_boot)
    if study is not None and study_dir is not None:
        rl, rw = reproduce_lines(study, study_dir, out)
        lines += rl
        warns += rw
    lines += figure_lines(figs)
    if arms:
        lines += ["## Files", "",
                  "- `summary.csv`: one row per arm, every metric with its 95% CI (`M`, `M_lo`, `M_hi`).",
                  "- `comparison.csv`: every arm against the reference, per metric: difference with CI, Wilcoxon "
                  "and Holm p-values, tie ratio; `primary` marks the endpoint" + (
                      ", whose rows carry the minimal detectable difference (`mdd`)." if real else "."),
                  "- `session_ends.csv`: per arm, steps per session, sessions that ended early, corrections per "
                  "session and their positive share.",
                  ]
        if per_task is not None:
            lines.append("- `per_task.csv`: per task, arm and metric (endpoint and NoC@90): value with CI over the "
                         "task's images, paired difference against the reference with CI, and the task's `mdd`.")
        if per_annotator is not None:
            lines.append("- `per_annotator.csv`: human-start arms, per annotator (all tasks, then per task): the mean "
                         "endpoint and NoC@90, and the spread across annotators.")
        if candidates is not None:
            lines.append("- `candidates.csv`: arms with several candidates, at the first proposal: best, top-scored "
                         "and candidate 0's Dice, best minus top-scored, mean pairwise Dice, each with its CI.")
        if starts is not None:
            lines.append("- `starts.csv`: arms differing only in start: each start's value over images and the "
                         "paired difference of each simulated start against the human start, with CIs.")
        lines.append("")
    if warns:
        lines += ["## Warnings", ""] + [f"- {w_}" for w_ in warns] + [""]
    _write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")
    written["report.md"] = out / "report.md"
    return {
        "paths": written, "summary": summary, "comparison": comparison, "multi_seed": seeds, "warnings": warns,
        "reference": reference, "references": ref_map, "endpoint": str(endpoint), "n_boot": n_boot, "seed": seed,
        "per_task": per_task, "per_annotator": per_annotator, "starts": starts, "candidates": candidates,
    }

