"""The report's figures: Dice curves with bootstrap bands (and per task), NoC per arm, K sweeps, and filmstrips.

Every function draws on a bare matplotlib ``Figure`` (the Agg canvas; pyplot's global state and
backend are never touched) and writes one PNG atomically. The curves are :mod:`simulator.curves`'
matrices, their 95% bands a cluster bootstrap over images (:mod:`simulator.stats`). A filmstrip
replays a session of a run deterministically (:func:`replay_session`) and draws its first iterations.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probseg.atomic import atomic_write

from .arms import Arm, image_codes, lower_is_better, metric_label, session_tasks
from .curves import cumulative_effort, dice_at_clicks_matrix, dice_by_effort_matrix, dice_by_iteration_matrix
from .stats import DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_weights, cluster_bootstrap

__all__ = [
    "DPI",
    "plot_dice_vs_clicks",
    "plot_dice_vs_clicks_per_task",
    "plot_dice_vs_effort",
    "plot_dice_vs_iteration",
    "plot_noc90",
    "plot_k_sweep",
    "replay_session",
    "plot_filmstrip",
]

DPI = 120
MANY_LINES = 8  # curve panels with more arms than this put their legend beside the axes


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    # A bare Figure draws with the Agg canvas and never touches pyplot's global state or backend.
    return Figure(figsize=(width, height), dpi=DPI)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return path


def _palette(n: int) -> list[Any]:
    import seaborn as sns

    return list(sns.color_palette("tab10" if n <= 10 else "husl", n))


def _band_plot(ax: Any, x: np.ndarray, arms: Sequence[Arm], mats: Sequence[np.ndarray],
               weights: Sequence[np.ndarray], x_from: float | None = None) -> None:
    """A mean line and 95% band per arm; the y axis spans the bands from ``x_from`` on.

    Each arm's sessions are clustered by its own images, with its entry of ``weights`` (arms may hold
    different sessions: a human start runs one session per annotator of an image).
    """
    low = 1.0
    for arm, mat, w, color in zip(arms, mats, weights, _palette(len(arms))):
        est, lo, hi = cluster_bootstrap(mat, image_codes(arm)[0], weights=w)
        ax.plot(x, est, color=color, lw=1.6, label=arm.label)
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
        keep = np.isfinite(lo) & (x >= (x_from if x_from is not None else -np.inf))
        if keep.any():
            low = min(low, float(lo[keep].min()))
    ax.grid(True, alpha=0.3)
    ax.set_ylim(max(0.0, low - 0.03), 1.01)
    if len(arms) > MANY_LINES:  # inside the axes, a long legend would hide the curves
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=7, loc="lower right")


def _curve_figure(n_arms: int) -> Any:
    """A figure for one curve panel, wider when its legend goes beside the axes."""
    return _figure(6.4 if n_arms <= MANY_LINES else 10.0, 4.2 if n_arms <= 20 else 4.2 + 0.12 * (n_arms - 20))


def _boot_weights(arms: Sequence[Arm], n_boot: int, seed: int) -> list[np.ndarray]:
    """Each arm's bootstrap weights: one matrix per number of images, drawn from ``seed``."""
    cache: dict[int, np.ndarray] = {}
    out = []
    for arm in arms:
        _, n_img = image_codes(arm)
        if n_img not in cache:
            cache[n_img] = bootstrap_weights(n_img, n_boot, seed)
        out.append(cache[n_img])
    return out


