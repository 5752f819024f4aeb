"""The tables of every report: per-arm summary with bootstrap CIs, paired comparisons against the
reference, the spread across training seeds, how sessions ended, and what a protocol change moved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from probseg.lazy import lazy_import

from ..arms import (
    EXTRA_METRICS,
    METRICS,
    Arm,
    arm_effort_counts,
    image_codes,
    metric_matrix,
    metric_statistic,
)
from ..metrics import EffortCounts, mean_counts, session_ends, tie_choose_click_ratio
from ..stats import (
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    bootstrap_weights,
    cluster_bootstrap,
    cluster_values,
    holm,
    minimal_detectable_difference,
    wilcoxon_p,
)
from .load import check_paired
from .references import resolve_references

pd = lazy_import("pandas")  # imported on first use: commands start faster

DEFAULT_ENDPOINT = "noc_90"
ID_COLUMNS = ("label", "name", "train_seed", "variant", "method", "kind", "policy", "k", "start", "n_sessions", "n_images")


class BootstrapWeights:
    """Bootstrap weights per number of images, each drawn once from the report's seed (so arms on the
    same number of images share one matrix, and a report's numbers do not depend on arm order)."""

    def __init__(self, n_boot: int, seed: int, main: np.ndarray | None = None) -> None:
        self.n_boot, self.seed = n_boot, seed
        self.cache: dict[int, np.ndarray] = {} if main is None else {int(np.shape(main)[1]): np.asarray(main)}

    def __call__(self, n: int) -> np.ndarray:
        if n not in self.cache:
            self.cache[n] = bootstrap_weights(n, self.n_boot, self.seed)
        return self.cache[n]



def resolve_metrics(endpoint: str, thresholds: Sequence[float] | None, arms: Sequence[Arm],
                    secondary: Sequence[str] | None = None) -> list[str]:
    """The report's metrics: :data:`METRICS`, NoC at each threshold, the endpoint first where it is not
    among them, and a study's ``secondary_metrics`` after them."""
    metrics = list(METRICS)
    metrics += [m for m in secondary or () if m not in metrics]
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
    w_of = BootstrapWeights(n_boot, seed, weights)
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
    refs = resolve_references(arms, reference=reference)[1]
    check_paired(arms, refs)
    pairs = [(a, next(r for r in arms if r.label == refs[a.label])) for a in arms if refs.get(a.label, a.label) != a.label]
    if not pairs:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    w_of = BootstrapWeights(n_boot, seed, weights)
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
        mdd = [paired_mdd(d[:, j], codes, n_img, stats[j])[0] if m == endpoint else float("nan")
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


def paired_mdd(d: np.ndarray, codes: np.ndarray, n_images: int, statistic: str) -> tuple[float, float, int]:
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

