"""``probseg-report``: tables, paired comparisons and figures for one or more simulator runs.

Input is either one *study directory* (``study.json`` plus ``runs/<label>/`` run directories, as
:mod:`simulator.study` writes them) or one or more *run directories* (what
:func:`simulator.runner.run` writes: ``config.json``, ``sessions.parquet``, ``steps.parquet``). Each run
is an *arm*. Output, in the ``out`` folder:

* ``summary.csv``: one row per arm, each metric's mean (NoF: a count) with a 95% percentile
  bootstrap CI that resamples images (all sessions of an image move together: a cluster bootstrap);
* ``comparison.csv``: each arm against the reference arm, per metric: the mean paired difference
  (arm - reference) with a paired cluster-bootstrap 95% CI, the Wilcoxon signed-rank p-value on the
  per-session differences, Holm-adjusted p-values across arms (per metric), the effort tie ratio and,
  on the primary endpoint's rows, the minimal detectable difference (``mdd``);
* for real-image studies (sessions of more than one task, or of one task other than ``disks``):
  ``per_task.csv`` (per task and arm: the endpoint and NoC@0.90 with CIs over the task's images, and
  the paired difference against the reference); for arms with the human start (one session per
  annotator): ``per_annotator.csv``; for arms that differ only in start, one of them human:
  ``starts.csv`` (each simulated start against the human start, paired by image);
* ``report.md`` and PNG figures (Dice against clicks, annotator seconds and iterations; Dice
  against clicks per task when there are several; NoC@0.90 per arm; a K sweep when there is one; a
  replayed example session per method).

Arms may hold different sessions (a human start runs one per annotator of an image, a simulated
start one per image): each arm is paired with its reference, which must hold the same sessions, and
each arm's CIs resample its own images. Arms on different images (a capped ``n_sessions`` reaches
fewer images with the human start) are reported with a warning.

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
from statistics import NormalDist
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
    annotator_index,
    arm_effort_counts,
    arm_start,
    image_codes,
    lower_is_better,
    metric_label,
    metric_matrix,
    metric_statistic,
    session_tasks,
)
from .curves import dice_at_clicks_matrix, dice_by_effort_matrix, dice_by_iteration_matrix
from .figures import (
    DPI,  # noqa: F401  (re-exported, as before the split)
    plot_dice_vs_clicks,
    plot_dice_vs_clicks_per_task,
    plot_dice_vs_effort,
    plot_dice_vs_iteration,
    plot_filmstrip,
    plot_k_sweep,
    plot_noc90,
    replay_session,
)
from .metrics import EffortCounts, mean_counts, session_ends, tie_choose_click_ratio
from .stats import (
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    bootstrap_weights,
    cluster_bootstrap,
    cluster_values,
    holm,
    minimal_detectable_difference,
    wilcoxon_p,
)

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
    "protocol_change_table",
    "session_ends_table",
    "summary_table",
    "comparison_table",
    "multi_seed_table",
    "dice_at_clicks_matrix",
    "dice_by_iteration_matrix",
    "dice_by_effort_matrix",
    "plot_dice_vs_clicks",
    "plot_dice_vs_clicks_per_task",
    "plot_dice_vs_effort",
    "plot_dice_vs_iteration",
    "plot_noc90",
    "plot_k_sweep",
    "replay_session",
    "plot_filmstrip",
    "per_task_table",
    "per_annotator_table",
    "start_groups",
    "starts_table",
    "study_tasks",
    "has_real_tasks",
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


def _session_keys(arm: Arm) -> np.ndarray:
    return arm.sessions[list(KEY_COLUMNS)].astype(str).to_numpy()


def _check_paired(arms: Sequence[Arm], references: Mapping[str, str] | None = None) -> None:
    """Paired arms must hold the same sessions (same (session, image, target) keys).

    Without ``references`` every arm is paired with the first; with it, each arm with its reference
    (``{label: reference label}``), so arms of other starts (a human start runs one session per
    annotator of an image, a simulated start one per image) may hold other sessions, and even other
    images (a capped ``n_sessions`` reaches fewer images with the human start): see
    :func:`_image_set_warning`.
    """
    if not arms:
        return
    by_label = {a.label: a for a in arms}
    if references is None:
        pairs = [(arm, arms[0]) for arm in arms[1:]]
    else:
        pairs = [(arm, by_label[references[arm.label]]) for arm in arms
                 if references.get(arm.label, arm.label) != arm.label and references[arm.label] in by_label]
    keys = {a.label: _session_keys(a) for a in arms}
    for arm, ref in pairs:
        k, rk = keys[arm.label], keys[ref.label]
        if k.shape != rk.shape or not (k == rk).all():
            raise ValueError(
                f"paths: arms {arm.label!r} ({len(k)} sessions) and {ref.label!r} ({len(rk)} sessions) "
                "ran on different sessions (session, image, target), so they cannot be paired; run them with "
                "the same dataset, n_sessions and seed"
            )


def _image_set(arm: Arm) -> np.ndarray:
    return np.unique(arm.sessions["image"].astype(str).to_numpy())


def _image_set_warning(arms: Sequence[Arm]) -> str | None:
    """A warning when the arms did not all run on the same images, else None."""
    if not arms:
        return None
    sets = {a.label: _image_set(a) for a in arms}
    first = sets[arms[0].label]
    if all(v.shape == first.shape and (v == first).all() for v in sets.values()):
        return None
    counts = ", ".join(f"{lab!r}: {len(v)}" for lab, v in sets.items())
    return ("the arms did not all run on the same images (images per arm: " + counts + "; a capped n_sessions "
            "reaches fewer images with the human start, which runs one session per annotator), so their rows of "
            "summary.csv are over different images; each comparison pairs an arm with a reference on the same "
            "sessions, and starts.csv uses the images common to a group's starts")


class _Weights:
    """Bootstrap weights per number of images, each drawn once from the report's seed (so arms on the
    same number of images share one matrix, and a report's numbers do not depend on arm order)."""

    def __init__(self, n_boot: int, seed: int, main: np.ndarray | None = None) -> None:
        self.n_boot, self.seed = n_boot, seed
        self.cache: dict[int, np.ndarray] = {} if main is None else {int(np.shape(main)[1]): np.asarray(main)}

    def __call__(self, n: int) -> np.ndarray:
        if n not in self.cache:
            self.cache[n] = bootstrap_weights(n, self.n_boot, self.seed)
        return self.cache[n]


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
    95% CI is a percentile bootstrap resampling the arm's images (cluster bootstrap; ``weights``, from
    :func:`bootstrap_weights`, is used for arms on as many images as it has columns). Arms need not
    hold the same sessions (a human start runs one session per annotator).
    """
    cols = [*ID_COLUMNS] + [f"{m}{suf}" for m in metrics for suf in ("", "_lo", "_hi")]
    if not arms:
        return pd.DataFrame(columns=cols)
    w_of = _Weights(n_boot, seed, weights)
    rows = []
    for arm in arms:
        codes, n_img = image_codes(arm)
        est, lo, hi = cluster_bootstrap(metric_matrix(arm, metrics), codes,
                                        statistic=[metric_statistic(m) for m in metrics], weights=w_of(n_img))
        row = _arm_ids(arm, n_img)
        for j, m in enumerate(metrics):
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = float(est[j]), float(lo[j]), float(hi[j])
        rows.append(row)
    return _typed_ids(pd.DataFrame(rows, columns=cols))


COMPARISON_COLUMNS = (
    "label", "reference", "metric", "primary", "statistic", "n_pairs", "value", "reference_value",
    "diff", "diff_lo", "diff_hi", "p_wilcoxon", "p_holm", "tie_choose_click_ratio", "mdd",
)
# The minimal detectable difference: two-sided alpha and power of the paired design it assumes.
MDD_ALPHA = 0.05
MDD_POWER = 0.8


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
    ``mdd`` (the endpoint's rows only, NaN elsewhere) is the minimal detectable difference at two-sided
    alpha 0.05 and power 0.8 of this paired comparison: ``(z_0.975 + z_0.80) * sd_d / sqrt(n_images)``
    with ``sd_d`` the SD of the per-image mean differences (sessions of an image are not independent;
    for a NoF endpoint, a count: ``... * sd * sqrt(n_images)`` of the per-image sums), NaN with fewer
    than 2 images. Sessions are paired by (session, image, target); an arm on other sessions than its
    reference is refused.
    """
    refs = _reference_map(arms, reference)
    _check_paired(arms, refs)
    pairs = [(a, next(r for r in arms if r.label == refs[a.label])) for a in arms if refs.get(a.label, a.label) != a.label]
    if not pairs:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    w_of = _Weights(n_boot, seed, weights)
    stats = [metric_statistic(m) for m in metrics]
    cache: dict[str, tuple[np.ndarray, np.ndarray, EffortCounts]] = {}

    def arm_stats(arm: Arm) -> tuple[np.ndarray, np.ndarray, EffortCounts]:
        if arm.label not in cache:
            vals = metric_matrix(arm, metrics)
            codes, n_img = image_codes(arm)
            est, _, _ = cluster_bootstrap(vals, codes, statistic=stats, weights=w_of(n_img))
            cache[arm.label] = (vals, est, mean_counts(arm_effort_counts(arm)))
        return cache[arm.label]

    per_arm = []
    for arm, ref in pairs:
        vals, est, counts = arm_stats(arm)
        ref_vals, ref_est, ref_counts = arm_stats(ref)
        codes, n_img = image_codes(arm)  # the same sessions as its reference, so the same images
        d = vals - ref_vals
        dest, dlo, dhi = cluster_bootstrap(d, codes, statistic=stats, weights=w_of(n_img))
        ps = [wilcoxon_p(d[:, j]) for j in range(len(metrics))]
        tie = tie_choose_click_ratio(counts, ref_counts, arm.effort_model())
        n_pairs = np.isfinite(d).sum(axis=0)
        mdd = [_mdd(d[:, j], codes, n_img, stats[j])[0] if m == endpoint else float("nan")
               for j, m in enumerate(metrics)]
        per_arm.append((arm, ref, est, ref_est, dest, dlo, dhi, ps, tie, n_pairs, mdd))
    p_holm = np.stack([holm([pa[7][j] for pa in per_arm]) for j in range(len(metrics))], axis=1)
    rows = []
    for i, (arm, ref, est, ref_est, dest, dlo, dhi, ps, tie, n_pairs, mdd) in enumerate(per_arm):
        for j, m in enumerate(metrics):
            rows.append({
                "label": arm.label, "reference": ref.label, "metric": m, "primary": m == endpoint,
                "statistic": "count" if stats[j] == "sum" else "mean", "n_pairs": int(n_pairs[j]),
                "value": float(est[j]), "reference_value": float(ref_est[j]), "diff": float(dest[j]),
                "diff_lo": float(dlo[j]), "diff_hi": float(dhi[j]), "p_wilcoxon": float(ps[j]),
                "p_holm": float(p_holm[i, j]), "tie_choose_click_ratio": float(tie), "mdd": float(mdd[j]),
            })
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _mdd(d: np.ndarray, codes: np.ndarray, n_images: int, statistic: str) -> tuple[float, float, int]:
    """:func:`minimal_detectable_difference` of per-session paired differences ``d`` (n_sessions,):
    ``(mdd, sd, n)`` from the per-image means (NoF: per-image sums) of ``d``."""
    return minimal_detectable_difference(cluster_values(d, codes, n_images, statistic), MDD_ALPHA, MDD_POWER,
                                         statistic)


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
# Real-image studies: per task, per annotator, simulated against human starts


