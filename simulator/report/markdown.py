"""The sections of ``report.md`` that every report has: setup and arms, results per arm, how
sessions ended, what a protocol change moved, paired comparisons and the spread across seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


from probseg.lazy import lazy_import

from ..arms import EFFORT_TARGET, Arm, arm_effort_counts, format_metric, metric_label, metric_legend, session_tasks
from ..datasets import task_filter
from ..metrics import mean_counts
from .formatting import fmt_ci, fmt_diff, fmt_p, md_table
from .load import image_set, session_keys
from .real_tables import has_real_tasks
from .tables import PREVIOUS_PROTOCOL_FILE, protocol_change_table

pd = lazy_import("pandas")  # imported on first use: commands start faster


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


def protocol_change_lines(summary: pd.DataFrame, out: Path, endpoint: str) -> list[str]:
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
            cells.append(f"{format_metric(m, b)} → {format_metric(m, a)} ({'+' if c >= 0 else ''}{format_metric(m, c)})")
        rows.append([f"`{label}`"] + cells)
    return lines + md_table(header, rows) + [""]


def session_ends_lines(ends: pd.DataFrame) -> list[str]:
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
    return lines + md_table(["arm", "steps", "ended early", "corrections", "positive"], rows) + [""]


def setup_lines(arms: Sequence[Arm], study: dict[str, Any] | None, n_images: int) -> list[str]:
    ref = arms[0]
    s = ref.settings
    lines = ["## Setup", ""]
    seeds = sorted({int(a.settings.get("seed", 0)) for a in arms})
    train_seeds = sorted({a.train_seed for a in arms if a.train_seed is not None})
    ref_keys = session_keys(ref)
    if all(session_keys(a).shape == ref_keys.shape and (session_keys(a) == ref_keys).all() for a in arms[1:]):
        lines.append(f"- Data: dataset `{s.get('dataset')}`, {len(ref.sessions)} sessions on {n_images} images "
                     f"(every arm runs the same sessions, paired by session, image and target).")
    else:
        counts = sorted({len(a.sessions) for a in arms})
        images = sorted({len(image_set(a)) for a in arms})
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
    folds = ref.config.get("folds") or []
    if folds:
        train = (study or {}).get("folds") or {}
        described = []
        for f in folds:
            unseen = ", ".join(task_filter(str(f.get("dataset", "")))[1])
            trained = f" trains on {', '.join(train[f['fold']])}," if f["fold"] in train else ""
            described.append(f"{f['fold']}{trained} evaluated on {unseen} ({f['sessions']} sessions)")
        lines.append(f"- Folds: {'; '.join(described)}. Each arm runs once per fold, with that fold's own model; "
                     "every table pools the folds' sessions (per task: `per_task.csv`).")
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
    for a in arms:
        diff = settings_differences(a.settings, s)
        ckpt = a.settings.get("checkpoint") or a.config.get("method", {}).get("checkpoint") or ""
        rows.append([f"`{a.label}`", a.method, a.kind, _checkpoint_cell(str(ckpt)) if ckpt else _walker_cell(a),
                     a.settings.get("policy"), a.settings.get("k"), a.variant, ", ".join(diff) or "–"])
    lines += ["### Arms", ""] + md_table(header, rows) + [""]
    return lines


# Settings the arms table shows in their own columns, or that never change a session's numbers.
_SHOWN_APART = frozenset({"method", "checkpoint", "policy", "k", "chunk_size"})


def _policy_defaults(policy: Any) -> dict[str, Any] | None:
    """The settings the named policy takes, with their defaults; None for a policy this code does not know."""
    from ..policies import policy_defaults

    return policy_defaults(str(policy))


def settings_differences(settings: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """``key=value`` for each run setting of an arm that differs from its reference's, sorted by key.

    A policy's own setting (``epsilon`` of ``noisy-best-of-k``; ``error_weight`` and ``acceptance`` of
    the oracles) counts only for an arm whose policy takes it: every run records it, but a policy
    without it never reads it. Where the reference's policy does not take it either, the arm's value is
    compared with its policy's default. The settings the arms table has columns for are left out.
    """
    known = _policy_defaults(settings.get("policy"))
    ref_known = _policy_defaults(reference.get("policy"))
    policy_keys = _all_policy_settings()
    out = []
    for k in sorted(set(settings) | set(reference)):
        if k in _SHOWN_APART:
            continue
        v = settings.get(k)
        if k in policy_keys and known is not None:
            if k not in known:
                continue  # the arm's policy never reads it
            base = reference.get(k) if ref_known is None or k in ref_known else known[k]
        else:
            base = reference.get(k)
        if v != base:
            out.append(f"{k}={v}")
    return out


def _all_policy_settings() -> set[str]:
    """Every setting some policy takes (a plug-in policy need not be a dataclass)."""
    from ..policies import POLICIES, policy_defaults

    return {setting for name in POLICIES for setting in policy_defaults(name) or {}}


def _checkpoint_cell(ckpt: str) -> str:
    """A checkpoint's file name; a pooled arm's per-fold path keeps its ``{fold}`` folder, and folds' paths
    that fit no such pattern (comma-joined) are each named."""
    if "," in ckpt:
        return ", ".join(_checkpoint_cell(c) for c in ckpt.split(","))
    parts = Path(ckpt).parts
    return "/".join(parts[-2:]) if len(parts) > 1 and "{fold}" in parts[-2] else Path(ckpt).name


def _walker_cell(arm: Arm) -> str:
    """A random walker's beta and solver as the run resolved them (tuned values live outside the settings);
    an arm pooled over folds gives each fold's (each fold's walker is tuned on its training tasks)."""
    def one(method: dict[str, Any]) -> str | None:
        beta = method.get("rw_beta")
        if beta is None:
            return None
        mode = method.get("rw_mode")
        return f"beta {float(beta):g}" + (f", {mode}" if mode else "")

    folds = arm.config.get("folds") or []
    if folds:
        cells = [(f["fold"], one(f.get("method") or {})) for f in folds]
        return "; ".join(f"{c} ({fold})" for fold, c in cells if c) or "–"
    return one(arm.config.get("method", {})) or "–"


# Up to this many compared arms, the secondary-metrics table has a column per arm; beyond, a row per arm.
SECONDARY_ARM_COLUMNS = 4
_HEADLINE = ("noc_85", "noc_90", "noi_90", "nof_90", "effort_s")


def headline_lines(summary: pd.DataFrame, metrics: Sequence[str], endpoint: str, n_boot: int) -> list[str]:
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
    rows = [[f"`{r['label']}`"] + [fmt_ci(m, r[m], r[f'{m}_lo'], r[f'{m}_hi']) for m in first]
            for _, r in summary.iterrows()]
    lines += md_table(header, rows) + ["", metric_legend(first), ""]
    if rest:
        header = ["arm"] + [metric_label(m) for m in rest]
        rows = [[f"`{r['label']}`"] + [fmt_ci(m, r[m], r[f'{m}_lo'], r[f'{m}_hi']) for m in rest]
                for _, r in summary.iterrows()]
        lines += ["Dice and boundary metrics (– where no session ran that many iterations):", ""]
        lines += md_table(header, rows) + ["", metric_legend(rest), ""]
    return lines


def _primary_sentence(lab: str, ref: str, p: pd.Series, endpoint: str) -> str | None:
    """One plain sentence on an arm's primary-endpoint difference, from its CI and Holm p only."""
    if not math.isfinite(p["diff"]):
        return None
    if p["diff"] == 0 and p["diff_lo"] == 0 and p["diff_hi"] == 0:
        return f"- `{lab}`: {metric_label(endpoint)} is identical to `{ref}` in every session."
    amount = fmt_diff(endpoint, abs(p["diff"]), 0.0, 0.0).split(" ")[0].lstrip("+")
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
    return f"- `{lab}` {word} than `{ref}`; {verdict} (Holm p {fmt_p(p['p_holm'])})."


