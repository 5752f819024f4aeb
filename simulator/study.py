"""Running a study: every arm through :func:`simulator.runner.run`, then its report; ``probseg-study``.

:func:`run_study` runs every arm of a :class:`~simulator.study_schema.Study` into
``OUT/runs/<arm>/`` (resumable: a finished arm is not rerun), writes ``OUT/study.json`` (the resolved
study) and then the report (:mod:`simulator.report`). The TOML schema, its parsing and its validation
are in :mod:`simulator.study_schema`; its public names are importable from here too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probseg.atomic import atomic_write
from probseg.cli import ArgumentParser, cli_entry

from . import study_schema
from .datasets import DataNotFound, task_filter
from .study_schema import *  # noqa: F403  (the schema's public names are this module's too)
from .study_schema import Study, list_studies, quick_study, read_study, slug

if TYPE_CHECKING:
    import pandas as pd

__all__ = [*study_schema.__all__, "main", "run_study", "study_record"]

DEFAULT_RESULTS = Path("results")


def _resolve_checkpoint(settings: dict[str, Any], out: Path) -> dict[str, Any]:
    ckpt = settings.get("checkpoint")
    if isinstance(ckpt, str) and ckpt.startswith("checkpoints/"):
        return {**settings, "checkpoint": str((out / ckpt).resolve())}
    return settings


def _train_seed_checkpoints(study: Study, out: Path, progress: bool) -> None:
    """Train the missing checkpoints of the extra training seeds with the shipped recipes."""
    from probseg.registry import resolve
    from probseg.train import TrainSettings, train

    needed = sorted({(Path(a.settings["checkpoint"]).name.rsplit("-seed", 1)[0], a.train_seed) for a in study.arms
                     if a.train_seed is not None and a.train_seed != 0})
    for name, tseed in needed:
        target = out / "checkpoints" / f"{name}-seed{tseed}.pt"
        if target.exists():
            continue
        record_path = Path(resolve(name)).with_suffix(".json")
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            raise ValueError(f"training.retrain: {record_path} (the recipe of {name!r}) is unreadable") from None
        known = {f.name for f in fields(TrainSettings)}
        settings = TrainSettings(**{k: v for k, v in record["settings"].items() if k in known})
        settings.seed = int(tseed)
        command = (record.get("command") or "").replace(" --seed 0", f" --seed {tseed}")
        if settings.device != "cpu":
            # A recipe trained on a GPU retrains on one when this machine has it, else on the CPU.
            settings.device = "auto"
            command = re.sub(r"--device \S+", "--device auto", command)
        target.parent.mkdir(parents=True, exist_ok=True)
        train(settings, target, progress=progress, command=command)


def _check_fold_checkpoints(study: Study, out: Path) -> None:
    """Refuse, before any arm runs, a study with ``[folds]`` whose fold checkpoint files are missing, or whose
    output folder holds an arm run before the study had folds (the report would read that run alone)."""
    for arm in study.arms:
        if arm.folds and (out / arm.run_dir / "sessions.parquet").is_file():
            raise ValueError(f"out: {out / arm.run_dir} holds a run of arm {arm.label!r} made without folds; "
                             "delete that folder or choose another --out")
        arm_dir = out / arm.run_dir
        stray = sorted(d.name for d in arm_dir.glob("fold-*") if d.name.removeprefix("fold-") not in arm.folds)
        if stray:
            raise ValueError(f"out: {arm_dir} holds {stray[0]}, a fold this study does not name; delete it or "
                             "choose another --out")
        for fold, settings in arm.folds.items():
            ckpt = _resolve_checkpoint(settings, out).get("checkpoint")
            if isinstance(ckpt, str) and ckpt.endswith(".pt") and not Path(ckpt).is_file():
                raise ValueError(f"checkpoint: {ckpt} (fold {fold} of arm {arm.label!r}) does not exist; train "
                                 "it with the command its study or CHECKPOINTS.md gives")


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _run_reproduce(spec: dict[str, Any], out: Path, progress: bool) -> dict[str, Any]:
    """The paper's reproduction: ``reproduce.csv``, the target Dice@K curve and Figure 3 per model."""
    from probseg.evaluate import evaluate_disks
    from probseg.registry import load
    from probseg.reproduce import draw_figure3

    import pandas as pd

    rows = []
    figures: list[str] = []
    for ckpt in spec["checkpoints"]:
        model = load(ckpt)
        m = evaluate_disks(model, n=spec["n_images"], seed=spec["seed"], ks=tuple(spec["ks"]), progress=progress)
        rows.append({"checkpoint": ckpt, **m})
        if spec["figure"]:
            name = f"figure3-{slug(Path(ckpt).stem)}.png"
            draw_figure3(model, out / name, seed=spec["seed"])
            figures.append(name)
    df = pd.DataFrame(rows)
    atomic_write(out / "reproduce.csv", lambda tmp: df.to_csv(tmp, index=False, float_format="%.6g"))
    if spec["figure"]:
        _plot_dice_at_k(df, spec["ks"], out / "target-dice-at-k.png")
        figures.insert(0, "target-dice-at-k.png")
    return {"csv": "reproduce.csv", "figures": figures}


