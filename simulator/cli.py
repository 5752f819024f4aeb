"""``probseg-simulate``: run one arm of robot-annotator sessions and write its tables."""

from __future__ import annotations

import argparse
import sys

from probseg.cli import ArgumentParser, cli_entry

from .corrections import CORRECTION_RULES, START_KINDS
from .datasets import DATASETS
from .methods import METHODS
from .policies import ACCEPTANCE_RULES, POLICIES
from .runner import DEFAULT_BATCH_SIZE, RunSettings, run, summary_json
from .session import FALLBACKS

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


def _parser() -> argparse.ArgumentParser:
    d = RunSettings()
    p = ArgumentParser(
        prog="probseg-simulate",
        description=(
            "Run robot-annotator sessions: a method proposes K candidates, a policy picks one, the robot "
            "corrects it with the click rule; writes steps.parquet, sessions.parquet, summary.json and "
            "config.json."
        ),
    )
    g = p.add_argument_group("arm")
    g.add_argument(
        "--dataset", default=d.dataset,
        help=f"session data: {', '.join(DATASETS)}. medscribble: a MedScribble folder, ?tasks=ACDC,WBC keeps "
             "those tasks; nifti: a CSV manifest (image,label,label_values,axis,slices); folder: images/ and "
             "masks/ (PNG or NPY), optional scribbles/NAME_ANNOTATOR.npy. With --start human, one session per "
             "image and annotator",
    )
    g.add_argument("--n-sessions", type=int, default=None, help="sessions (default: the dataset's, 1000 for disks)")
    g.add_argument("--method", default=d.method, help=f"one of: {', '.join(METHODS)}; or module.path:factory, any "
                        "object with the Method protocol (simulator.methods.Method)")
    g.add_argument("--checkpoint", default=None, help="override the method's checkpoint (a name or a .pt path)")
    g.add_argument("--policy", default=d.policy, help=f"one of: {', '.join(POLICIES)}; or module.path:factory")
    g.add_argument("--k", type=int, default=d.k, help="candidates per iteration (single-proposal methods use 1)")
    g.add_argument("--seed", type=int, default=d.seed, help="every random draw derives from (seed, session)")
    g.add_argument("--epsilon", type=float, default=d.epsilon, help="noisy-best-of-k: probability of a random pick")
    g.add_argument("--error-weight", type=float, default=d.error_weight, help="best-of-k: score = correct - w * wrong")
    g.add_argument("--rw-beta", type=float, default=None, help="random walker beta (default: the value tuned on training data)")
    g = p.add_argument_group("protocol")
    g.add_argument("--start", default=d.start, help=f"one of: {', '.join(START_KINDS)}")
    g.add_argument("--max-iters", type=int, default=d.max_iters,
                   help="iterations (propose, pick, correct) a session runs at most")
    g.add_argument("--corrections-per-iter", type=int, default=d.corrections_per_iter,
                   help="correction clicks the robot makes after each pick")
    g.add_argument("--correction-rule", default=d.correction_rule, help=f"one of: {', '.join(CORRECTION_RULES)}")
    g.add_argument("--brush-radius", type=int, default=None, help="click brush radius in px (default: max(1, round(H/64)))")
    g.add_argument("--pending-as-errors", action="store_true", help="count pending target pixels as errors every iteration")
    g.add_argument("--allow-reject", action=argparse.BooleanOptionalAction, default=d.allow_reject,
                   help="oracle policies may keep the current segmentation when no candidate beats it")
    g.add_argument("--acceptance", default=d.acceptance,
                   help=f"oracle policies: {' or '.join(ACCEPTANCE_RULES)}. no-worse-dice never accepts a candidate "
                        "whose foreground has a lower Dice than the current one; pixel-score is v0.1's rule")
    g.add_argument("--fallback", default=d.fallback,
                   help=f"after a stall or rejection: {' or '.join(FALLBACKS)}. hand-in clicks the errors of the "
                        "segmentation a person would hand in (undecided = background); v0.1 also clicks undecided background")
    g.add_argument("--early-stop", action=argparse.BooleanOptionalAction, default=d.early_stop,
                   help="end a session once its segmentation has no error (--no-early-stop: always run --max-iters)")
    g.add_argument("--stop-at", type=float, default=None, metavar="DICE",
                   help="end a session once its Dice reaches DICE instead of 1")
    g = p.add_argument_group("effort model (seconds)")
    g.add_argument("--c-click", type=float, default=d.c_click, help="per click: pointing + mental preparation (KLM)")
    g.add_argument("--c-inspect", type=float, default=d.c_inspect, help="per iteration: inspecting the proposal")
    g.add_argument("--b-choose", type=float, default=d.b_choose, help="Hick-Hyman slope per bit of choosing among K")
    g.add_argument("--effort-model", default=None, metavar="FILE",
                   help="an effort file (probseg-annotate fit-effort) whose constants replace the three above")
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, default=2, help="local Ray workers; 0 runs in-process without Ray")
    g.add_argument("--address", default=None, help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    g.add_argument("--chunk-size", type=int, default=d.chunk_size, help="sessions per task and per saved chunk")
    g.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="sessions whose proposals a worker computes in one batched pass (1: one at a time); "
                        "never changes the tables")
    g.add_argument("--out", default=None, help="output folder (default: a fresh folder under results/runs/)")
    g.add_argument("--json", action="store_true", help="print summary.json as the last line")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@cli_entry("probseg-simulate")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-simulate``."""
    a = _parser().parse_args(argv)
    if a.effort_model is not None:  # constants fitted to people's timings replace the assumed ones
        from .annotate.effort_fit import load_effort_file

        fitted = load_effort_file(a.effort_model)
        a.c_click, a.c_inspect, a.b_choose = fitted.c_click, fitted.c_inspect, fitted.b_choose
    settings = RunSettings(
        dataset=a.dataset, n_sessions=a.n_sessions, method=a.method, checkpoint=a.checkpoint, policy=a.policy,
        k=a.k, seed=a.seed, start=a.start, max_iters=a.max_iters, corrections_per_iter=a.corrections_per_iter,
        correction_rule=a.correction_rule, brush_radius=a.brush_radius, pending_as_errors=a.pending_as_errors,
        allow_reject=a.allow_reject, fallback=a.fallback, early_stop=a.early_stop, stop_at=a.stop_at,
        acceptance=a.acceptance, error_weight=a.error_weight, epsilon=a.epsilon, rw_beta=a.rw_beta,
        c_click=a.c_click, c_inspect=a.c_inspect, b_choose=a.b_choose, chunk_size=a.chunk_size,
    )
    import pandas as pd  # not at the top: --help and a usage error stay fast

    _, _, summary = run(settings, out=a.out, workers=a.workers, address=a.address, progress=not a.no_progress,
                        batch_size=a.batch_size)
    print(_format_summary(summary, f"{settings.method} / {settings.policy} / K={settings.k}"))
    print(f"steps per session: {summary['steps_per_session']:.2f}  ended early (annotator done): "
          f"{summary['n_stopped_early']} of {summary['n_sessions']}")
    rate = summary["sessions_per_second"]
    rate_text = f"{rate:.2f}" if rate is not None else "- (resumed: every session was already done)"
    print(f"sessions: {summary['n_sessions']}  wall: {summary['wall_seconds']:.1f} s  "
          f"sessions/s: {rate_text}  out: {summary['out']}")
    if a.json:
        print(summary_json({k: v for k, v in summary.items() if k != "out"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