PER_TASK_COLUMNS = (
    "task", "label", "reference", "variant", "start", "metric", "primary", "n_images", "n_sessions",
    "value", "value_lo", "value_hi", "diff", "diff_lo", "diff_hi", "mdd",
)
PER_ANNOTATOR_COLUMNS = (
    "label", "variant", "task", "metric", "annotator", "n_images", "value", "n_annotators",
    "annotators_mean", "annotators_sd", "annotators_min", "annotators_max",
)
STARTS_COLUMNS = (
    "group", "task", "metric", "primary", "start", "label", "human_label", "n_images", "value", "value_lo",
    "value_hi", "diff_vs_human", "diff_lo", "diff_hi",
)
ALL_TASKS = "all"


def study_tasks(arms: Sequence[Arm]) -> list[str]:
    """The distinct tasks of the arms' sessions, sorted (``""`` for runs without a ``task`` column)."""
    return sorted({str(t) for a in arms for t in session_tasks(a)})


def has_real_tasks(arms: Sequence[Arm]) -> bool:
    """Whether the report gets its per-task sections: more than one task, or one that is not ``disks``
    (runs without a ``task`` column, one task ``""``, count as disks)."""
    tasks = study_tasks(arms)
    return len(tasks) > 1 or (len(tasks) == 1 and tasks[0] not in ("disks", ""))


