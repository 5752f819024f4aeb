"""``probseg-simulate``: run one arm of robot-annotator sessions and write its tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

from probseg.cli import ArgumentParser, cli_entry

from .runner import DEFAULT_BATCH_SIZE, RunSettings, run, summary_json
from .setting import Setting, settings_of

__all__ = ["main"]

_SUMMARY_ROWS = (
    "noc_80", "noc_85", "noc_90", "nof_90", "noi_90", "dice_at_clicks_3", "dice_at_clicks_5",
    "dice_at_clicks_10", "dice_at_iter_1", "dice_at_iter_5", "dice_at_iter_10", "dice_at_iter_20",
    "dice_auc", "final_dice", "final_hd95", "effort_s",
)


def _format_summary(summary: dict, name: str) -> str:
    """The run's metrics as printed: one row per metric under its field label (NoC@90, NoF@90 as a
    whole count, Dice@5 clicks), the run named in the header, and a one-line legend of the labels."""
    from .arms import format_metric, metric_label, metric_legend

    rows = [(metric_label(k), format_metric(k, summary[k])) for k in _SUMMARY_ROWS]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'metric':<{width}}  {name}"] + [f"{label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines + [metric_legend(_SUMMARY_ROWS)])


# The option groups of --help, in order: a study file's tables group its keys the same way.
_GROUPS = {"arm": "arm", "protocol": "protocol", "effort": "effort model (seconds)", "execution": "execution"}


def add_setting_options(groups: dict[str, Any], settings: Iterable[Setting]) -> None:
    """One option per setting, in its group: ``--kebab-name``, its type, default and help; a flag for a
    bool (``--name`` when off by default, ``--name/--no-name`` when on)."""
    for s in settings:
        flag = "--" + s.name.replace("_", "-")
        if s.type is bool:
            action = argparse.BooleanOptionalAction if s.default else "store_true"
            groups[s.group].add_argument(flag, action=action, default=s.default, help=s.help)
        else:
            groups[s.group].add_argument(flag, type=s.type, default=s.default, metavar=s.metavar, help=s.help)


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="probseg-simulate",
        description=(
            "Run robot-annotator sessions: a method proposes K candidates, a policy picks one, the robot "
            "corrects it with the click rule; writes steps.parquet, sessions.parquet, summary.json and "
            "config.json."
        ),
    )
    groups = {key: p.add_argument_group(title) for key, title in _GROUPS.items()}
    add_setting_options(groups, settings_of(RunSettings))
    groups["effort"].add_argument("--effort-model", default=None, metavar="FILE",
                                  help="an effort file (probseg-annotate fit-effort) whose constants replace the three above")
    g = groups["execution"]
    g.add_argument("--workers", type=int, default=2, help="local Ray workers; 0 runs in-process without Ray")
    g.add_argument("--address", default=None, help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="sessions whose proposals a worker computes in one batched pass (1: one at a time); "
                        "never changes the tables")
    g.add_argument("--out", default=None, help="output folder (default: a fresh folder under results/runs/)")
    g.add_argument("--json", action="store_true", help="print summary.json as the last line")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def settings_from_args(a: argparse.Namespace) -> RunSettings:
    """The run settings of parsed options; an ``--effort-model`` file's constants replace the three given.

    Raises:
        ValueError: naming the setting a record refuses, or ``effort_model`` for a bad file.
    """
    settings = RunSettings.from_dict({s.name: getattr(a, s.name) for s in settings_of(RunSettings)})
    if a.effort_model is not None:  # constants fitted to people's timings replace the assumed ones
        from .annotate.effort_fit import load_effort_file

        settings.effort = load_effort_file(a.effort_model)
    return settings


@cli_entry("probseg-simulate")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-simulate``."""
    a = _parser().parse_args(argv)
    settings = settings_from_args(a)
    _, _, summary = run(settings, out=a.out, workers=a.workers, address=a.address, progress=not a.no_progress,
                        batch_size=a.batch_size)
    print(_format_summary(summary, f"{settings.method} / {settings.policy} / K={settings.session.k}"))
    print(f"steps per session: {summary['steps_per_session']:.2f}  ended early (annotator done): "
          f"{summary['n_stopped_early']} of {summary['n_sessions']}")
    rate, wall = summary["sessions_per_second"], summary["wall_seconds"]
    timing = (f"wall: {wall:.1f} s  sessions/s: {rate:.2f}" if rate is not None and wall is not None
              else "resumed: every session was already done")
    print(f"sessions: {summary['n_sessions']}  {timing}  out: {summary['out']}")
    if a.json:
        print(summary_json({k: v for k, v in summary.items() if k != "out"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
