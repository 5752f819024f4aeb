"""``probseg-report``: tables, paired comparisons and figures for one or more simulator runs.

Input is either one *study directory* (``study.json`` plus ``runs/<label>/`` run directories, as
:mod:`simulator.study` writes them) or one or more *run directories* (what
:func:`simulator.runner.run` writes: ``config.json``, ``sessions.parquet``, ``steps.parquet``). Each run
is an *arm*. Output, in the ``out`` folder:

* ``summary.csv``: one row per arm, each metric's mean (NoF: a count) with a 95% percentile
  bootstrap CI that resamples images (all sessions of an image move together: a cluster bootstrap);
* ``comparison.csv``: each arm against the reference arm, per metric: the mean paired difference
  (arm - reference) with a paired cluster-bootstrap 95% CI, the Wilcoxon signed-rank p-value on the
  per-session differences, Holm-adjusted p-values across arms (per metric) and the effort tie ratio;
* ``report.md`` and PNG figures (Dice against clicks, annotator seconds and iterations; NoC@0.90
  per arm; a K sweep when there is one; a replayed example session per method).

Every random draw comes from ``np.random.default_rng(seed)``, so the CSV files are byte-identical
from run to run. Timing columns (which differ from run to run) are never reported.

This module loads the runs and studies, builds the tables, writes ``report.md`` and holds the CLI.
The arms and their metrics are :mod:`simulator.arms`, the statistics :mod:`simulator.stats`, the
Dice curves :mod:`simulator.curves` and the figures :mod:`simulator.figures`; their public names
are importable from here too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probseg.atomic import atomic_write
from probseg.cli import ArgumentParser, cli_entry

from .arms import (
    EFFORT_TARGET,
    EXTRA_METRICS,
    METRICS,
    Arm,
    arm_effort_counts,
    image_codes,
    metric_label,
    metric_matrix,
    metric_statistic,
)
from .curves import dice_at_clicks_matrix, dice_by_effort_matrix, dice_by_iteration_matrix
from .figures import (
    DPI,  # noqa: F401  (re-exported, as before the split)
    plot_dice_vs_clicks,
    plot_dice_vs_effort,
    plot_dice_vs_iteration,
    plot_filmstrip,
    plot_k_sweep,
    plot_noc90,
    replay_session,
)
from .metrics import EffortCounts, mean_counts, tie_choose_click_ratio
from .stats import DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_weights, cluster_bootstrap, holm, wilcoxon_p

__all__ = [
    "METRICS",
    "Arm",
    "load_run",
    "load_study",
    "load_inputs",
    "bootstrap_weights",
    "cluster_bootstrap",
    "wilcoxon_p",
    "holm",
    "metric_matrix",
    "arm_effort_counts",
    "summary_table",
    "comparison_table",
    "multi_seed_table",
    "dice_at_clicks_matrix",
    "dice_by_iteration_matrix",
    "dice_by_effort_matrix",
    "plot_dice_vs_clicks",
    "plot_dice_vs_effort",
    "plot_dice_vs_iteration",
    "plot_noc90",
    "plot_k_sweep",
    "replay_session",
    "plot_filmstrip",
    "write_report",
    "main",
]

DEFAULT_ENDPOINT = "noc_90"
KEY_COLUMNS = ("session", "image", "target")
ID_COLUMNS = ("label", "name", "train_seed", "variant", "method", "kind", "policy", "k", "start", "n_sessions", "n_images")


# --------------------------------------------------------------------------------------------------
# Loading runs and studies


_STEP_COLUMNS = ("session", "iteration", "dice", "clicks_so_far", "click_made", "n_clicks", "candidate_dice")


def _read_json(path: Path, arg: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{arg}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"{arg}: {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{arg}: {path} does not hold a JSON object")
    return data


def _read_parquet(path: Path, arg: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise ValueError(f"{arg}: {path.parent} has no {path.name} (not a finished run directory)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise ValueError(f"{arg}: cannot read {path}: {exc}") from None
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"{arg}: {path} lacks column {missing[0]!r}")
        df = df[list(columns)]
    return df


def load_run(
    path: str | os.PathLike,
    label: str | None = None,
    *,
    name: str | None = None,
    train_seed: int | None = None,
    variant: str = "default",
    arg: str = "paths",
) -> Arm:
    """Load a run directory as an :class:`Arm` (label: the directory name unless given).

    Raises:
        ValueError: naming ``arg`` when the directory is missing or lacks ``config.json``,
            ``sessions.parquet`` or ``steps.parquet`` (or they are unreadable or lack columns).
    """
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise ValueError(f"{arg}: {run_dir} is not a directory")
    sessions = _read_parquet(run_dir / "sessions.parquet", arg)
    missing = [c for c in (*KEY_COLUMNS, "reached_90") if c not in sessions.columns]
    if missing:
        raise ValueError(f"{arg}: {run_dir / 'sessions.parquet'} lacks column {missing[0]!r}")
    if len(sessions) == 0:
        raise ValueError(f"{arg}: {run_dir / 'sessions.parquet'} has no sessions")
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{arg}: {run_dir} has no config.json (not a run directory)")
    config = _read_json(run_dir / "config.json", arg)
    steps = _read_parquet(run_dir / "steps.parquet", arg, _STEP_COLUMNS)
    steps = steps.assign(n_candidates=[max(1, len(c)) if c is not None else 1 for c in steps["candidate_dice"]])
    steps = steps.drop(columns=["candidate_dice"]).sort_values(["session", "iteration"], kind="stable")
    sessions = sessions.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)
    if sessions.duplicated(list(KEY_COLUMNS)).any():
        raise ValueError(f"{arg}: {run_dir / 'sessions.parquet'} holds a session twice")
    return Arm(
        label=label if label is not None else run_dir.resolve().name, run_dir=run_dir, config=config,
        sessions=sessions, steps=steps.reset_index(drop=True), name=name or "", train_seed=train_seed,
        variant=variant or "default",
    )


def load_study(path: str | os.PathLike) -> tuple[dict[str, Any], list[Arm]]:
    """Load a study directory: ``(study.json as a dict, its arms in study order)``.

    Each arm of ``study.json`` names its run directory (``run_dir``, relative to the study folder).
    Raises ``ValueError`` naming ``paths`` for a missing or unreadable study or run directory.
    """
    study_dir = Path(path)
    study = _read_json(study_dir / "study.json", "paths")
    arms_spec = study.get("arms") or []
    if not isinstance(arms_spec, list):
        raise ValueError(f"paths: {study_dir / 'study.json'}: 'arms' must be a list")
    arms = []
    for i, spec in enumerate(arms_spec):
        if not isinstance(spec, dict) or "label" not in spec:
            raise ValueError(f"paths: {study_dir / 'study.json'}: arm {i} has no label")
        label = str(spec["label"])
        run_dir = study_dir / spec.get("run_dir", Path("runs") / label)
        seed = spec.get("train_seed")
        arm = load_run(
            run_dir, label, name=str(spec.get("name") or label),
            train_seed=None if seed is None else int(seed), variant=str(spec.get("variant") or "default"),
        )
        arm.reference = str(spec.get("reference") or "")
        arms.append(arm)
    labels = [a.label for a in arms]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"paths: {study_dir / 'study.json'} has two arms labelled {dup[0]!r}")
    return study, arms


def _is_study(path: Path) -> bool:
    return (path / "study.json").is_file()


def load_inputs(paths: Sequence[str | os.PathLike]) -> tuple[dict[str, Any] | None, list[Arm], Path | None]:
    """Resolve the report's inputs: ``(study or None, arms, study dir or None)``.

    One study directory gives the study's arms; otherwise every path is a run directory, labelled by
    its directory name (the path as given where two names clash).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths: give a study directory or at least one run directory")
    for p in paths:
        if not p.is_dir():
            raise ValueError(f"paths: {p} is not a directory")
    if len(paths) == 1 and _is_study(paths[0]):
        study, arms = load_study(paths[0])
        return study, arms, paths[0]
    studies = [p for p in paths if _is_study(p)]
    if studies:
        raise ValueError(f"paths: {studies[0]} is a study directory; give it alone")
    resolved = [p.resolve() for p in paths]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise ValueError(f"paths: {paths[i]} is given twice")
    names = [r.name for r in resolved]
    labels = [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]
    return None, [load_run(p, lab) for p, lab in zip(paths, labels)], None


