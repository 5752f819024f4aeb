"""The report's figures: Dice curves with bootstrap bands (and per task), NoC per arm, K sweeps, and filmstrips.

Every function draws on a bare matplotlib ``Figure`` (the Agg canvas; pyplot's global state and
backend are never touched) and writes one PNG atomically. The curves are :mod:`simulator.curves`'
matrices, their 95% bands a cluster bootstrap over images (:mod:`simulator.stats`). A filmstrip
draws a session's first iterations from the states its steps.parquet stores (:mod:`simulator.steplog`);
:func:`replay_session`, which re-runs a session with its method, is kept to verify a run, never drawn from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probseg.atomic import atomic_write
from probseg.lazy import lazy_import

from .arms import Arm, image_codes, lower_is_better, metric_label, session_tasks
from .curves import cumulative_effort, dice_at_clicks_matrix, dice_by_effort_matrix, dice_by_iteration_matrix
from .stats import DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_weights, cluster_bootstrap

pd = lazy_import("pandas")  # imported on first use: commands start faster

__all__ = [
    "DPI",
    "MAX_LINES",
    "Palette",
    "arm_panels",
    "method_family",
    "series_name",
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
MAX_LINES = 8  # curves per panel at most: more arms are faceted (by variant, start, then method family)
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))


def _figure(width: float, height: float, constrained: bool = False) -> Any:
    from matplotlib.figure import Figure

    # A bare Figure draws with the Agg canvas and never touches pyplot's global state or backend.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return path


def _palette(n: int) -> list[Any]:
    import seaborn as sns

    return list(sns.color_palette("tab10" if n <= 10 else "husl", n))


def method_family(arm: Arm) -> str:
    """What a reader calls the arm's method: its method name, with the model it loads where the run
    names a checkpoint (``probseg (disks-paper)``; a retrained seed's file counts as its model)."""
    model = _model_name(arm.settings.get("checkpoint"))
    return arm.method if model is None else f"{arm.method} ({model})"


def series_name(arm: Arm) -> str:
    """The arm as a line of a figure: its label without the variant and training seed a study appends
    (``base`` in ``study.json``), so one line keeps its name, colour and style across panels."""
    return arm.base or arm.label


class Palette:
    """One colour per method family and one style per series within it, built once per report.

    Every figure of a report draws an arm with :meth:`line`, so a method has the same colour
    everywhere. The series of one family (``probseg best-of-1``, ``probseg best-of-8``, ...) share its
    hue: the first at full strength, later ones lighter, each with its own line style.
    """

    def __init__(self, arms: Sequence[Arm]) -> None:
        series: dict[str, list[str]] = {}
        for a in arms:
            names = series.setdefault(method_family(a), [])
            if series_name(a) not in names:
                names.append(series_name(a))
        self.colors: dict[str, tuple[float, float, float]] = {
            fam: tuple(float(c) for c in col) for fam, col in zip(series, _palette(len(series)))}
        self.styles: dict[str, tuple[tuple[float, float, float], Any]] = {}
        for fam, names in series.items():
            for i, name in enumerate(names):
                light = 0.55 * i / max(1, len(names) - 1)  # mixed with white: later series lighter
                color = tuple(c + (1.0 - c) * light for c in self.colors[fam])
                self.styles.setdefault(name, (color, _LINESTYLES[i % len(_LINESTYLES)]))

    def color(self, arm: Arm) -> tuple[float, float, float]:
        """The arm's family colour (RGB floats in [0, 1])."""
        return self.colors[method_family(arm)]

    def line(self, arm: Arm) -> dict[str, Any]:
        """Matplotlib keywords of the arm's line: ``color`` and ``ls``."""
        color, ls = self.styles[series_name(arm)]
        return {"color": color, "ls": ls}


def _facet_key(arms: Sequence[Arm]) -> tuple[str, Any] | None:
    """What the arms' panels are cut by: ``("variant", read)`` or ``("start", read)`` where it varies."""
    for name, read in (("variant", lambda a: a.variant), ("start", lambda a: str(a.settings.get("start", "")))):
        if len({read(a) for a in arms}) > 1:
            return name, read
    return None


def arm_panels(arms: Sequence[Arm], references: Collection[str] = (), max_lines: int = MAX_LINES
               ) -> list[tuple[str, list[Arm]]]:
    """Cut the arms into panels of at most ``max_lines`` arms: ``[(panel title, arms)]``.

    One panel per variant (or per start, when the variant does not vary); a panel that would hold
    more than ``max_lines`` arms is cut by method family (:func:`method_family`): each family with
    several arms gets panels of its own, the single arms of other families share an ``other arms``
    panel, and the reference arms of the group (labels in ``references``) are drawn in each of them, so
    every panel has its yardstick. Arms keep their order.
    """
    facet = _facet_key(arms)
    groups: dict[str, list[Arm]] = {}
    for a in arms:
        groups.setdefault("" if facet is None else f"{facet[0]}: {facet[1](a)}", []).append(a)
    out: list[tuple[str, list[Arm]]] = []
    for title, members in groups.items():
        if len(members) <= max_lines:
            out.append((title, members))
            continue
        refs = [a for a in members if a.label in references]
        families: dict[str, list[Arm]] = {}
        for a in members:
            if a not in refs:
                families.setdefault(method_family(a), []).append(a)
        room = max(1, max_lines - len(refs))
        singles = [m[0] for m in families.values() if len(m) == 1]
        for fam, m in families.items():
            if len(m) >= 2:
                out += [(_join(title, fam), m[i:i + room] + refs) for i in range(0, len(m), room)]
        out += [(_join(title, "other arms"), refs + singles[i:i + room]) for i in range(0, len(singles), room)]
    return out


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def _grid(n_panels: int, n_cols: int | None = None) -> tuple[int, int]:
    cols = n_cols or (1 if n_panels == 1 else 2 if n_panels in (2, 4) else 3)
    return -(-n_panels // cols), cols


def _label_grid(axes: Sequence[Any], n_panels: int, n_cols: int, xlabel: str, ylabel: str | None) -> None:
    """Hide the grid's unused axes; label x (with tick labels) under the lowest panel of each column,
    and y on the first column."""
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    for col in range(min(n_cols, n_panels)):
        lowest = axes[col + n_cols * ((n_panels - 1 - col) // n_cols)]
        lowest.tick_params(labelbottom=True)
        lowest.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        for ax in axes[:n_panels:n_cols]:
            ax.set_ylabel(ylabel, fontsize=8)


def _legend_below(fig: Any, entries: dict[str, Any], width: float) -> None:
    """One legend for the whole figure, below its panels (it never covers a curve)."""
    ncol = max(1, min(len(entries), int(width // 3.0)))
    fig.legend(list(entries.values()), list(entries.keys()), loc="outside lower center", ncol=ncol, fontsize=7,
               frameon=False)


def _legend_height(n_entries: int, width: float) -> float:
    """Inches the legend below the panels takes."""
    return 0.2 * -(-n_entries // max(1, min(n_entries, int(width // 3.0)))) + 0.25


def _curve_panels(
    arms: Sequence[Arm], x: np.ndarray, matrix: Callable[[Arm], np.ndarray], weights: Sequence[np.ndarray],
    title: str, xlabel: str, palette: Palette | None, references: Collection[str], x_from: float | None = None,
) -> Any:
    """Mean Dice curves with 95% bands, faceted by :func:`arm_panels` (shared axes, one legend below).

    ``matrix(arm)``: float (n_sessions, len(x)); each arm's sessions are clustered by its own images,
    with its entry of ``weights`` (arms may hold different sessions: a human start runs one session per
    annotator of an image). The y axis spans every band from ``x_from`` on.
    """
    from matplotlib.lines import Line2D

    palette = palette or Palette(arms)
    panels = arm_panels(arms, references)
    w_of = {a.label: w for a, w in zip(arms, weights)}
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for a in arms:
        curves[a.label] = cluster_bootstrap(matrix(a), image_codes(a)[0], weights=w_of[a.label])
    keep = x >= (x_from if x_from is not None else -np.inf)
    lows = [float(np.nanmin(lo[keep])) for _, lo, _ in curves.values() if np.isfinite(lo[keep]).any()]
    n_rows, n_cols = _grid(len(panels))
    entries: dict[str, Any] = {}
    for a in arms:
        entries.setdefault(series_name(a), Line2D([], [], lw=1.6, **palette.line(a)))
    width = 6.4 if len(panels) == 1 else 4.4 * n_cols
    fig = _figure(width, 3.4 * n_rows + 0.4 + _legend_height(len(entries), width), constrained=True)
    axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (panel_title, members) in zip(axes, panels):
        for a in members:
            est, lo, hi = curves[a.label]
            style = palette.line(a)
            ax.plot(x, est, lw=1.6, **style)
            ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, lw=0)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    _label_grid(axes, len(panels), n_cols, xlabel, "mean Dice")
    axes[0].set_ylim(max(0.0, min(lows, default=1.0) - 0.03), 1.01)
    fig.suptitle(title, fontsize=10)
    _legend_below(fig, entries, width)
    return fig


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
                        seed: int = DEFAULT_SEED, palette: Palette | None = None,
                        references: Collection[str] = ()) -> Path:
    """Mean Dice against clicks 0..N (N: the most clicks any session reached), a line per arm with a
    95% image-bootstrap band, faceted by :func:`arm_panels`; see :func:`dice_at_clicks_matrix`."""
    n = max(int(max(s["clicks_so_far"].max() for s in a.session_steps)) for a in arms)
    fig = _curve_panels(arms, np.arange(n + 1), lambda a: dice_at_clicks_matrix(a, n),
                        _boot_weights(arms, n_boot, seed), "Dice against clicks (95% CI, images resampled)",
                        "clicks (start inputs included)", palette, references)
    return _save(fig, Path(path))


def plot_dice_vs_clicks_per_task(arms: Sequence[Arm], path: str | os.PathLike, palette: Palette | None = None,
                                 references: Collection[str] = ()) -> Path:
    """Mean Dice against clicks 0..N, one panel per task (sorted) and group of :func:`arm_panels`, a
    line per arm; no CI bands (a task holds only a few images). The clicks axis runs to the most
    clicks any session reached."""
    from matplotlib.lines import Line2D

    palette = palette or Palette(arms)
    tasks = sorted({str(t) for a in arms for t in session_tasks(a)})
    groups = arm_panels(arms, references)
    n = max(int(max(s["clicks_so_far"].max() for s in a.session_steps)) for a in arms)
    x = np.arange(n + 1)
    mats = {a.label: dice_at_clicks_matrix(a, n) for a in arms}
    n_rows, n_cols = (len(groups), len(tasks)) if len(groups) > 1 and len(tasks) <= 4 else \
        _grid(len(groups) * len(tasks), min(3, len(groups) * len(tasks)))
    entries: dict[str, Any] = {}
    for a in arms:
        entries.setdefault(series_name(a), Line2D([], [], lw=1.4, **palette.line(a)))
    width = 3.6 * n_cols
    fig = _figure(width, 2.9 * n_rows + 0.4 + _legend_height(len(entries), width), constrained=True)
    axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False).ravel()
    low = 1.0
    for ax, ((group, members), task) in zip(axes, [(g, t) for g in groups for t in tasks]):
        n_img = 0
        for a in members:
            mask = session_tasks(a) == task
            if not mask.any():
                continue
            n_img = max(n_img, len(np.unique(a.sessions["image"].astype(str).to_numpy()[mask])))
            mean = mats[a.label][mask].mean(axis=0)
            ax.plot(x, mean, lw=1.4, **palette.line(a))
            low = min(low, float(np.nanmin(mean)))
        ax.set_title(_join(group, f"{task or '(no task)'} ({n_img} image{'s' if n_img != 1 else ''})"), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    _label_grid(axes, len(groups) * len(tasks), n_cols, "clicks (start inputs included)", "mean Dice")
    axes[0].set_ylim(max(0.0, low - 0.03), 1.01)
    fig.suptitle("Dice against clicks per task (means; no CI bands)", fontsize=10)
    _legend_below(fig, entries, width)
    return _save(fig, Path(path))


def plot_dice_vs_effort(arms: Sequence[Arm], path: str | os.PathLike, n_boot: int = DEFAULT_N_BOOT,
                        seed: int = DEFAULT_SEED, n_grid: int = 121, palette: Palette | None = None,
                        references: Collection[str] = ()) -> Path:
    """Mean Dice against annotator seconds on a common grid, a line per arm with a 95% band, faceted
    by :func:`arm_panels`; see :func:`dice_by_effort_matrix`."""
    t_max = max(float(cumulative_effort(s, a.effort_model())[-1]) for a in arms for s in a.session_steps)
    grid = np.linspace(0.0, max(t_max, 1e-9), n_grid)
    # Before its first proposal a session shows nothing (Dice 0); the y axis starts where all arms have one.
    first = max(float(cumulative_effort(s, a.effort_model())[0]) for a in arms for s in a.session_steps)
    fig = _curve_panels(arms, grid, lambda a: dice_by_effort_matrix(a, grid), _boot_weights(arms, n_boot, seed),
                        "Dice against effort (95% CI, images resampled)",
                        "annotator seconds (clicks, inspections, choices)", palette, references, x_from=first)
    return _save(fig, Path(path))


def plot_dice_vs_iteration(arms: Sequence[Arm], path: str | os.PathLike, n_boot: int = DEFAULT_N_BOOT,
                           seed: int = DEFAULT_SEED, palette: Palette | None = None,
                           references: Collection[str] = ()) -> Path:
    """Mean Dice per iteration, a line per arm with a 95% image-bootstrap band, faceted by
    :func:`arm_panels`."""
    n = max(int(s["iteration"].max()) for a in arms for s in a.session_steps)
    fig = _curve_panels(arms, np.arange(1, n + 1), lambda a: dice_by_iteration_matrix(a, n),
                        _boot_weights(arms, n_boot, seed), "Dice per iteration (95% CI, images resampled)",
                        "iteration", palette, references)
    return _save(fig, Path(path))


NOC_ROWS = 24  # arms per panel of the NoC figure (points with CI bars, one row each)


def plot_noc90(summary: pd.DataFrame, path: str | os.PathLike, metric: str = "noc_90",
               arms: Sequence[Arm] | None = None, palette: Palette | None = None,
               references: Collection[str] = ()) -> Path:
    """``metric`` (default NoC@90) per arm as points with 95% CI bars, arms ordered by the value
    (best at the top); ``summary`` is :func:`simulator.report.summary_table`'s output.

    With ``arms`` (the arms of ``summary``) the points take their method's colour and the arms are
    faceted as in :func:`arm_panels` (at most :data:`NOC_ROWS` per panel, a shared value axis)."""
    df = summary.set_index("label")
    panels: list[tuple[str, list[Any]]]
    if arms:
        palette = palette or Palette(arms)
        panels = [(t, [(a.label, a) for a in m]) for t, m in arm_panels(arms, references, NOC_ROWS)]
    else:
        panels = [("", [(lab, None) for lab in summary["label"]])]
    sizes = [len(m) for _, m in panels]
    n_rows, n_cols = _grid(len(panels), 1 if len(panels) <= 3 else 2)
    row_h = [max(sizes[r * n_cols:(r + 1) * n_cols]) for r in range(n_rows)]
    fig = _figure(6.4 * n_cols, 0.9 * n_rows + 0.3 * sum(row_h) + 0.3, constrained=True)
    axes = fig.subplots(n_rows, n_cols, sharex=True, squeeze=False, height_ratios=row_h).ravel()
    for ax, (title, members) in zip(axes, panels):
        rows = df.loc[[lab for lab, _ in members]].assign(arm=[a for _, a in members])
        rows = rows.sort_values(metric, ascending=lower_is_better(metric), kind="stable", na_position="last")
        y = np.arange(len(rows))[::-1]
        v = rows[metric].to_numpy(dtype=float)
        err = np.abs(np.stack([v - rows[f"{metric}_lo"].to_numpy(dtype=float),
                               rows[f"{metric}_hi"].to_numpy(dtype=float) - v]))
        names = []
        for yi, vi, e, (lab, r) in zip(y, v, np.nan_to_num(err).T, rows.iterrows()):
            a = r["arm"]
            color = palette.color(a) if a is not None and palette is not None else _palette(1)[0]
            ax.errorbar([vi], [yi], xerr=e[:, None], fmt="o", color=color, capsize=3, ms=5)
            names.append(lab if a is None else _short_label(a, title))
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    label = (f"{metric_label(metric)} (mean, 95% CI; lower is better)" if lower_is_better(metric)
             else f"{metric_label(metric)} (mean, 95% CI)")
    _label_grid(axes, len(panels), n_cols, label, None)
    return _save(fig, Path(path))


def _short_label(arm: Arm, panel_title: str) -> str:
    """An arm's row name in a panel: its label without the `` | variant`` the panel title gives."""
    suffix = f" | {arm.variant}"
    return arm.label[: -len(suffix)] if panel_title and arm.label.endswith(suffix) else arm.label


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


def plot_k_sweep(arms: Sequence[Arm], summary: pd.DataFrame, path: str | os.PathLike,
                 palette: Palette | None = None) -> Path | None:
    """NoC@90 and effort against K (log2 axis), one line per method whose arms differ only in K, in
    its family's colour (a line style per line of a family, e.g. per training seed); circles for
    partial methods, squares for complete ones. None (nothing drawn) without a sweep."""
    sweeps = _k_sweeps(arms)
    if not sweeps:
        return None
    by_label = summary.set_index("label")
    # The legend goes below both panels: with several models and seeds it would hide the lines.
    fig = _figure(10.0, 4.0 + 0.2 * ((len(sweeps) + 1) // 2))
    fig.set_layout_engine("constrained")
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    palette = palette or Palette(arms)
    styles = []
    seen: dict[str, int] = {}
    for _, idx in sweeps:
        fam = method_family(arms[idx[0]])
        seen[fam] = seen.get(fam, -1) + 1
        styles.append((palette.colors[fam], _LINESTYLES[seen[fam] % len(_LINESTYLES)]))
    all_k: set[int] = set()
    for line, ((label, idx), (color, ls)) in enumerate(zip(sweeps, styles)):
        kind = arms[idx[0]].kind
        ks = np.array([int(arms[i].settings["k"]) for i in idx])
        all_k.update(ks.tolist())
        # Lines are shifted a little along the log axis so their error bars do not hide each other.
        xs = ks * 2.0 ** (0.05 * (line - (len(sweeps) - 1) / 2))
        for ax, m in zip(axes, ("noc_90", "effort_s")):
            rows = by_label.loc[[arms[i].label for i in idx]]
            v = rows[m].to_numpy(dtype=float)
            err = np.abs(np.stack([v - rows[f"{m}_lo"].to_numpy(dtype=float), rows[f"{m}_hi"].to_numpy(dtype=float) - v]))
            ax.errorbar(xs, v, yerr=np.nan_to_num(err), color=color, ls=ls,
                        marker="o" if kind == "partial" else "s", capsize=3, label=f"{label} ({kind})")
    for ax, m in zip(axes, ("noc_90", "effort_s")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(all_k))
        ax.set_xticklabels([str(k) for k in sorted(all_k)])
        ax.set_xlabel("K (candidates per iteration)")
        ax.set_ylabel(f"{metric_label(m)} (mean, 95% CI)")
        ax.grid(True, alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7)
    fig.suptitle("K sweep: circles = partial, squares = complete", fontsize=10)
    return _save(fig, Path(path))


def replay_session(arm: Arm, index: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Replay session ``index`` of a run deterministically, with a trace: a tool to verify a run (tests check
    that the states steps.parquet stores are the replayed ones); the report never calls it.

    Returns ``(steps, trace, case)``: the step records of :func:`simulator.session.run_session`, its
    per-iteration trace (bool (H, W) states, bool (K, H, W) candidates, clicks) and the
    :class:`~simulator.datasets.SessionCase` (image float32 (H, W), target bool (H, W)).
    """
    from .datasets import make_dataset, session_rng
    from .runner import RunSettings
    from .session import run_session

    import torch

    _, local, run_settings = arm.locate(index)  # a pooled arm's session is replayed in its fold's run
    settings = RunSettings.from_dict(run_settings)
    method = settings.make_method()
    cfg = settings.session
    case = make_dataset(settings.dataset, settings.n_sessions, start=cfg.start).case(local, settings.seed)
    trace: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runner's workers: these tiny networks are slower with more threads
    try:
        steps = run_session(
            case.image, case.target, method, settings.make_policy(), cfg, session_rng(settings.seed, local),
            human_scribbles=case.human_scribbles if cfg.start == "human" else None, trace=trace,
        )
    finally:
        torch.set_num_threads(threads)
    return steps, trace, case


def _clicks_xy(clicks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arr = np.array([list(c) for c in clicks], dtype=np.int64).reshape(-1, 3)
    return arr[:, 1], arr[:, 0], arr[:, 2].astype(bool)


def plot_filmstrip(arm: Arm, path: str | os.PathLike, index: int = 0, n_iters: int = 3,
                   max_candidates: int = 8) -> tuple[Path, str | None]:
    """Draw the first ``n_iters`` iterations of session ``index`` of ``arm``, one per row, from its steps.parquet.

    The states come from the run's stored masks (:func:`simulator.steplog.read_states`), the image and
    target from its dataset: no method is built and no session is run. Columns: the image, the target,
    the input the method was given, the K candidates (the chosen one outlined), the chosen state with
    the robot's corrections (green: positive click, red: negative), and the state after them. Decided
    foreground red, decided background blue.
    Returns ``(path, warning)``: a warning string when the dataset's target does not give the recorded
    Dice of the stored states (the data changed since the run), else None.

    Raises:
        ValueError: when the run stores no states (one line saying why: an arm run before they were
            stored is to be rerun; a person's sessions keep none).
    """
    from probseg.reproduce import overlay

    from .datasets import make_dataset
    from .metrics import dice
    from .steplog import read_states

    run_dir, local, s = arm.locate(index)  # a pooled arm's session lives in its fold's run
    try:
        rows = read_states(run_dir / "steps.parquet", local, n_iters)
    except ValueError as exc:
        why = ("a person's sessions (probseg-annotate) keep no states" if arm.config.get("annotator")
               else "rerun the arm to store them")
        raise ValueError(f"{exc}; {why}") from None
    case = make_dataset(s["dataset"], s.get("n_sessions"), start=s.get("start")).case(local, int(s.get("seed", 0)))
    image, target = case.image, case.target
    recorded = arm.steps[arm.steps["session"] == index].sort_values("iteration")["dice"].to_numpy(dtype=float)
    redrawn = np.array([dice(t["seg"], target) if t["seg"].shape == target.shape else np.nan for t in rows])
    warning = None
    if recorded.shape[0] < len(rows) or not np.allclose(recorded[:len(rows)], redrawn, rtol=0, atol=1e-9):
        warning = (f"the stored states of session {index} of arm {arm.label!r} do not give its steps.parquet Dice "
                   f"on the dataset's target (recorded {np.round(recorded[:len(rows)], 4).tolist()}, drawn "
                   f"{np.round(redrawn, 4).tolist()}): the data changed since the run; its filmstrip may be wrong")
    k = min(max_candidates, max(len(t["masks"]) for t in rows))
    n_cols = 3 + k + 2
    fig = _figure(1.35 * n_cols, 1.5 * len(rows) + 0.5)
    full = np.ones_like(target)
    for r, t in enumerate(rows):
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
        panels.append(("result", overlay(image, t["after_mask"], t["after_seg"]), {}))
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