def plot_dice_vs_clicks(arms: Sequence[Arm], path: str | os.PathLike, n_boot: int = DEFAULT_N_BOOT,
                        seed: int = DEFAULT_SEED) -> Path:
    """Mean Dice against clicks 0..N (N: the most clicks any session reached), a line per arm with a
    95% image-bootstrap band; see :func:`dice_at_clicks_matrix`."""
    w = _boot_weights(arms, n_boot, seed)
    n = max(int(max(s["clicks_so_far"].max() for s in a.session_steps)) for a in arms)
    x = np.arange(n + 1)
    fig = _curve_figure(len(arms))
    ax = fig.add_subplot()
    _band_plot(ax, x, arms, [dice_at_clicks_matrix(a, n) for a in arms], w)
    ax.set_xlabel("clicks (start inputs included)")
    ax.set_ylabel("mean Dice")
    ax.set_title("Dice against clicks (95% CI, images resampled)", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_dice_vs_clicks_per_task(arms: Sequence[Arm], path: str | os.PathLike) -> Path:
    """Mean Dice against clicks 0..N, one panel per task (sorted), a line per arm; no CI bands (a task
    holds only a few images). The clicks axis runs to the most clicks any session reached."""
    tasks = sorted({str(t) for a in arms for t in session_tasks(a)})
    n = max(int(max(s["clicks_so_far"].max() for s in a.session_steps)) for a in arms)
    x = np.arange(n + 1)
    n_cols = min(3, len(tasks))
    n_rows = -(-len(tasks) // n_cols)
    legend_h = 0.22 * -(-len(arms) // 4) + 0.15  # inches below the panels for the legend
    height = 3.2 * n_rows + 0.4 + legend_h
    fig = _figure(4.0 * n_cols, height)
    colors = _palette(len(arms))
    mats = [dice_at_clicks_matrix(a, n) for a in arms]
    low = 1.0
    axes = []
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(n_rows, n_cols, i + 1)
        axes.append(ax)
        n_img = 0
        for arm, mat, color in zip(arms, mats, colors):
            mask = session_tasks(arm) == task
            if not mask.any():
                continue
            n_img = max(n_img, len(np.unique(arm.sessions["image"].astype(str).to_numpy()[mask])))
            mean = mat[mask].mean(axis=0)
            ax.plot(x, mean, color=color, lw=1.4, label=arm.label)
            low = min(low, float(np.nanmin(mean)))
        ax.set_title(f"{task or '(no task)'} ({n_img} image{'s' if n_img != 1 else ''})", fontsize=9)
        ax.set_xlabel("clicks (start inputs included)", fontsize=8)
        ax.set_ylabel("mean Dice", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in axes:
        ax.set_ylim(max(0.0, low - 0.03), 1.01)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)), frameon=False)
    fig.suptitle("Dice against clicks per task (means; no CI bands)", fontsize=10)
    fig.tight_layout(rect=(0, legend_h / height, 1, 1 - 0.3 / height))
    return _save(fig, Path(path))


def plot_dice_vs_effort(arms: Sequence[Arm], path: str | os.PathLike, n_boot: int = DEFAULT_N_BOOT,
                        seed: int = DEFAULT_SEED, n_grid: int = 121) -> Path:
    """Mean Dice against annotator seconds on a common grid, a line per arm with a 95% band; see
    :func:`dice_by_effort_matrix`."""
    w = _boot_weights(arms, n_boot, seed)
    t_max = max(float(cumulative_effort(s, a.effort_model())[-1]) for a in arms for s in a.session_steps)
    grid = np.linspace(0.0, max(t_max, 1e-9), n_grid)
    fig = _curve_figure(len(arms))
    ax = fig.add_subplot()
    # Before its first proposal a session shows nothing (Dice 0); the y axis starts where all arms have one.
    first = max(float(cumulative_effort(s, a.effort_model())[0]) for a in arms for s in a.session_steps)
    _band_plot(ax, grid, arms, [dice_by_effort_matrix(a, grid) for a in arms], w, x_from=first)
    ax.set_xlabel("annotator seconds (clicks, inspections, choices)")
    ax.set_ylabel("mean Dice")
    ax.set_title("Dice against effort (95% CI, images resampled)", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_dice_vs_iteration(arms: Sequence[Arm], path: str | os.PathLike, n_boot: int = DEFAULT_N_BOOT,
                           seed: int = DEFAULT_SEED) -> Path:
    """Mean Dice per iteration, a line per arm with a 95% image-bootstrap band."""
    w = _boot_weights(arms, n_boot, seed)
    n = max(int(s["iteration"].max()) for a in arms for s in a.session_steps)
    x = np.arange(1, n + 1)
    fig = _curve_figure(len(arms))
    ax = fig.add_subplot()
    _band_plot(ax, x, arms, [dice_by_iteration_matrix(a, n) for a in arms], w)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean Dice")
    ax.set_title("Dice per iteration (95% CI, images resampled)", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_noc90(summary: pd.DataFrame, path: str | os.PathLike, metric: str = "noc_90") -> Path:
    """``metric`` (default NoC@0.90) per arm as points with 95% CI bars, arms ordered by the value
    (best at the top); ``summary`` is :func:`simulator.report.summary_table`'s output."""
    df = summary[["label", metric, f"{metric}_lo", f"{metric}_hi"]].copy()
    df = df.sort_values(metric, ascending=lower_is_better(metric), kind="stable", na_position="last")
    n = len(df)
    fig = _figure(6.4, 1.2 + 0.38 * n)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    v = df[metric].to_numpy(dtype=float)
    err = np.abs(np.stack([v - df[f"{metric}_lo"].to_numpy(dtype=float), df[f"{metric}_hi"].to_numpy(dtype=float) - v]))
    ax.errorbar(v, y, xerr=np.nan_to_num(err), fmt="o", color=_palette(1)[0], capsize=3, ms=5)
    ax.set_yticks(y)
    ax.set_yticklabels(df["label"].tolist(), fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"{metric_label(metric)} (mean, 95% CI; lower is better)" if lower_is_better(metric)
                  else f"{metric_label(metric)} (mean, 95% CI)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))


def _model_name(checkpoint: Any) -> str | None:
    """``disks`` for ``disks``, ``.../disks.pt`` and ``.../disks-seed1.pt``; None for no checkpoint."""
    if not checkpoint:
        return None
    return re.sub(r"-seed\d+$", "", Path(str(checkpoint)).stem)


def _k_sweeps(arms: Sequence[Arm]) -> list[tuple[str, list[int]]]:
    """Groups of arm indices that differ only in K (>= 2 distinct K): ``[(line label, indices)]``."""
    groups: dict[str, list[int]] = {}
    for i, arm in enumerate(arms):
        s = arm.settings
        key = json.dumps({k: v for k, v in s.items() if k not in ("k", "chunk_size")}, sort_keys=True, default=str)
        groups.setdefault(key + "|" + arm.variant, []).append(i)
    sweeps = []
    for key, idx in groups.items():
        ks = {arms[i].settings.get("k") for i in idx}
        if len(ks) >= 2:
            sweeps.append((key, sorted(idx, key=lambda i: int(arms[i].settings.get("k", 0)))))
    firsts = [arms[idx[0]] for _, idx in sweeps]
    labels = [f"{a.method} / {a.settings.get('policy', '')}" for a in firsts]
    # Name a line by what tells it apart from the others: variant, model, training seed, start. The
    # model is the checkpoint's name (a retrained seed's file without its -seedN suffix), never a path.
    tellers: list[tuple[str, Any]] = [  # (tag, how to read it off an arm)
        ("{}", lambda a: a.variant),
        ("{}", lambda a: _model_name(a.settings.get("checkpoint"))),
        ("seed {}", lambda a: a.train_seed),
        ("start {}", lambda a: a.settings.get("start")),
    ]
    for tag, read in tellers:
        if len(set(labels)) == len(labels):
            break
        values = [read(a) for a in firsts]
        if len({str(v) for v in values}) > 1:
            labels = [f"{lab} | {tag.format(v if v is not None else 'default')}" for lab, v in zip(labels, values)]
    labels = [lab if labels.count(lab) == 1 else f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    return [(lab, idx) for lab, (_, idx) in zip(labels, sweeps)]


def plot_k_sweep(arms: Sequence[Arm], summary: pd.DataFrame, path: str | os.PathLike) -> Path | None:
    """NoC@0.90 and effort against K (log2 axis), one line per method whose arms differ only in K;
    solid lines for partial methods, dashed for complete ones. None (nothing drawn) without a sweep."""
    sweeps = _k_sweeps(arms)
    if not sweeps:
        return None
    by_label = summary.set_index("label")
    # The legend goes below both panels: with several models and seeds it would hide the lines.
    fig = _figure(10.0, 4.0 + 0.2 * ((len(sweeps) + 1) // 2))
    fig.set_layout_engine("constrained")
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    colors = _palette(len(sweeps))
    all_k: set[int] = set()
    for line, ((label, idx), color) in enumerate(zip(sweeps, colors)):
        kind = arms[idx[0]].kind
        ks = np.array([int(arms[i].settings["k"]) for i in idx])
        all_k.update(ks.tolist())
        # Lines are shifted a little along the log axis so their error bars do not hide each other.
        xs = ks * 2.0 ** (0.05 * (line - (len(sweeps) - 1) / 2))
        for ax, m in zip(axes, ("noc_90", "effort_s")):
            rows = by_label.loc[[arms[i].label for i in idx]]
            v = rows[m].to_numpy(dtype=float)
            err = np.abs(np.stack([v - rows[f"{m}_lo"].to_numpy(dtype=float), rows[f"{m}_hi"].to_numpy(dtype=float) - v]))
            ax.errorbar(xs, v, yerr=np.nan_to_num(err), color=color, ls="-" if kind == "partial" else "--",
                        marker="o" if kind == "partial" else "s", capsize=3, label=f"{label} ({kind})")
    for ax, m in zip(axes, ("noc_90", "effort_s")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(all_k))
        ax.set_xticklabels([str(k) for k in sorted(all_k)])
        ax.set_xlabel("K (candidates per iteration)")
        ax.set_ylabel(f"{metric_label(m)} (mean, 95% CI)")
        ax.grid(True, alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7)
    fig.suptitle("K sweep: solid = partial, dashed = complete", fontsize=10)
    return _save(fig, Path(path))


def replay_session(arm: Arm, index: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Replay session ``index`` of a run deterministically, with a trace.

    Returns ``(steps, trace, case)``: the step records of :func:`simulator.session.run_session`, its
    per-iteration trace (bool (H, W) states, bool (K, H, W) candidates, clicks) and the
    :class:`~simulator.datasets.SessionCase` (image float32 (H, W), target bool (H, W)).
    """
    from .datasets import make_dataset, session_rng
    from .runner import RunSettings
    from .session import run_session

    import torch

    settings = RunSettings.from_dict(arm.settings)
    method = settings.make_method()
    case = make_dataset(settings.dataset, settings.n_sessions, start=settings.start).case(index, settings.seed)
    cfg = settings.session_config()
    trace: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runner's workers: these tiny networks are slower with more threads
    try:
        steps = run_session(
            case.image, case.target, method, settings.make_policy(), config=cfg,
            human_scribbles=case.human_scribbles if cfg.start == "human" else None,
            rng=session_rng(settings.seed, index), trace=trace,
        )
    finally:
        torch.set_num_threads(threads)
    return steps, trace, case


def _clicks_xy(clicks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arr = np.array([list(c) for c in clicks], dtype=np.int64).reshape(-1, 3)
    return arr[:, 1], arr[:, 0], arr[:, 2].astype(bool)


def plot_filmstrip(arm: Arm, path: str | os.PathLike, index: int = 0, n_iters: int = 3,
                   max_candidates: int = 8) -> tuple[Path, str | None]:
    """Replay session ``index`` of ``arm`` and draw its first ``n_iters`` iterations, one per row.

    Columns: the image, the target, the input the method was given, the K candidates (the chosen one
    outlined), the chosen state with the robot's corrections (green: positive click, red:
    negative), and the state after them. Decided foreground red, decided background blue.
    Returns ``(path, warning)``: a warning string when the replayed Dice differ from steps.parquet.
    """
    from probseg.reproduce import overlay

    from .corrections import Click, apply_click, resolve_brush_radius

    steps, trace, case = replay_session(arm, index)
    warning = None
    recorded = arm.steps[arm.steps["session"] == index].sort_values("iteration")["dice"].to_numpy(dtype=float)
    replayed = np.array([s["dice"] for s in steps], dtype=float)
    if recorded.shape != replayed.shape or not np.allclose(recorded, replayed, rtol=0, atol=1e-9):
        warning = (f"the replayed session {index} of arm {arm.label!r} does not match its steps.parquet Dice "
                   f"(recorded {np.round(recorded[:5], 4).tolist()}, replayed {np.round(replayed[:5], 4).tolist()}); "
                   "its filmstrip may not show the recorded session")
    image, target = case.image, case.target
    radius = resolve_brush_radius(arm.settings.get("brush_radius"), target.shape)
    rows = trace[:n_iters]
    k = min(max_candidates, max(len(t["masks"]) for t in rows))
    n_cols = 3 + k + 2
    fig = _figure(1.35 * n_cols, 1.5 * len(rows) + 0.5)
    full = np.ones_like(target)
    for r, t in enumerate(rows):
        after_mask, after_seg = t["mask"], t["seg"]
        for c in t["clicks"]:
            after_mask, after_seg = apply_click(target, after_mask, after_seg, Click(int(c[0]), int(c[1]), bool(c[2])), radius)
        panels: list[tuple[str, np.ndarray, dict[str, Any]]] = [
            ("image", overlay(image, np.zeros_like(target), target), {}),
            ("target", overlay(image, full, target), {}),
            ("start input" if t["iteration"] == 1 else "input", overlay(image, t["shown_mask"], t["shown_seg"]), {}),
        ]
        for j in range(k):
            if j < len(t["masks"]):
                panels.append((f"cand. {j + 1}", overlay(image, t["masks"][j], t["segs"][j]), {"chosen": j == t["chosen"]}))
            else:
                panels.append(("", np.ones((*target.shape, 3)), {"blank": True}))
        kept = "kept (all rejected)" if t["chosen"] < 0 else f"chosen {t['chosen'] + 1} + clicks"
        panels.append((kept, overlay(image, t["mask"], t["seg"]), {"clicks": t["clicks"]}))
        panels.append(("result", overlay(image, after_mask, after_seg), {}))
        for c_i, (title, rgb, opts) in enumerate(panels):
            ax = fig.add_subplot(len(rows), n_cols, r * n_cols + c_i + 1)
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if opts.get("blank"):
                ax.set_axis_off()
            if opts.get("chosen"):
                for spine in ax.spines.values():
                    spine.set_edgecolor("gold")
                    spine.set_linewidth(3)
            if opts.get("clicks"):
                xs, ys, pos = _clicks_xy(opts["clicks"])
                ax.scatter(xs[pos], ys[pos], s=30, c="lime", edgecolors="black", linewidths=0.6, zorder=3)
                ax.scatter(xs[~pos], ys[~pos], s=30, c="red", edgecolors="white", linewidths=0.6, zorder=3)
            ax.set_title(title, fontsize=7)
            if c_i == 0:
                ax.set_ylabel(f"iteration {t['iteration']}", fontsize=7)
    fig.suptitle(
        f"{arm.label}: session {index}, first {len(rows)} iterations "
        f"(red: foreground, blue: background, gold frame: chosen)", fontsize=8,
    )
    fig.tight_layout()
    return _save(fig, Path(path)), warning