def _check_paired(arms: Sequence[Arm]) -> None:
    """Every arm must hold the same sessions (same (session, image, target) keys)."""
    if not arms:
        return
    ref = arms[0]
    ref_keys = ref.sessions[list(KEY_COLUMNS)].astype(str).to_numpy()
    for arm in arms[1:]:
        keys = arm.sessions[list(KEY_COLUMNS)].astype(str).to_numpy()
        if keys.shape != ref_keys.shape or not (keys == ref_keys).all():
            raise ValueError(
                f"paths: arms {arm.label!r} ({len(keys)} sessions) and {ref.label!r} ({len(ref_keys)} sessions) "
                "ran on different sessions (session, image, target), so they cannot be paired; run them with "
                "the same dataset, n_sessions and seed"
            )


# --------------------------------------------------------------------------------------------------
# Tables


def _resolve_metrics(endpoint: str, thresholds: Sequence[float] | None, arms: Sequence[Arm]) -> list[str]:
    metrics = list(METRICS)
    for t in thresholds or ():
        tag = f"noc_{round(float(t) * 100)}"
        if tag not in metrics and (not arms or tag in arms[0].sessions.columns):
            metrics.insert(0, tag)
    allowed = list(dict.fromkeys([*METRICS, *EXTRA_METRICS]))
    if endpoint not in allowed:
        raise ValueError(f"endpoint: unknown metric {endpoint!r}; allowed: {', '.join(allowed)}")
    if endpoint not in metrics:
        metrics.insert(0, endpoint)
    return metrics


