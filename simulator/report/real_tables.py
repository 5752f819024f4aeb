"""Tables of real-image studies: per task, per annotator (human start), and simulated against human
starts."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np

from probseg.lazy import lazy_import

from ..arms import (
    Arm,
    annotator_index,
    arm_start,
    image_codes,
    metric_matrix,
    metric_statistic,
    session_tasks,
)
from ..stats import DEFAULT_N_BOOT, DEFAULT_SEED, cluster_bootstrap, cluster_values
from .load import check_paired, image_set
from .references import resolve_references
from .tables import DEFAULT_ENDPOINT, BootstrapWeights, paired_mdd

pd = lazy_import("pandas")  # imported on first use: commands start faster

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


def endpoint_metrics(endpoint: str) -> list[str]:
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
    """Per task and arm, the endpoint and NoC@90 with 95% CIs that resample the task's images, and the
    paired difference against the arm's reference within the task (columns :data:`PER_TASK_COLUMNS`).

    One row per (task, arm, metric); tasks sorted, arms in the given order. ``value`` is the mean over
    the task's sessions (``nof_T``: the count); ``diff`` the mean of the per-session differences (arm -
    reference) with a paired bootstrap CI; ``mdd`` (endpoint rows of compared arms) the task's minimal
    detectable difference as in :func:`comparison_table`. A task with a single image has NaN CIs and
    ``mdd``; a reference arm (compared with itself) has NaN ``diff``. ``reference`` is as in
    :func:`comparison_table`. Every bootstrap draws from ``seed``, so the table is deterministic.
    """
    refs = resolve_references(arms, reference=reference)[1]
    check_paired(arms, refs)
    if not arms:
        return pd.DataFrame(columns=list(PER_TASK_COLUMNS))
    metrics = endpoint_metrics(endpoint)
    stats = [metric_statistic(m) for m in metrics]
    by_label = {a.label: a for a in arms}
    weights = BootstrapWeights(n_boot, seed)
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
                        mdd = paired_mdd(d[:, j], codes, n_t, stats[j])[0]
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
    """For human-start arms: the endpoint and NoC@90 per annotator, and their spread across annotators.

    One row per (arm, task, metric, annotator) (columns :data:`PER_ANNOTATOR_COLUMNS`): ``value`` is the
    mean over the annotator's sessions (``nof_T``: the count), ``n_images`` how many images the annotator
    scribbled. ``task`` is ``all`` (every task), then each task when there are several. The columns
    ``n_annotators``, ``annotators_mean``, ``annotators_sd`` (ddof 1; NaN with one annotator),
    ``annotators_min`` and ``annotators_max`` describe the per-annotator values of the row's (arm, task,
    metric) and repeat on each of its rows. Sessions whose target is not ``annotator-N`` are left out.
    Empty (with the columns) when no arm has the human start.
    """
    rows = []
    metrics = endpoint_metrics(endpoint)
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
    are several), metric (the endpoint and NoC@90) and start, the human start first (its
    ``diff_vs_human`` NaN). A task with one image has NaN CIs.
    """
    groups = start_groups(arms)
    if not groups:
        return pd.DataFrame(columns=list(STARTS_COLUMNS))
    metrics = endpoint_metrics(endpoint)
    w_of = BootstrapWeights(n_boot, seed, weights)
    task_of_image: dict[str, str] = {}
    for a in arms:
        task_of_image.update(zip(a.sessions["image"].astype(str), session_tasks(a)))

    def image_means(arm: Arm) -> pd.DataFrame:
        """Per image (sorted names), the mean of each metric over the arm's sessions there."""
        codes, n = image_codes(arm)
        vals = cluster_values(metric_matrix(arm, metrics), codes, n, "mean")
        return pd.DataFrame(vals, index=image_set(arm), columns=metrics)

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