def comparison_lines(comparison: pd.DataFrame, arms: Sequence[Arm], endpoint: str, metrics: Sequence[str],
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
        "effort (s) diff [95% CI]", "p (Holm)", f"{metric_label('nof_90')} diff [95% CI]", "tie c_choose/c_click"]
    rows = []
    for lab in labels:
        p, e, f = by[(lab, endpoint)], by.get((lab, "effort_s")), by.get((lab, "nof_90"))
        rows.append([f"`{lab}`"] + ([f"`{ref_of[lab]}`"] if several else []) + [
            f"**{fmt_diff(endpoint, p['diff'], p['diff_lo'], p['diff_hi'])}**", fmt_p(p["p_wilcoxon"]),
            f"**{fmt_p(p['p_holm'])}**",
            fmt_diff("effort_s", e["diff"], e["diff_lo"], e["diff_hi"]) if e is not None else "–",
            fmt_p(e["p_holm"]) if e is not None else "–",
            fmt_diff("nof_90", f["diff"], f["diff_lo"], f["diff_hi"]) if f is not None else "–",
            "–" if not math.isfinite(p["tie_choose_click_ratio"]) else f"{p['tie_choose_click_ratio']:.2f}",
        ])
    lines += md_table(header, rows) + [""]
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
    lines += md_table(header, rows) + [""]
    secondary = [m for m in metrics if m != endpoint]
    if secondary:
        def cell(lab: str, m: str) -> str:
            r = by[(lab, m)]
            return ("–" if not math.isfinite(r["diff"]) else
                    f"{fmt_diff(m, r['diff'], r['diff_lo'], r['diff_hi'])}, Holm p {fmt_p(r['p_holm'])}")

        if len(labels) <= SECONDARY_ARM_COLUMNS:  # few comparisons: a column each, a row per metric
            header = ["metric"] + [f"`{lab}`" + (f" vs `{ref_of[lab]}`" if several else "") for lab in labels]
            rows = [[metric_label(m)] + [cell(lab, m) for lab in labels] for m in secondary]
        else:  # many: a row per comparison, so the table does not grow a column per arm
            header = ["arm"] + (["reference"] if several else []) + [metric_label(m) for m in secondary]
            rows = [[f"`{lab}`"] + ([f"`{ref_of[lab]}`"] if several else []) + [cell(lab, m) for m in secondary]
                    for lab in labels]
        lines += ["Secondary metrics, difference against the reference [95% CI] and Holm p:", ""]
        lines += md_table(header, rows) + ["", metric_legend(secondary), ""]
    return lines


def multi_seed_lines(seeds: pd.DataFrame, endpoint: str) -> list[str]:
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
            row += [format_metric(m, r[f"{m}_mean"]), format_metric(m, r[f"{m}_sd"]),
                    f"{format_metric(m, r[f'{m}_min'])}–{format_metric(m, r[f'{m}_max'])}"]
        rows.append(row)
    return lines + md_table(header, rows) + [""]