def _arm_ids(arm: Arm, n_images: int) -> dict[str, Any]:
    s = arm.settings
    return {
        "label": arm.label, "name": arm.name, "train_seed": arm.train_seed, "variant": arm.variant,
        "method": arm.method, "kind": arm.kind, "policy": s.get("policy", ""), "k": s.get("k"),
        "start": s.get("start", ""), "n_sessions": int(len(arm.sessions)), "n_images": int(n_images),
    }


def _typed_ids(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("train_seed", "k", "n_sessions", "n_images"):
        if col in df.columns:
            df[col] = pd.array(df[col], dtype="Int64")
    return df


def summary_table(
    arms: Sequence[Arm],
    metrics: Sequence[str] = METRICS,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per arm: :data:`ID_COLUMNS`, then per metric ``M``, ``M_lo``, ``M_hi``.

    ``M`` is the mean over sessions (``nof_T``: the count of sessions that never reached Dice T); the
    95% CI is a percentile bootstrap resampling images (cluster bootstrap).
    """
    _check_paired(arms)
    cols = [*ID_COLUMNS] + [f"{m}{suf}" for m in metrics for suf in ("", "_lo", "_hi")]
    if not arms:
        return pd.DataFrame(columns=cols)
    codes, n_img = image_codes(arms[0])
    w = bootstrap_weights(n_img, n_boot, seed) if weights is None else weights
    rows = []
    for arm in arms:
        est, lo, hi = cluster_bootstrap(metric_matrix(arm, metrics), codes,
                                        statistic=[metric_statistic(m) for m in metrics], weights=w)
        row = _arm_ids(arm, n_img)
        for j, m in enumerate(metrics):
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = float(est[j]), float(lo[j]), float(hi[j])
        rows.append(row)
    return _typed_ids(pd.DataFrame(rows, columns=cols))


COMPARISON_COLUMNS = (
    "label", "reference", "metric", "primary", "statistic", "n_pairs", "value", "reference_value",
    "diff", "diff_lo", "diff_hi", "p_wilcoxon", "p_holm", "tie_choose_click_ratio",
)


def _reference_map(arms: Sequence[Arm], reference: str | Mapping[str, str] | None) -> dict[str, str]:
    """Each arm's reference label: one label for all, a ``{label: reference}`` mapping, or the first arm."""
    labels = [a.label for a in arms]
    if not arms:
        return {}
    if reference is None or isinstance(reference, str):
        ref = labels[0] if reference is None else reference
        if ref not in labels:
            raise ValueError(f"reference: no arm labelled {ref!r}; arms: {', '.join(map(repr, labels))}")
        return {lab: ref for lab in labels}
    out = {}
    for lab in labels:
        ref = reference.get(lab, lab)
        if ref not in labels:
            raise ValueError(f"reference: arm {lab!r} is compared with {ref!r}, which is not an arm; "
                             f"arms: {', '.join(map(repr, labels))}")
        out[lab] = ref
    return out


def comparison_table(
    arms: Sequence[Arm],
    reference: str | Mapping[str, str] | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    metrics: Sequence[str] = METRICS,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Each arm against its reference arm, per metric (columns :data:`COMPARISON_COLUMNS`).

    ``reference`` is one arm label for every arm (default: the first arm), or a mapping from each arm's
    label to its reference's (a study compares each arm with the reference of its own variant and
    training seed); an arm mapped to itself, or missing from the mapping, is not compared.
    ``diff`` is the mean over paired sessions of (arm - reference) (``nof_T``: the difference of the
    counts), with a paired 95% CI from a bootstrap resampling images; ``p_wilcoxon`` the Wilcoxon
    signed-rank test (``zero_method="zsplit"``) on the per-session differences; ``p_holm`` those
    p-values Holm-adjusted across all the comparisons, per metric; ``primary`` marks the endpoint's
    rows; ``tie_choose_click_ratio`` is :func:`simulator.metrics.tie_choose_click_ratio` of the arm's
    and the reference's mean effort counts up to Dice 0.90, priced with the arm's effort constants.
    Sessions are paired by (session, image, target); arms on other sessions are refused.
    """
    refs = _reference_map(arms, reference)
    _check_paired(arms)
    pairs = [(a, next(r for r in arms if r.label == refs[a.label])) for a in arms if refs.get(a.label, a.label) != a.label]
    if not pairs:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    codes, n_img = image_codes(arms[0])
    w = bootstrap_weights(n_img, n_boot, seed) if weights is None else weights
    stats = [metric_statistic(m) for m in metrics]
    cache: dict[str, tuple[np.ndarray, np.ndarray, EffortCounts]] = {}

    def arm_stats(arm: Arm) -> tuple[np.ndarray, np.ndarray, EffortCounts]:
        if arm.label not in cache:
            vals = metric_matrix(arm, metrics)
            est, _, _ = cluster_bootstrap(vals, codes, statistic=stats, weights=w)
            cache[arm.label] = (vals, est, mean_counts(arm_effort_counts(arm)))
        return cache[arm.label]

    per_arm = []
    for arm, ref in pairs:
        vals, est, counts = arm_stats(arm)
        ref_vals, ref_est, ref_counts = arm_stats(ref)
        d = vals - ref_vals
        dest, dlo, dhi = cluster_bootstrap(d, codes, statistic=stats, weights=w)
        ps = [wilcoxon_p(d[:, j]) for j in range(len(metrics))]
        tie = tie_choose_click_ratio(counts, ref_counts, arm.effort_model())
        n_pairs = np.isfinite(d).sum(axis=0)
        per_arm.append((arm, ref, est, ref_est, dest, dlo, dhi, ps, tie, n_pairs))
    p_holm = np.stack([holm([pa[7][j] for pa in per_arm]) for j in range(len(metrics))], axis=1)
    rows = []
    for i, (arm, ref, est, ref_est, dest, dlo, dhi, ps, tie, n_pairs) in enumerate(per_arm):
        for j, m in enumerate(metrics):
            rows.append({
                "label": arm.label, "reference": ref.label, "metric": m, "primary": m == endpoint,
                "statistic": "count" if stats[j] == "sum" else "mean", "n_pairs": int(n_pairs[j]),
                "value": float(est[j]), "reference_value": float(ref_est[j]), "diff": float(dest[j]),
                "diff_lo": float(dlo[j]), "diff_hi": float(dhi[j]), "p_wilcoxon": float(ps[j]),
                "p_holm": float(p_holm[i, j]), "tie_choose_click_ratio": float(tie),
            })
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def multi_seed_table(summary: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per arm ``name`` run with >= 2 training seeds: mean, SD (ddof 1), min and max across seeds.

    Columns: ``name``, ``n_seeds``, ``train_seeds`` (comma-separated), then per metric ``M_mean``,
    ``M_sd``, ``M_min``, ``M_max`` of the arms' values. Empty when no name has several seeds.
    """
    cols = ["name", "n_seeds", "train_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "sd", "min", "max")]
    rows = []
    if len(summary) and "train_seed" in summary.columns:
        for name, g in summary.groupby("name", sort=False):
            seeds = g["train_seed"].dropna()
            if seeds.nunique() < 2:
                continue
            row: dict[str, Any] = {"name": name, "n_seeds": int(seeds.nunique()),
                                   "train_seeds": ", ".join(str(int(s)) for s in sorted(seeds.unique()))}
            for m in metrics:
                v = g[m].astype(float)
                row.update({f"{m}_mean": v.mean(), f"{m}_sd": v.std(ddof=1), f"{m}_min": v.min(), f"{m}_max": v.max()})
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------------
# The report


def _fmt_value(metric: str, v: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    if metric.startswith("nof_"):
        return f"{v:.0f}"
    if metric.startswith("dice") or metric == "final_dice":
        return f"{v:.3f}"
    return f"{v:.2f}"


def _fmt_ci(metric: str, v: float, lo: float, hi: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{_fmt_value(metric, v)} [{_fmt_value(metric, lo)}, {_fmt_value(metric, hi)}]"


def _fmt_diff(metric: str, v: float, lo: float, hi: float) -> str:
    if not math.isfinite(v):
        return "–"
    if metric.startswith("nof_"):
        digits = 0
    else:
        digits = 3 if metric.startswith("dice") or metric == "final_dice" else 2
        if max(abs(v), abs(lo), abs(hi)) < 0.1:
            digits += 1  # small differences keep a significant digit
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    esc = [str(h).replace("|", "\\|") for h in header]
    lines = ["| " + " | ".join(esc) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return lines


def _setup_lines(arms: Sequence[Arm], study: dict[str, Any] | None, n_images: int) -> list[str]:
    ref = arms[0]
    s = ref.settings
    lines = ["## Setup", ""]
    seeds = sorted({int(a.settings.get("seed", 0)) for a in arms})
    train_seeds = sorted({a.train_seed for a in arms if a.train_seed is not None})
    lines.append(f"- Data: dataset `{s.get('dataset')}`, {len(ref.sessions)} sessions on {n_images} images "
                 f"(every arm runs the same sessions, paired by session, image and target).")
    lines.append(f"- Run seed(s) (targets, start strokes, sampling, policy draws): {', '.join(map(str, seeds))}"
                 + (f"; training seed(s): {', '.join(map(str, train_seeds))}" if train_seeds else "") + ".")
    starts = sorted({str(a.settings.get("start")) for a in arms})
    lines.append(
        f"- Protocol: start {', '.join(starts)}; {s.get('max_iters')} iterations; {s.get('corrections_per_iter')} "
        f"correction(s) per iteration with the `{s.get('correction_rule')}` rule; brush radius "
        f"{s.get('brush_radius') if s.get('brush_radius') is not None else 'max(1, round(H/64))'}; pending pixels "
        f"{'counted' if s.get('pending_as_errors') else 'not counted'} as errors; rejection "
        f"{'allowed' if s.get('allow_reject') else 'not allowed'} (oracle policies)."
    )
    e = ref.effort_model()
    lines.append(f"- Effort model (seconds): c_click {e.c_click:g}, c_inspect {e.c_inspect:g}, b_choose {e.b_choose:g} "
                 f"per bit of choice (effort_s is the time to reach Dice {EFFORT_TARGET:.2f}, or the whole session).")
    if study is not None and study.get("thresholds"):
        lines.append(f"- Dice thresholds: {', '.join(f'{float(t):.2f}' for t in study['thresholds'])}.")
    commit = ref.config.get("git_commit") or "unknown"
    versions = ref.config.get("versions") or {}
    lines.append(f"- Code: git commit `{commit}`" + (
        "; " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if versions else "") +
        f" (from `{ref.label}`'s config.json).")
    commits = sorted({str(a.config.get("git_commit") or "unknown") for a in arms})
    if len(commits) > 1:
        lines.append(f"- The arms were run at {len(commits)} different commits: {', '.join(commits)}.")
    lines.append("")
    # Arms and how their settings differ from the first arm.
    header = ["arm", "method", "kind", "checkpoint", "policy", "K", "variant", "other settings differing from "
              f"`{ref.label}`"]
    rows = []
    skip = {"method", "checkpoint", "policy", "k", "chunk_size"}
    for a in arms:
        diff = [f"{k}={a.settings.get(k)}" for k in sorted(set(a.settings) | set(s))
                if k not in skip and a.settings.get(k) != s.get(k)]
        ckpt = a.settings.get("checkpoint") or a.config.get("method", {}).get("checkpoint") or ""
        rows.append([f"`{a.label}`", a.method, a.kind, Path(str(ckpt)).name if ckpt else "–",
                     a.settings.get("policy"), a.settings.get("k"), a.variant, ", ".join(diff) or "–"])
    lines += ["### Arms", ""] + _md_table(header, rows) + [""]
    return lines


_HEADLINE = ("noc_85", "noc_90", "noi_90", "nof_90", "effort_s")


def _headline_lines(summary: pd.DataFrame, metrics: Sequence[str], endpoint: str, n_boot: int) -> list[str]:
    first = [endpoint] + [m for m in _HEADLINE if m != endpoint and m in metrics]
    rest = [m for m in metrics if m not in first]
    lines = [
        "## Results per arm", "",
        f"Mean over sessions (NoF: the count of sessions that never reached Dice 0.90) with a 95% percentile "
        f"bootstrap CI ({n_boot} resamples of images; all sessions of an image move together). Lower is better "
        "for NoC, NoI, NoF, HD95 and effort; higher for Dice. An unreached threshold scores the NoC cap (start "
        "clicks + iterations x corrections).", "",
    ]
    header = ["arm"] + [f"**{metric_label(endpoint)}** (endpoint)"] + [metric_label(m) for m in first[1:]]
    rows = [[f"`{r['label']}`"] + [_fmt_ci(m, r[m], r[f'{m}_lo'], r[f'{m}_hi']) for m in first]
            for _, r in summary.iterrows()]
    lines += _md_table(header, rows) + [""]
    if rest:
        header = ["arm"] + [metric_label(m) for m in rest]
        rows = [[f"`{r['label']}`"] + [_fmt_ci(m, r[m], r[f'{m}_lo'], r[f'{m}_hi']) for m in rest]
                for _, r in summary.iterrows()]
        lines += ["Dice and boundary metrics (– where no session ran that many iterations):", ""]
        lines += _md_table(header, rows) + [""]
    return lines


def _primary_sentence(lab: str, ref: str, p: pd.Series, endpoint: str) -> str | None:
    """One plain sentence on an arm's primary-endpoint difference, from its CI and Holm p only."""
    if not math.isfinite(p["diff"]):
        return None
    if p["diff"] == 0 and p["diff_lo"] == 0 and p["diff_hi"] == 0:
        return f"- `{lab}`: {metric_label(endpoint)} is identical to `{ref}` in every session."
    amount = _fmt_diff(endpoint, abs(p["diff"]), 0.0, 0.0).split(" ")[0].lstrip("+")
    fewer = "fewer" if p["diff"] < 0 else "more"
    if endpoint.startswith("nof_"):
        word = f"has {amount} {fewer} sessions that never reach Dice 0.{endpoint[4:]} ({metric_label(endpoint)})"
    elif endpoint.startswith("noc_"):
        word = f"needs {amount} {fewer} clicks on average to reach Dice 0.{endpoint[4:]}"
    elif endpoint.startswith("noi_"):
        word = f"needs {amount} {fewer} iterations on average to reach Dice 0.{endpoint[4:]}"
    else:
        word = f"has a {'lower' if p['diff'] < 0 else 'higher'} {metric_label(endpoint)}, by {amount} on average,"
    excludes = p["diff_lo"] > 0 or p["diff_hi"] < 0
    significant = math.isfinite(p["p_holm"]) and p["p_holm"] < 0.05
    if excludes and significant:
        verdict = "the 95% CI excludes zero and the Holm-adjusted Wilcoxon test is significant at 0.05"
    elif excludes:
        verdict = "the 95% CI excludes zero, but the Holm-adjusted Wilcoxon test is not significant at 0.05"
    elif significant:
        verdict = "the Holm-adjusted Wilcoxon test is significant at 0.05, but the 95% CI of the mean difference includes zero"
    else:
        verdict = "the 95% CI includes zero, so this comparison does not show a difference"
    return f"- `{lab}` {word} than `{ref}`; {verdict} (Holm p {_fmt_p(p['p_holm'])})."


def _comparison_lines(comparison: pd.DataFrame, arms: Sequence[Arm], endpoint: str, metrics: Sequence[str],
                      n_boot: int) -> list[str]:
    if comparison.empty:
        return []
    refs = list(dict.fromkeys(comparison["reference"]))
    several = len(refs) > 1
    against = "the reference of its variant and training seed" if several else f"`{refs[0]}`"
    lines = [
        "## Paired comparisons" if several else f"## Paired comparison against `{refs[0]}`", "",
        f"Each arm against {against}: the mean of the per-session differences (arm − reference; for NoF the "
        f"difference of the counts) with a paired 95% bootstrap CI ({n_boot} resamples of images), the two-sided "
        "Wilcoxon signed-rank p-value on the per-session differences (zero differences split between the ranks; "
        "it treats sessions as independent) and that p-value Holm-adjusted across the "
        f"{len(comparison.drop_duplicates(['label', 'reference']))} comparison(s) of each metric. The primary "
        f"endpoint is **{metric_label(endpoint)}**; the other metrics are secondary.", "",
    ]
    by = {(r["label"], r["metric"]): r for _, r in comparison.iterrows()}
    labels = list(dict.fromkeys(comparison["label"]))
    ref_of = {lab: by[(lab, endpoint)]["reference"] for lab in labels}
    header = ["arm"] + (["reference"] if several else []) + [
        f"**{metric_label(endpoint)} (primary)** diff [95% CI]", "p (Wilcoxon)", "p (Holm)",
        "effort (s) diff [95% CI]", "p (Holm)", "NoF@0.90 diff [95% CI]", "tie c_choose/c_click"]
    rows = []
    for lab in labels:
        p, e, f = by[(lab, endpoint)], by.get((lab, "effort_s")), by.get((lab, "nof_90"))
        rows.append([f"`{lab}`"] + ([f"`{ref_of[lab]}`"] if several else []) + [
            f"**{_fmt_diff(endpoint, p['diff'], p['diff_lo'], p['diff_hi'])}**", _fmt_p(p["p_wilcoxon"]),
            f"**{_fmt_p(p['p_holm'])}**",
            _fmt_diff("effort_s", e["diff"], e["diff_lo"], e["diff_hi"]) if e is not None else "–",
            _fmt_p(e["p_holm"]) if e is not None else "–",
            _fmt_diff("nof_90", f["diff"], f["diff_lo"], f["diff_hi"]) if f is not None else "–",
            "–" if not math.isfinite(p["tie_choose_click_ratio"]) else f"{p['tie_choose_click_ratio']:.2f}",
        ])
    lines += _md_table(header, rows) + [""]
    sentences = [_primary_sentence(lab, ref_of[lab], by[(lab, endpoint)], endpoint) for lab in labels]
    lines += [x for x in sentences if x] + [""]
    lines += [
        "**Tie ratio.** Each arm's mean annotator time up to Dice 0.90 is clicks × c_click + iterations × "
        "c_inspect + choices × c_choose. The tie ratio is the value of c_choose / c_click at which the arm and its "
        "reference would cost the same (c_inspect / c_click fixed at the run's value). An arm that makes more "
        "choices than its reference is the cheaper one only while the real ratio is below its tie ratio (one that "
        "makes fewer choices: only above it); a negative tie ratio means no choice cost makes the arm with more "
        "choices cheaper, because it also needs more clicks or inspections. – means both arms make as many "
        "choices, so the choice cost cannot separate them. The effort model's own ratio, b_choose × log2(K) / "
        "c_click, is given below for comparison.", "",
    ]
    header = ["arm", "clicks", "iterations", "choices", "bits of choice", "model c_choose/c_click", "tie ratio"]
    rows = []
    for a in arms:
        mc = mean_counts(arm_effort_counts(a))
        e = a.effort_model()
        model_ratio = (e.b_choose * mc.choice_bits / mc.choices / e.c_click) if mc.choices > 0 and e.c_click > 0 else 0.0
        if a.label in ref_of:
            t = by[(a.label, endpoint)]["tie_choose_click_ratio"]
            tie = "–" if not math.isfinite(t) else f"{t:.2f}"
            tie += f" (vs `{ref_of[a.label]}`)" if several else ""
        else:
            tie = "(reference)"
        rows.append([f"`{a.label}`", f"{mc.clicks:.2f}", f"{mc.iterations:.2f}", f"{mc.choices:.2f}",
                     f"{mc.choice_bits:.2f}", f"{model_ratio:.3f}", tie])
    lines += ["Mean effort counts per session up to Dice 0.90 (the whole session where it is never reached):", ""]
    lines += _md_table(header, rows) + [""]
    secondary = [m for m in metrics if m != endpoint]
    if secondary:
        header = ["metric"] + [f"`{lab}`" + (f" vs `{ref_of[lab]}`" if several else "") for lab in labels]
        rows = []
        for m in secondary:
            cells = []
            for lab in labels:
                r = by[(lab, m)]
                cells.append("–" if not math.isfinite(r["diff"]) else
                             f"{_fmt_diff(m, r['diff'], r['diff_lo'], r['diff_hi'])}, Holm p {_fmt_p(r['p_holm'])}")
            rows.append([metric_label(m)] + cells)
        lines += ["Secondary metrics, difference against the reference [95% CI] and Holm p:", ""]
        lines += _md_table(header, rows) + [""]
    return lines


def _multi_seed_lines(seeds: pd.DataFrame, endpoint: str) -> list[str]:
    if seeds.empty:
        return []
    lines = ["## Across training seeds", "",
             "Arms that share a name across several training seeds: the mean over seeds of the arm means, the "
             "standard deviation across seeds and the range (min–max). The bootstrap CIs above cover session "
             "sampling only; this spread is the training-seed variation they leave out.", ""]
    header = ["name", "seeds", f"{metric_label(endpoint)} mean", "SD", "min–max", "effort (s) mean", "SD", "min–max"]
    rows = []
    for _, r in seeds.iterrows():
        row = [f"`{r['name']}`", f"{r['n_seeds']} ({r['train_seeds']})"]
        for m in (endpoint, "effort_s"):
            row += [_fmt_value(m, r[f"{m}_mean"]), _fmt_value(m, r[f"{m}_sd"]),
                    f"{_fmt_value(m, r[f'{m}_min'])}–{_fmt_value(m, r[f'{m}_max'])}"]
        rows.append(row)
    return lines + _md_table(header, rows) + [""]


def _reproduce_lines(study: dict[str, Any], study_dir: Path, out: Path) -> tuple[list[str], list[str]]:
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
            cells = [f"`{c}`"]
            for v in df[c]:
                if isinstance(v, (float, np.floating)):
                    cells.append("–" if not math.isfinite(v) else f"{v:.1f}" if c.endswith("_px") else f"{v:.3f}")
                else:
                    cells.append(str(v))
            paper = PAPER_VALUES.get(c)
            cells.append("" if paper is None else f"{paper:g}")
            rows.append(cells)
        lines += _md_table(["metric", *[f"`{n}`" for n in names], "paper"], rows) + [""]
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


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "method"


def _figures(arms: Sequence[Arm], summary: pd.DataFrame, reference: str, out: Path, n_boot: int, seed: int
             ) -> tuple[list[tuple[str, Path]], list[str]]:
    figs: list[tuple[str, Path]] = []
    warns: list[str] = []
    figs.append(("Dice against clicks", plot_dice_vs_clicks(arms, out / "dice-vs-clicks.png", n_boot, seed)))
    figs.append(("Dice against annotator seconds", plot_dice_vs_effort(arms, out / "dice-vs-effort.png", n_boot, seed)))
    figs.append(("Dice per iteration", plot_dice_vs_iteration(arms, out / "dice-vs-iteration.png", n_boot, seed)))
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


def _resolve_references(arms: Sequence[Arm], study: dict[str, Any] | None, reference: str | None
                        ) -> tuple[str | None, dict[str, str]]:
    """``(main reference label, {arm label: its reference label})``.

    A ``reference`` given by the caller is every arm's reference. Otherwise a study's arms keep the
    reference ``study.json`` names for each (the reference arm of their variant and training seed),
    falling back to the study's ``reference``; plain runs use the first arm.
    """
    labels = [a.label for a in arms]
    if not arms:
        if reference is not None and study is None:
            raise ValueError(f"reference: no arm labelled {reference!r}")
        return reference, {}
    if reference is not None:
        if reference not in labels:
            raise ValueError(f"reference: no arm labelled {reference!r}; arms: {', '.join(map(repr, labels))}")
        return reference, {lab: reference for lab in labels}
    study_ref = (study or {}).get("reference")
    per_arm = study is not None and any(a.reference for a in arms)
    if not per_arm:
        main_ref = study_ref or labels[0]
        if main_ref not in labels:
            raise ValueError(f"reference: the study's reference {main_ref!r} is not an arm; "
                             f"arms: {', '.join(map(repr, labels))}")
        return main_ref, {lab: main_ref for lab in labels}
    fallback = study_ref if study_ref in labels else None
    ref_map = {a.label: a.reference or fallback or a.label for a in arms}
    for lab, ref in ref_map.items():
        if ref not in labels:
            raise ValueError(f"reference: study.json compares arm {lab!r} with {ref!r}, which is not an arm")
    main_ref = fallback or ref_map[labels[0]]
    return main_ref, ref_map


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
        figures: draw the PNG figures (and replay the example sessions).
    Returns:
        A dict: ``paths`` (name -> Path of every file written), ``summary`` and ``comparison``
        (DataFrames as in the CSV files), ``multi_seed`` (DataFrame), ``warnings`` (list of str),
        ``reference`` (the main reference label), ``references`` (each arm's reference), ``endpoint``,
        ``n_boot``, ``seed``.
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
    metrics = _resolve_metrics(str(endpoint), (study or {}).get("thresholds"), arms)
    labels = [a.label for a in arms]
    reference, ref_map = _resolve_references(arms, study, reference)
    _check_paired(arms)
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

    written: dict[str, Path] = {}
    if arms:  # a reproduce-only study has no arm tables
        _write_csv(summary, out / "summary.csv")
        written["summary.csv"] = out / "summary.csv"
        _write_csv(comparison, out / "comparison.csv")
        written["comparison.csv"] = out / "comparison.csv"

    figs: list[tuple[str, Path]] = []
    if figures and arms:
        figs, fwarn = _figures(arms, summary, str(reference), out, n_boot, seed)
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
        lines += _setup_lines(arms, study, n_img)
        lines += _headline_lines(summary, metrics, str(endpoint), n_boot)
        lines += _comparison_lines(comparison, arms, str(endpoint), metrics, n_boot)
        lines += _multi_seed_lines(seeds, str(endpoint))
    if study is not None and study_dir is not None:
        rl, rw = _reproduce_lines(study, study_dir, out)
        lines += rl
        warns += rw
    if figs:
        lines += ["## Figures", ""]
        captions = {
            "dice-vs-clicks.png": "mean Dice after c clicks (a session's Dice at the first iteration with at least "
                                  "c clicks, else its last Dice); bands: 95% CI, images resampled.",
            "dice-vs-effort.png": "mean Dice on screen after t annotator seconds (clicks, inspections and choices "
                                  "priced with the run's effort model; 0 before the first proposal); bands: 95% CI.",
            "dice-vs-iteration.png": "mean Dice at each iteration; bands: 95% CI.",
            "noc90.png": "NoC@0.90 per arm, mean and 95% CI, best at the top.",
            "k-sweep.png": "NoC@0.90 and effort against K for arms that differ only in K.",
        }
        for title_, p in figs:
            cap = captions.get(p.name, "first iterations of a replayed session: the candidates (chosen one in a gold "
                                       "frame), the robot's clicks (green positive, red negative) and the state after "
                                       "them; red: decided foreground, blue: decided background.")
            lines += [f"### {title_}", "", f"![{title_}]({p.name})", "", cap, ""]
    if arms:
        lines += ["## Files", "",
                  "- `summary.csv`: one row per arm, every metric with its 95% CI (`M`, `M_lo`, `M_hi`).",
                  "- `comparison.csv`: every arm against the reference, per metric: difference with CI, Wilcoxon "
                  "and Holm p-values, tie ratio; `primary` marks the endpoint.", ""]
    if warns:
        lines += ["## Warnings", ""] + [f"- {w_}" for w_ in warns] + [""]
    _write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")
    written["report.md"] = out / "report.md"
    return {
        "paths": written, "summary": summary, "comparison": comparison, "multi_seed": seeds, "warnings": warns,
        "reference": reference, "references": ref_map, "endpoint": str(endpoint), "n_boot": n_boot, "seed": seed,
    }


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="probseg-report",
        description=(
            "Report on a study directory or on run directories: summary.csv (per arm, 95% image-bootstrap CIs), "
            "comparison.csv (paired differences against the reference, Wilcoxon and Holm p-values, effort tie "
            "ratio), report.md and PNG figures."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="RUN_DIR", help="one study directory, or one or more run directories")
    p.add_argument("--out", default=None, help="output folder (default: the study or single run directory)")
    p.add_argument("--reference", default=None, help="label of the reference arm (default: the study's, else the first)")
    p.add_argument("--endpoint", default=None,
                   help=f"primary endpoint metric (default: the study's, else {DEFAULT_ENDPOINT}); one of "
                        f"{', '.join(dict.fromkeys([*METRICS, *EXTRA_METRICS]))}")
    p.add_argument("--n-boot", type=int, default=None, help=f"bootstrap resamples (default: the study's, else {DEFAULT_N_BOOT})")
    p.add_argument("--seed", type=int, default=None, help=f"bootstrap seed (default: the study's, else {DEFAULT_SEED})")
    p.add_argument("--no-figures", action="store_true", help="write the tables and report.md only")
    return p


@cli_entry("probseg-report")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-report``."""
    a = _parser().parse_args(argv)
    result = write_report(a.paths, out=a.out, reference=a.reference, endpoint=a.endpoint, n_boot=a.n_boot,
                          seed=a.seed, figures=not a.no_figures)
    for name, path in result["paths"].items():
        print(f"{name}: {path}")
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
