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
  ``per_task.csv`` (per task and arm: the endpoint and NoC@90 with CIs over the task's images, and
  the paired difference against the reference); for arms with the human start (one session per
  annotator): ``per_annotator.csv``; for arms that differ only in start, one of them human:
  ``starts.csv`` (each simulated start against the human start, paired by image);
* ``report.md`` and PNG figures (Dice against clicks, annotator seconds and iterations; Dice
  against clicks per task when there are several; NoC@90 per arm; a K sweep when there is one; an
  example session per method, drawn from its steps.parquet), each method in one colour throughout
  and no panel with more than 8 arms.

Arms may hold different sessions (a human start runs one per annotator of an image, a simulated
start one per image): each arm is paired with its reference, which must hold the same sessions, and
each arm's CIs resample its own images. Arms on different images (a capped ``n_sessions`` reaches
fewer images with the human start) are reported with a warning.

Every random draw comes from ``np.random.default_rng(seed)``, so the CSV files are byte-identical
from run to run. Timing columns (which differ from run to run) are never reported.

The package, a module per concern: :mod:`.load` (run and study directories), :mod:`.tables`
(summary, comparisons, seeds, session ends), :mod:`.real_tables` (per task, per annotator, starts),
:mod:`.formatting`, :mod:`.markdown` and :mod:`.markdown_real` (the sections of ``report.md``),
:mod:`.figure_set` (which figures a report draws), :mod:`.write` (``write_report``) and :mod:`.cli`.
The arms and their metrics are :mod:`simulator.arms`, the statistics :mod:`simulator.stats`, the
Dice curves :mod:`simulator.curves` and the figures :mod:`simulator.figures`; their public names
are importable from here too.
"""

from __future__ import annotations

from ..arms import METRICS, Arm, arm_effort_counts, metric_matrix
from ..curves import dice_at_clicks_matrix, dice_by_effort_matrix, dice_by_iteration_matrix
from ..figures import (
    DPI,  # noqa: F401  (re-exported, as before the split)
    plot_dice_vs_clicks,
    plot_dice_vs_clicks_per_task,
    plot_dice_vs_effort,
    plot_dice_vs_iteration,
    plot_filmstrip,
    plot_k_sweep,
    plot_noc90,
)
from ..stats import bootstrap_weights, cluster_bootstrap, holm, wilcoxon_p
from .cli import main
from .load import load_inputs, load_run, load_study_results
from .real_tables import has_real_tasks, per_annotator_table, per_task_table, start_groups, starts_table, study_tasks
from .tables import (
    COMPARISON_COLUMNS,  # noqa: F401
    DEFAULT_ENDPOINT,  # noqa: F401
    ID_COLUMNS,  # noqa: F401
    comparison_table,
    multi_seed_table,
    protocol_change_table,
    session_ends_table,
    summary_table,
)
from .write import write_report

__all__ = [
    "METRICS",
    "Arm",
    "load_run",
    "load_study_results",
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