def _plot_dice_at_k(df: pd.DataFrame, ks: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    long = pd.DataFrame([
        {"checkpoint": r["checkpoint"], "K": k, "target Dice@K": r[f"target_dice_at_{k}"]}
        for _, r in df.iterrows() for k in ks
    ])
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    sns.lineplot(data=long, x="K", y="target Dice@K", hue="checkpoint", marker="o", ax=ax)
    for _, r in df.iterrows():
        ax.axhline(r["mean_target_dice"], ls=":", lw=1, color="grey")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_title("best of K samples vs the input's target (dotted: z = 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def study_record(study: Study, quick: bool) -> dict[str, Any]:
    """What ``study.json`` holds: the resolved study, as the report reads it."""
    return {
        "name": study.name,
        "description": study.description,
        "notes": study.notes,
        "source": str(study.path) if study.path else "",
        "definition": study.raw,
        "dataset": study.dataset,
        "train_tasks": study.train_tasks,
        "folds": study.folds,
        "reference": study.reference,
        "primary_endpoint": study.primary_endpoint,
        "secondary_metrics": study.secondary_metrics,
        "thresholds": study.thresholds,
        "bootstrap": {"n_boot": study.n_boot, "seed": study.boot_seed},
        "training": {"seeds": study.train_seeds, "retrain": study.retrain},
        "quick": quick,
        # Each arm with its ``reference`` label, worked out once when the study is parsed; the report
        # reads it from here (simulator.report.references).
        "arms": [a.to_dict() for a in study.arms],
        "reproduce": None,
    }


def _study_held_by(out: Path) -> str | None:
    """The name of the study whose results ``out`` holds, or None when it holds none.

    ``study.toml`` is copied in when a run starts and ``study.json`` written when it ends, so a folder
    whose run stopped early is recognised too.
    """
    for name, parse in (("study.json", json.loads), ("study.toml", tomllib.loads)):
        path = out / name
        if not path.is_file():
            continue
        try:
            held = parse(path.read_text())["name"]
        except (OSError, ValueError, KeyError, TypeError):  # TOMLDecodeError is a ValueError
            raise ValueError(f"out: {path} is unreadable; choose another --out") from None
        return str(held)
    return None


def run_study(
    study: Study | str | Path,
    out: str | Path | None = None,
    *,
    quick: bool = False,
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
    report: bool = True,
) -> Path:
    """Run every arm of ``study`` (and its reproduction), then write its report.

    Args:
        study: a :class:`Study`, a shipped study name or a TOML path.
        out: output folder (default ``results/NAME``; with ``quick``, ``results/runs/NAME-quick``).
            Rerunning a study into its folder resumes it; a folder holding another study is refused
            (its tables and figures would stay beside this study's report).
        quick: a few sessions of each arm (``quick_sessions``, ``quick_max_iters``) and the first
            training seed only: the whole pipeline, end to end, in seconds.
        workers: local Ray workers (0: in-process); the tables do not depend on it.
        address: an existing Ray cluster instead of a local instance.
        progress: progress bars.
        report: write the report (``report.md``, ``summary.csv``, figures) at the end.
    Returns:
        The output folder.
    Raises:
        ValueError: naming the field at fault, or ``out`` when it holds another study.
    """
    from .runner import RunSettings, run

    study = study if isinstance(study, Study) else read_study(study)
    if quick:
        study = quick_study(study)
    out = Path(out) if out is not None else (Path("results") / "runs" / f"{study.name}-quick" if quick else DEFAULT_RESULTS / study.name)
    held = _study_held_by(out) if out.is_dir() else None
    if held is not None and held != study.name:
        raise ValueError(f"out: {out} holds the study {held!r}; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"out: cannot create {out}: {exc.strerror or exc}") from None
    record = study_record(study, quick)
    if study.path is not None:
        atomic_write(out / "study.toml", lambda tmp: Path(tmp).write_text(study.path.read_text()))
    if study.reproduce is not None:
        record["reproduce"] = _run_reproduce(study.reproduce, out, progress)
    if study.arms:
        _check_fold_checkpoints(study, out)
        _train_seed_checkpoints(study, out, progress)
        ray_started = _maybe_start_ray(workers, address)
        try:
            for i, arm in enumerate(study.arms):
                if progress:
                    print(f"[{i + 1}/{len(study.arms)}] {arm.label}", file=sys.stderr)
                # With [folds], one run per fold into run_dir/fold-F; the report pools them.
                runs = ({f"fold-{f}": s for f, s in arm.folds.items()} if arm.folds else {"": arm.settings})
                for sub, arm_settings in runs.items():
                    settings = RunSettings.from_dict(_resolve_checkpoint(arm_settings, out))
                    run(settings, out=out / arm.run_dir / sub, workers=workers, address=address, progress=progress)
        finally:
            if ray_started:
                import ray

                ray.shutdown()
    _write_json(out / "study.json", record)
    if report:
        from .report import write_report

        write_report([out], out=out)
    return out


def _maybe_start_ray(workers: int, address: str | None) -> bool:
    """Start Ray once for all arms (the runner reuses an initialised instance)."""
    if workers == 0 and address is None:
        return False
    from .runner import _probe_address, start_ray

    if address is not None:
        _probe_address(address)
    return start_ray(workers, address)


def _arms_table(study: Study) -> str:
    import pandas as pd

    rows = []
    for a in study.arms:
        s = a.settings
        rows.append({"label": a.label, "method": s["method"], "policy": s.get("policy"), "k": s.get("k"),
                     "start": s.get("start", "clicks"), "variant": a.variant,
                     "train_seed": "" if a.train_seed is None else a.train_seed})
    return pd.DataFrame(rows).to_string(index=False) if rows else "(no arms)"


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="probseg-study",
        description="Run a declarative study (studies/NAME.toml) and write its tables and figures.",
    )
    sub = p.add_subparsers(dest="command", metavar="{run,list,show}")
    sub.required = True
    r = sub.add_parser("run", help="run every arm of a study, then write its report")
    r.add_argument("study", help="a shipped study name (studies/NAME.toml) or a path to a .toml file")
    r.add_argument("--out", default=None, help="output folder (default: results/NAME; --quick: results/runs/NAME-quick)")
    r.add_argument("--quick", action="store_true", help="a few sessions per arm, first training seed only: a smoke test")
    r.add_argument("--workers", type=int, default=2, help="local Ray workers; 0 runs in-process without Ray")
    r.add_argument("--address", default=None, help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    r.add_argument("--no-report", action="store_true", help="run the arms only; write the report later with probseg-report")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub.add_parser("list", help="the shipped studies, a line each")
    s = sub.add_parser("show", help="validate a study and print its resolved arms without running anything")
    s.add_argument("study", help="a shipped study name or a path to a .toml file")
    s.add_argument("--quick", action="store_true", help="show the --quick version")
    return p


@cli_entry("probseg-study")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-study``."""
    a = _parser().parse_args(argv)
    if a.command == "list":
        for path in list_studies():
            try:
                st = read_study(path)
                n_arms = len(st.arms)
                extra = f"{n_arms} arms" + (" + reproduction" if st.reproduce else "")
                print(f"{st.name:<18} {extra:<22} {st.description}")
            except DataNotFound as exc:  # a valid study whose data this machine lacks
                print(f"{path.stem:<18} {'(needs data)':<22} {str(exc).removeprefix('dataset: ')}")
            except ValueError as exc:
                print(f"{path.stem:<18} {'(invalid)':<22} {exc}")
        return 0
    study = read_study(a.study)
    if a.command == "show":
        st = quick_study(study) if a.quick else study
        print(f"{st.name}: {st.description}")
        print(f"dataset {st.dataset}, sessions {st.arms[0].settings.get('n_sessions') if st.arms else '-'}, "
              f"reference {st.reference!r}, primary endpoint {st.primary_endpoint}")
        for fold, train in st.folds.items():
            unseen = ", ".join(task_filter(st.fold_datasets[fold])[1])
            print(f"fold {fold}: trains on {', '.join(train)}; every arm runs on {unseen}")
        print(_arms_table(st))
        return 0
    if a.workers < 0:
        raise ValueError(f"--workers: must be >= 0, got {a.workers}")
    out = run_study(study, a.out, quick=a.quick, workers=a.workers, address=a.address,
                    progress=not a.no_progress, report=not a.no_report)
    print(f"study {study.name}: {out}")
    if (out / "report.md").exists():
        print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