def _endpoint_metrics(endpoint: str) -> list[str]:
    return list(dict.fromkeys([endpoint, "noc_90"]))


def _sub_codes(codes: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The image codes of the sessions in ``mask``, renumbered 0..n-1 (sorted image order kept)."""
    uniq, sub = np.unique(codes[mask], return_inverse=True)
    return sub.astype(np.int64), int(len(uniq))


def _ci_or_nan(est: float, lo: float, hi: float, n_images: int) -> tuple[float, float, float]:
    """A single image has no sampling distribution to resample: its CI is NaN."""
    return (est, lo, hi) if n_images >= 2 else (est, float("nan"), float("nan"))


def per_task_table(
    arms: Sequence[Arm],
    reference: str | Mapping[str, str] | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Per task and arm, the endpoint and NoC@0.90 with 95% CIs that resample the task's images, and the
    paired difference against the arm's reference within the task (columns :data:`PER_TASK_COLUMNS`).

    One row per (task, arm, metric); tasks sorted, arms in the given order. ``value`` is the mean over
    the task's sessions (``nof_T``: the count); ``diff`` the mean of the per-session differences (arm -
    reference) with a paired bootstrap CI; ``mdd`` (endpoint rows of compared arms) the task's minimal
    detectable difference as in :func:`comparison_table`. A task with a single image has NaN CIs and
    ``mdd``; a reference arm (compared with itself) has NaN ``diff``. ``reference`` is as in
    :func:`comparison_table`. Every bootstrap draws from ``seed``, so the table is deterministic.
    """
    refs = _reference_map(arms, reference)
    _check_paired(arms, refs)
    if not arms:
        return pd.DataFrame(columns=list(PER_TASK_COLUMNS))
    metrics = _endpoint_metrics(endpoint)
    stats = [metric_statistic(m) for m in metrics]
    by_label = {a.label: a for a in arms}
    weights = _Weights(n_boot, seed)
    vals = {a.label: metric_matrix(a, metrics) for a in arms}
    rows = []
    for task in study_tasks(arms):
        for arm in arms:
            ref = by_label[refs[arm.label]]
            mask = session_tasks(arm) == task
            if not mask.any():
                continue
            codes, n_t = _sub_codes(image_codes(arm)[0], mask)
            w = weights(n_t)
            v = vals[arm.label][mask]
            est, lo, hi = cluster_bootstrap(v, codes, statistic=stats, weights=w)
            compared = ref is not arm
            if compared:
                d = v - vals[ref.label][mask]
                dest, dlo, dhi = cluster_bootstrap(d, codes, statistic=stats, weights=w)
            for j, m in enumerate(metrics):
                value, value_lo, value_hi = _ci_or_nan(float(est[j]), float(lo[j]), float(hi[j]), n_t)
                diff = diff_lo = diff_hi = mdd = float("nan")
                if compared:
                    diff, diff_lo, diff_hi = _ci_or_nan(float(dest[j]), float(dlo[j]), float(dhi[j]), n_t)
                    if m == endpoint:
                        mdd = _mdd(d[:, j], codes, n_t, stats[j])[0]
                rows.append({
                    "task": task, "label": arm.label, "reference": ref.label, "variant": arm.variant,
                    "start": arm_start(arm), "metric": m, "primary": m == endpoint, "n_images": n_t,
                    "n_sessions": int(mask.sum()), "value": value, "value_lo": value_lo, "value_hi": value_hi,
                    "diff": diff, "diff_lo": diff_lo, "diff_hi": diff_hi, "mdd": mdd,
                })
    df = pd.DataFrame(rows, columns=list(PER_TASK_COLUMNS))
    for col in ("n_images", "n_sessions"):
        df[col] = df[col].astype("int64")
    return df


def _annotator_arms(arms: Sequence[Arm]) -> list[Arm]:
    """Arms with the human start whose sessions' targets name annotators (``annotator-N``)."""
    return [a for a in arms if arm_start(a) == "human"
            and any(annotator_index(t) is not None for t in a.sessions["target"].astype(str))]


def per_annotator_table(arms: Sequence[Arm], endpoint: str = DEFAULT_ENDPOINT) -> pd.DataFrame:
    """For human-start arms: the endpoint and NoC@0.90 per annotator, and their spread across annotators.

    One row per (arm, task, metric, annotator) (columns :data:`PER_ANNOTATOR_COLUMNS`): ``value`` is the
    mean over the annotator's sessions (``nof_T``: the count), ``n_images`` how many images the annotator
    scribbled. ``task`` is ``all`` (every task), then each task when there are several. The columns
    ``n_annotators``, ``annotators_mean``, ``annotators_sd`` (ddof 1; NaN with one annotator),
    ``annotators_min`` and ``annotators_max`` describe the per-annotator values of the row's (arm, task,
    metric) and repeat on each of its rows. Sessions whose target is not ``annotator-N`` are left out.
    Empty (with the columns) when no arm has the human start.
    """
    rows = []
    metrics = _endpoint_metrics(endpoint)
    tasks = study_tasks(arms)
    scopes = [ALL_TASKS] + (tasks if len(tasks) > 1 else [])
    for arm in _annotator_arms(arms):
        vals = metric_matrix(arm, metrics)
        ann = np.array([annotator_index(t) for t in arm.sessions["target"].astype(str)], dtype=object)
        is_ann = np.array([a is not None for a in ann])
        images = arm.sessions["image"].astype(str).to_numpy()
        task_of = session_tasks(arm)
        for scope in scopes:
            in_scope = is_ann & ((task_of == scope) if scope != ALL_TASKS else True)
            present = sorted({int(a) for a in ann[in_scope]})
            if not present:
                continue
            for j, m in enumerate(metrics):
                per = []
                for a in present:
                    sel = in_scope & np.array([x == a for x in ann])
                    v = vals[sel, j]
                    v = v[np.isfinite(v)]
                    if v.size == 0:
                        value = float("nan")
                    else:
                        value = float(v.sum() if metric_statistic(m) == "sum" else v.mean())
                    per.append((a, int(len(np.unique(images[sel]))), value))
                finite = np.array([p[2] for p in per if math.isfinite(p[2])])
                spread = {
                    "n_annotators": len(per),
                    "annotators_mean": float(finite.mean()) if finite.size else float("nan"),
                    "annotators_sd": float(finite.std(ddof=1)) if finite.size >= 2 else float("nan"),
                    "annotators_min": float(finite.min()) if finite.size else float("nan"),
                    "annotators_max": float(finite.max()) if finite.size else float("nan"),
                }
                for a, n_img, value in per:
                    rows.append({"label": arm.label, "variant": arm.variant, "task": scope, "metric": m,
                                 "annotator": f"annotator-{a}", "n_images": n_img, "value": value, **spread})
    df = pd.DataFrame(rows, columns=list(PER_ANNOTATOR_COLUMNS))
    for col in ("n_images", "n_annotators"):
        df[col] = df[col].astype("int64")
    return df


_START_KEY_SKIP = ("start", "chunk_size", "n_sessions")


def start_groups(arms: Sequence[Arm]) -> list[tuple[str, Arm, list[Arm]]]:
    """Arms that differ only in their start, with a human start among them.

    Returns ``[(group name, human-start arm, [arms of the other starts])]`` in the arms' order. Arms
    group when their settings agree except ``start`` (and ``chunk_size``, ``n_sessions``, which never
    change a session's numbers) and they share a training seed. A group's name is the human arm's
    name without its `` | <variant>`` suffix (with `` | seed S`` where names would clash).
    """
    groups: dict[str, list[Arm]] = {}
    for arm in arms:
        key = json.dumps({k: v for k, v in arm.settings.items() if k not in _START_KEY_SKIP},
                         sort_keys=True, default=str) + f"|{arm.train_seed}"
        groups.setdefault(key, []).append(arm)
    out = []
    for members in groups.values():
        human = next((a for a in members if arm_start(a) == "human"), None)
        by_start: dict[str, Arm] = {}
        for a in members:
            if arm_start(a) not in ("human", ""):
                by_start.setdefault(arm_start(a), a)  # one arm per start: the first
        others = list(by_start.values())
        if human is None or not others:
            continue
        suffix = f" | {human.variant}"
        name = human.name[: -len(suffix)] if human.name.endswith(suffix) and human.name != suffix else human.name
        out.append((name, human, others))
    names = [g[0] for g in out]
    return [(n if names.count(n) == 1 or h.train_seed is None else f"{n} | seed {h.train_seed}", h, o)
            for n, h, o in out]


def starts_table(
    arms: Sequence[Arm],
    endpoint: str = DEFAULT_ENDPOINT,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Simulated starts against the human start, per group of :func:`start_groups` (columns
    :data:`STARTS_COLUMNS`).

    Everything here is per image, on the images that every arm of the group ran (all of them unless a
    capped ``n_sessions`` reached fewer images with the human start). An arm's value on an image is
    the mean over its sessions there, so the human start's annotators are averaged per image first,
    and ``value`` is the mean over images (it can differ from summary.csv's session mean when images
    have different numbers of annotators; for ``nof_T`` it is the share of failed sessions, not a
    count). ``diff_vs_human`` is the mean over the images of (simulated - human), with a bootstrap CI
    resampling images (paired by image). Rows per group, task (``all``, then each task when there
    are several), metric (the endpoint and NoC@0.90) and start, the human start first (its
    ``diff_vs_human`` NaN). A task with one image has NaN CIs.
    """
    groups = start_groups(arms)
    if not groups:
        return pd.DataFrame(columns=list(STARTS_COLUMNS))
    metrics = _endpoint_metrics(endpoint)
    w_of = _Weights(n_boot, seed, weights)
    task_of_image: dict[str, str] = {}
    for a in arms:
        task_of_image.update(zip(a.sessions["image"].astype(str), session_tasks(a)))

    def image_means(arm: Arm) -> pd.DataFrame:
        """Per image (sorted names), the mean of each metric over the arm's sessions there."""
        codes, n = image_codes(arm)
        vals = cluster_values(metric_matrix(arm, metrics), codes, n, "mean")
        return pd.DataFrame(vals, index=_image_set(arm), columns=metrics)

    rows = []
    for name, human, others in groups:
        means = [(arm, image_means(arm)) for arm in [human, *others]]
        common = sorted(set.intersection(*(set(m.index) for _, m in means)))
        if not common:
            continue
        means = [(arm, m.loc[common]) for arm, m in means]
        h = means[0][1].to_numpy()
        image_task = np.array([task_of_image.get(i, "") for i in common], dtype=object)
        tasks = sorted(set(image_task))
        scopes = [ALL_TASKS] + (tasks if len(tasks) > 1 else [])
        for scope in scopes:
            sel = np.ones(len(common), dtype=bool) if scope == ALL_TASKS else image_task == scope
            n_s = int(sel.sum())
            w = w_of(n_s)
            idx = np.arange(n_s)
            for j, m in enumerate(metrics):
                for arm, frame in means:
                    v = frame.to_numpy()[sel, j]
                    est, lo, hi = cluster_bootstrap(v, idx, weights=w)
                    row = {"group": name, "task": scope, "metric": m, "primary": m == endpoint,
                           "start": arm_start(arm), "label": arm.label, "human_label": human.label,
                           "n_images": int(np.isfinite(v).sum())}
                    row["value"], row["value_lo"], row["value_hi"] = _ci_or_nan(float(est[0]), float(lo[0]),
                                                                                float(hi[0]), n_s)
                    if arm is human:
                        row["diff_vs_human"] = row["diff_lo"] = row["diff_hi"] = float("nan")
                    else:
                        d = v - h[sel, j]
                        dest, dlo, dhi = cluster_bootstrap(d, idx, weights=w)
                        row["n_images"] = int(np.isfinite(d).sum())
                        row["diff_vs_human"], row["diff_lo"], row["diff_hi"] = _ci_or_nan(
                            float(dest[0]), float(dlo[0]), float(dhi[0]), n_s)
                    rows.append(row)
    df = pd.DataFrame(rows, columns=list(STARTS_COLUMNS))
    df["n_images"] = df["n_images"].astype("int64")
    return df


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


def _protocol_rules(s: Mapping[str, Any]) -> str:
    """The session rules of protocol 0.2 in words; runs recorded before them carry v0.1's."""
    if "fallback" not in s:
        return ("v0.1 rules (recorded before protocol 0.2): the fallback after a stall or rejection also clicked "
                "undecided background, the oracle accepted by pixel score, every session ran every iteration")
    fallback = ("the fallback after a stall or rejection clicks the errors of the handed-in segmentation "
                "(undecided = background)" if s.get("fallback") == "hand-in"
                else "the fallback after a stall or rejection also clicks undecided background (v0.1)")
    accept = ("the oracle never accepts a candidate that lowers the Dice" if s.get("acceptance", "no-worse-dice")
              == "no-worse-dice" else "the oracle accepts by pixel score alone (v0.1)")
    if not s.get("early_stop", True):
        stop = "every session runs every iteration (v0.1)"
    elif s.get("stop_at") is not None:
        stop = f"a session ends once its Dice reaches {float(s['stop_at']):.2f}"
    else:
        stop = "a session ends when its segmentation has no error"
    return f"{fallback}; {accept}; {stop}"


def session_ends_table(arms: Sequence[Arm]) -> pd.DataFrame:
    """How each arm's sessions ended: one row per arm.

    Columns: ``label``, ``n_sessions``, ``steps_per_session`` (mean iterations run), ``n_stopped_early``
    (sessions that ended before ``max_iters`` because the annotator was done), ``correction_clicks``
    (mean robot corrections per session) and ``positive_click_share`` (the positive fraction of those
    corrections; NaN without any). Columns a run did not record (runs made before protocol 0.2) are NaN.
    """
    rows = [{"label": a.label, "n_sessions": int(len(a.sessions)), **session_ends(a.sessions)} for a in arms]
    cols = ["label", "n_sessions", "steps_per_session", "n_stopped_early", "correction_clicks", "positive_click_share"]
    return pd.DataFrame(rows, columns=cols)


# A study folder holding this file (the summary.csv of its last run under the v0.1 session rules,
# e.g. ``git show COMMIT:results/NAME/summary.csv``) gets a section on what protocol 0.2 moved.
PREVIOUS_PROTOCOL_FILE = "protocol-v0.1-summary.csv"
_MOVED_METRICS = ("noc_90", "nof_90", "dice_at_clicks_5", "dice_at_iter_10", "effort_s")


def protocol_change_table(summary: pd.DataFrame, previous: pd.DataFrame, endpoint: str) -> pd.DataFrame:
    """Per arm present in both tables and metric (the endpoint first): ``label``, ``metric``,
    ``before`` (v0.1 rules), ``after`` (this run) and ``change`` (after - before)."""
    metrics = [endpoint] + [m for m in _MOVED_METRICS if m != endpoint]
    old = previous.set_index("label")
    rows = []
    for _, r in summary.iterrows():
        if r["label"] not in old.index:
            continue
        for m in metrics:
            if m in summary.columns and m in old.columns:
                before, after = float(old.at[r["label"], m]), float(r[m])
                rows.append({"label": r["label"], "metric": m, "before": before, "after": after,
                             "change": after - before})
    return pd.DataFrame(rows, columns=["label", "metric", "before", "after", "change"])


def _protocol_change_lines(summary: pd.DataFrame, out: Path, endpoint: str) -> list[str]:
    path = out / PREVIOUS_PROTOCOL_FILE
    if not path.is_file():
        return []
    try:
        previous = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"paths: {path} is unreadable: {exc}") from None
    table = protocol_change_table(summary, previous, endpoint)
    if table.empty:
        return []
    metrics = list(dict.fromkeys(table["metric"]))
    lines = [
        "## What protocol 0.2 moved", "",
        "These sessions follow protocol 0.2: after a stall or rejection the robot clicks the errors of the "
        "segmentation a person would hand in (never undecided background), the oracle never accepts a candidate "
        "that lowers the Dice, and a session ends when its segmentation has no error. The same arms under the "
        f"v0.1 rules (`{PREVIOUS_PROTOCOL_FILE}`, the summary of this study's last v0.1 run) against now, "
        "before → after (change):", "",
    ]
    header = ["arm"] + [("**" + metric_label(m) + "**") if m == endpoint else metric_label(m) for m in metrics]
    rows = []
    for label, g in table.groupby("label", sort=False):
        by = g.set_index("metric")
        cells = []
        for m in metrics:
            if m not in by.index:
                cells.append("–")
                continue
            b, a, c = by.at[m, "before"], by.at[m, "after"], by.at[m, "change"]
            cells.append(f"{_fmt_value(m, b)} → {_fmt_value(m, a)} ({'+' if c >= 0 else ''}{_fmt_value(m, c)})")
        rows.append([f"`{label}`"] + cells)
    return lines + _md_table(header, rows) + [""]


def _session_ends_lines(ends: pd.DataFrame) -> list[str]:
    lines = [
        "## How sessions ended", "",
        "A session ends when its segmentation has no error (or at the iteration budget). Steps: iterations run, "
        "mean per session; ended early: sessions handed in before the budget; corrections: the robot's clicks "
        "after the start, mean per session, and the share of them that were positive (on the target).", "",
    ]
    def cell(v: float, text: str) -> str:
        return "–" if math.isnan(v) else text

    rows = [[f"`{r['label']}`", cell(r["steps_per_session"], f"{r['steps_per_session']:.2f}"),
             cell(r["n_stopped_early"], f"{r['n_stopped_early']:.0f} of {r['n_sessions']}"),
             cell(r["correction_clicks"], f"{r['correction_clicks']:.2f}"),
             cell(r["positive_click_share"], f"{100 * r['positive_click_share']:.0f}%")]
            for _, r in ends.iterrows()]
    return lines + _md_table(["arm", "steps", "ended early", "corrections", "positive"], rows) + [""]


def _setup_lines(arms: Sequence[Arm], study: dict[str, Any] | None, n_images: int) -> list[str]:
    ref = arms[0]
    s = ref.settings
    lines = ["## Setup", ""]
    seeds = sorted({int(a.settings.get("seed", 0)) for a in arms})
    train_seeds = sorted({a.train_seed for a in arms if a.train_seed is not None})
    ref_keys = _session_keys(ref)
    if all(_session_keys(a).shape == ref_keys.shape and (_session_keys(a) == ref_keys).all() for a in arms[1:]):
        lines.append(f"- Data: dataset `{s.get('dataset')}`, {len(ref.sessions)} sessions on {n_images} images "
                     f"(every arm runs the same sessions, paired by session, image and target).")
    else:
        counts = sorted({len(a.sessions) for a in arms})
        images = sorted({len(_image_set(a)) for a in arms})
        where = (f"{images[0]} images" if len(images) == 1
                 else f"{', '.join(map(str, images))} images per arm (not the same images: see the warnings)")
        lines.append(f"- Data: dataset `{s.get('dataset')}`, {where}; {', '.join(map(str, counts))} sessions "
                     "per arm (the human start runs one session per annotator of an image); every arm is paired "
                     "with its reference by session, image and target.")
    if has_real_tasks(arms):
        tasks = {}
        for t, im in zip(session_tasks(ref), ref.sessions["image"].astype(str)):
            tasks.setdefault(t, set()).add(im)
        lines.append("- Tasks: " + ", ".join(f"{t or '(none)'} ({len(ims)} image{'s' if len(ims) != 1 else ''})"
                                             for t, ims in sorted(tasks.items())) + ".")
    lines.append(f"- Run seed(s) (targets, start strokes, sampling, policy draws): {', '.join(map(str, seeds))}"
                 + (f"; training seed(s): {', '.join(map(str, train_seeds))}" if train_seeds else "") + ".")
    starts = sorted({str(a.settings.get("start")) for a in arms})
    lines.append(
        f"- Protocol: start {', '.join(starts)}; {s.get('max_iters')} iterations; {s.get('corrections_per_iter')} "
        f"correction(s) per iteration with the `{s.get('correction_rule')}` rule; brush radius "
        f"{s.get('brush_radius') if s.get('brush_radius') is not None else 'max(1, round(H/64))'}; pending pixels "
        f"{'counted' if s.get('pending_as_errors') else 'not counted'} as errors; rejection "
        f"{'allowed' if s.get('allow_reject') else 'not allowed'} (oracle policies); {_protocol_rules(s)}."
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
    header = ["arm", "method", "kind", "checkpoint (walker: beta, solver)", "policy", "K", "variant",
              "other settings differing from "
              f"`{ref.label}`"]
    rows = []
    skip = {"method", "checkpoint", "policy", "k", "chunk_size"}
    for a in arms:
        diff = [f"{k}={a.settings.get(k)}" for k in sorted(set(a.settings) | set(s))
                if k not in skip and a.settings.get(k) != s.get(k)]
        ckpt = a.settings.get("checkpoint") or a.config.get("method", {}).get("checkpoint") or ""
        rows.append([f"`{a.label}`", a.method, a.kind, Path(str(ckpt)).name if ckpt else _walker_cell(a),
                     a.settings.get("policy"), a.settings.get("k"), a.variant, ", ".join(diff) or "–"])
    lines += ["### Arms", ""] + _md_table(header, rows) + [""]
    return lines


def _walker_cell(arm: Arm) -> str:
    """A random walker's beta and solver as the run resolved them (tuned values live outside the settings)."""
    method = arm.config.get("method", {})
    beta = method.get("rw_beta")
    if beta is None:
        return "–"
    mode = method.get("rw_mode")
    return f"beta {float(beta):g}" + (f", {mode}" if mode else "")


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


def _fmt_ci_short(metric: str, v: float, lo: float, hi: float) -> str:
    """``value [lo, hi]``, or ``value [–]`` where there is no CI (a single image)."""
    if v is None or not math.isfinite(v):
        return "–"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{_fmt_value(metric, v)} [–]"
    return _fmt_ci(metric, v, lo, hi)


def _fmt_diff_short(metric: str, v: float, lo: float, hi: float) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _fmt_diff(metric, v, v, v).split(" ")[0] + " [–]"
    return _fmt_diff(metric, v, lo, hi)


def _rms(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    return float(np.sqrt(np.mean(v ** 2))) if v.size else float("nan")


def _mdd_lines(comparison: pd.DataFrame, per_task: pd.DataFrame | None, endpoint: str,
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
                     f"**{_fmt_value(endpoint, overall)}** in {label} between an arm and its reference (two-sided "
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
    rows = [[f"`{r['label']}`", f"`{r['reference']}`", n_of[r["label"]], _fmt_value(endpoint, r["mdd"]),
             _fmt_diff(endpoint, r["diff"], r["diff_lo"], r["diff_hi"])] for _, r in prim.iterrows()]
    lines += _md_table(["arm", "reference", "images", f"MDD ({label})", "observed difference [95% CI]"], rows) + [""]
    if per_task is not None and not per_task.empty:
        pt = per_task[per_task["primary"] & per_task["label"].ne(per_task["reference"])]
        rows = []
        for task, g in pt.groupby("task", sort=True):
            finite = g["mdd"][np.isfinite(g["mdd"])]
            span = f"{_fmt_value(endpoint, finite.min())}–{_fmt_value(endpoint, finite.max())}" if len(finite) else "–"
            rows.append([task or "(none)", int(g["n_images"].max()), _fmt_value(endpoint, _rms(g["mdd"].tolist())),
                         span])
        if rows:
            lines += ["Per task, from the task's own images only (– with a single image):", ""]
            lines += _md_table(["task", "images", f"MDD ({label}), RMS over comparisons", "range over comparisons"],
                               rows) + [""]
    return lines


def _per_task_lines(per_task: pd.DataFrame, endpoint: str, n_boot: int) -> list[str]:
    if per_task.empty:
        return []
    metrics = _endpoint_metrics(endpoint)
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
            row.append(_fmt_ci_short(m, r["value"], r["value_lo"], r["value_hi"]))
            row.append("(reference)" if r["label"] == r["reference"]
                       else _fmt_diff_short(m, r["diff"], r["diff_lo"], r["diff_hi"]))
        rows.append(row)
    return lines + _md_table(header, rows) + [""]


def _per_annotator_lines(per_annotator: pd.DataFrame, endpoint: str) -> list[str]:
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
            rows.append([f"`{label}`", task] + [_fmt_value(endpoint, v.get(a, float("nan"))) for a in annotators] + [
                _fmt_value(endpoint, r["annotators_mean"]), _fmt_value(endpoint, r["annotators_sd"]),
                f"{_fmt_value(endpoint, r['annotators_min'])}–{_fmt_value(endpoint, r['annotators_max'])}"])
        return rows

    lines += _md_table(header, table(all_rows)) + [""]
    per_task = df[df["task"] != ALL_TASKS]
    n_rows = per_task[["label", "task"]].drop_duplicates().shape[0]
    if n_rows:
        if n_rows <= 40:
            lines += ["Per task (a handful of images per annotator and task: descriptive only):", ""]
            lines += _md_table(header, table(per_task)) + [""]
        else:
            lines += ["Per task: see `per_annotator.csv`.", ""]
    return lines


def _starts_lines(starts: pd.DataFrame, endpoint: str, n_boot: int) -> list[str]:
    if starts.empty:
        return []
    metrics = _endpoint_metrics(endpoint)
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
            row.append(_fmt_ci_short(m, r["value"], r["value_lo"], r["value_hi"]))
            row.append("(human)" if start == "human" else _fmt_diff_short(m, r["diff_vs_human"], r["diff_lo"],
                                                                           r["diff_hi"]))
        rows.append(row)
    lines += _md_table(header, rows) + [""]
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
                lo_s, hi_s = _fmt_diff(endpoint, 0.0, float(cis["diff_lo"].min()), float(cis["diff_hi"].max())
                                       ).split(" [")[1].rstrip("]").split(", ")
                bound = f"; the CIs span {lo_s} to {hi_s}, and differences within that range are not ruled out"
            verdict = (f"this study does not tell simulated {start} from human scribbles as a start: for "
                       f"{'every method' if n > 1 else 'the method'} the 95% CI of the difference in {label} includes "
                       f"zero (with {n_img} images){bound}.")
        elif (better or worse) and not (better and worse) and not open_:
            good = bool(better)
            size = sorted(abs(float(x)) for x in g["diff_vs_human"])
            amount = _fmt_value(endpoint, size[0]) if len(size) == 1 or _fmt_value(endpoint, size[0]) == _fmt_value(
                endpoint, size[-1]) else f"{_fmt_value(endpoint, size[0])}–{_fmt_value(endpoint, size[-1])}"
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
    metrics = _resolve_metrics(str(endpoint), (study or {}).get("thresholds"), arms)
    labels = [a.label for a in arms]
    reference, ref_map = _resolve_references(arms, study, reference)
    _check_paired(arms, ref_map)
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
        uneven = _image_set_warning(arms)
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
    for name, table in (("per_task.csv", per_task), ("per_annotator.csv", per_annotator), ("starts.csv", starts)):
        if table is not None:
            _write_csv(table, out / name)
            written[name] = out / name

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
        lines += _session_ends_lines(ends)
        lines += _protocol_change_lines(summary, out, str(endpoint))
        lines += _comparison_lines(comparison, arms, str(endpoint), metrics, n_boot)
        lines += _multi_seed_lines(seeds, str(endpoint))
        if real:
            lines += _mdd_lines(comparison, per_task, str(endpoint), summary)
            lines += _per_task_lines(per_task, str(endpoint), n_boot)
        if per_annotator is not None:
            lines += _per_annotator_lines(per_annotator, str(endpoint))
        if starts is not None:
            lines += _starts_lines(starts, str(endpoint), n_boot)
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
            "dice-vs-clicks-per-task.png": "mean Dice after c clicks per task, a line per arm (no CI bands: a task "
                                           "holds only a few images).",
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
                  "and Holm p-values, tie ratio; `primary` marks the endpoint" + (
                      ", whose rows carry the minimal detectable difference (`mdd`)." if real else "."),
                  "- `session_ends.csv`: per arm, steps per session, sessions that ended early, corrections per "
                  "session and their positive share.",
                  ]
        if per_task is not None:
            lines.append("- `per_task.csv`: per task, arm and metric (endpoint and NoC@0.90): value with CI over the "
                         "task's images, paired difference against the reference with CI, and the task's `mdd`.")
        if per_annotator is not None:
            lines.append("- `per_annotator.csv`: human-start arms, per annotator (all tasks, then per task): the mean "
                         "endpoint and NoC@0.90, and the spread across annotators.")
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
        "per_task": per_task, "per_annotator": per_annotator, "starts": starts,
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
