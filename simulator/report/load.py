"""Loading a report's inputs: run directories and study directories as arms (:class:`~simulator.arms.Arm`),
and the checks that paired arms hold the same sessions."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probseg.lazy import lazy_import

from ..arms import Arm, FoldPart
from ..datasets import task_filter

pd = lazy_import("pandas")  # imported on first use: commands start faster

KEY_COLUMNS = ("session", "image", "target")

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
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        # Only the columns asked for: steps.parquet also holds the filmstrips' packed states.
        missing = [c for c in columns or () if c not in names]
        df = None if missing else pd.read_parquet(path, columns=None if columns is None else list(columns))
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise ValueError(f"{arg}: cannot read {path}: {exc}") from None
    if missing:
        raise ValueError(f"{arg}: {path} lacks column {missing[0]!r}")
    return df


def load_run(
    path: str | os.PathLike,
    label: str | None = None,
    *,
    name: str | None = None,
    train_seed: int | None = None,
    variant: str = "default",
    arg: str = "paths",
    folds: Sequence[str] | None = None,
) -> Arm:
    """Load a run directory as an :class:`Arm` (label: the directory name unless given).

    A directory holding one run per cross-validation fold (``fold-F/``, as a study with ``[folds]``
    writes) is loaded as one arm pooled over its folds (see :func:`fold_runs`); ``folds``, the study's
    fold names, must then all be there.

    Raises:
        ValueError: naming ``arg`` when the directory is missing or lacks ``config.json``,
            ``sessions.parquet`` or ``steps.parquet`` (or they are unreadable or lack columns).
    """
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise ValueError(f"{arg}: {run_dir} is not a directory")
    found = fold_runs(run_dir)
    missing = [f for f in folds or () if f not in dict(found)]
    if missing:
        raise ValueError(f"{arg}: {run_dir} has no run of fold {missing[0]} (the study stopped before it: run it "
                         "again to finish)")
    stray = [f for f, _ in found if folds is not None and f not in folds]
    if stray:
        raise ValueError(f"{arg}: {run_dir} holds fold-{stray[0]}, which the study does not name; delete it")
    if found:
        return _load_folded(run_dir, found, label, name=name, train_seed=train_seed, variant=variant, arg=arg)
    sessions, steps, config = _read_run(run_dir, arg)
    return Arm(
        label=label if label is not None else run_dir.resolve().name, run_dir=run_dir, config=config,
        sessions=sessions, steps=steps, name=name or "", train_seed=train_seed, variant=variant or "default",
    )


def fold_runs(run_dir: Path) -> list[tuple[str, Path]]:
    """``[(fold, its run directory)]`` of an arm run once per cross-validation fold (a study with
    ``[folds]`` runs fold ``F`` into ``run_dir/fold-F``), sorted by fold; empty for a single run."""
    if (run_dir / "sessions.parquet").is_file():
        return []
    return sorted((d.name.removeprefix("fold-"), d) for d in run_dir.glob("fold-*") if (d / "config.json").is_file())


def _read_run(run_dir: Path, arg: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """One run directory's sessions (sorted by key), steps (the report's columns, sorted) and config."""
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
    return sessions, steps.reset_index(drop=True), config


def _pooled_checkpoint(parts: Sequence[FoldPart]) -> Any:
    """The pooled arm's ``checkpoint`` setting: the folds' common value, else the path with the fold's
    name as ``{fold}`` (as the study file gives it), else the folds' paths joined by commas."""
    ckpts = [p.settings.get("checkpoint") for p in parts]
    if len(set(map(str, ckpts))) == 1:
        return ckpts[0]
    fold = parts[0].fold
    # A folder named for the fold (``.../A/...`` or ``.../fold-A/...``), the layout the studies use.
    template = "/".join("{fold}" if seg == fold else "fold-{fold}" if seg == f"fold-{fold}" else seg
                        for seg in str(ckpts[0]).split("/"))
    if "{fold}" in template and all(template.replace("{fold}", p.fold) == str(c) for p, c in zip(parts, ckpts)):
        return template
    return ",".join(map(str, ckpts))


def _check_poolable(run_dir: Path, parts: Sequence[FoldPart], arg: str) -> None:
    """Folds pool into one arm only when they ran the same arm (settings equal but for the dataset's tasks
    and the checkpoint) on disjoint tasks of the same data."""
    def arm(settings: dict[str, Any]) -> dict[str, Any]:  # what every fold of one arm runs alike
        return {k: v for k, v in settings.items() if k not in ("dataset", "checkpoint")}

    def tasks(settings: dict[str, Any]) -> tuple[str, set[str]]:
        base, kept = task_filter(str(settings.get("dataset", "")))
        return base, set(kept)

    first = parts[0]
    same = arm(first.settings)
    base, seen = tasks(first.settings)
    for part in parts[1:]:
        other = arm(part.settings)
        diff = sorted(k for k in set(other) | set(same) if other.get(k) != same.get(k))
        if diff:
            raise ValueError(f"{arg}: {run_dir}: folds {first.fold} and {part.fold} ran different settings "
                             f"({', '.join(diff)}), so they are not one arm")
        part_base, part_tasks = tasks(part.settings)
        if part_base != base or not part_tasks or not seen or part_tasks & seen:
            raise ValueError(f"{arg}: {run_dir}: fold {part.fold} does not run other tasks of the same data than "
                             "the folds before it, so they cannot be pooled")
        seen |= part_tasks


def _load_folded(run_dir: Path, folds: list[tuple[str, Path]], label: str | None, *, name: str | None,
                 train_seed: int | None, variant: str, arg: str) -> Arm:
    """An arm run once per fold, pooled: the folds' sessions numbered fold after fold, with a ``fold`` column
    (see :class:`~simulator.arms.FoldPart`)."""
    parts: list[FoldPart] = []
    all_sessions, all_steps, configs = [], [], []
    first = 0
    for fold, d in folds:
        sessions, steps, config = _read_run(d, arg)
        n = int(sessions["session"].max()) + 1
        parts.append(FoldPart(fold, d, first, n, dict(config.get("settings", {}))))
        all_sessions.append(sessions.assign(session=sessions["session"] + first, fold=fold))
        all_steps.append(steps.assign(session=steps["session"] + first))
        configs.append(config)
        first += n
    _check_poolable(run_dir, parts, arg)
    config = json.loads(json.dumps(configs[0]))  # a deep copy of the first fold's, pooled below
    config["settings"] = {**config.get("settings", {}), "dataset": task_filter(str(parts[0].settings.get("dataset", "")))[0],
                          "checkpoint": _pooled_checkpoint(parts)}
    config["folds"] = [{"fold": p.fold, "run_dir": str(p.run_dir), "first_session": p.first, "sessions": p.n,
                        "dataset": p.settings.get("dataset"), "checkpoint": p.settings.get("checkpoint"),
                        "method": c.get("method", {})} for p, c in zip(parts, configs)]
    sessions = pd.concat(all_sessions, ignore_index=True).sort_values(list(KEY_COLUMNS), kind="stable")
    steps = pd.concat(all_steps, ignore_index=True).sort_values(["session", "iteration"], kind="stable")
    return Arm(
        label=label if label is not None else run_dir.resolve().name, run_dir=run_dir, config=config,
        sessions=sessions.reset_index(drop=True), steps=steps.reset_index(drop=True), name=name or "",
        train_seed=train_seed, variant=variant or "default", parts=parts,
    )


def load_study_results(path: str | os.PathLike) -> tuple[dict[str, Any], list[Arm]]:
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
            folds=list(spec.get("folds") or {}),
        )
        arm.reference = str(spec.get("reference") or "")
        arm.base = str(spec.get("base") or label)
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
        study, arms = load_study_results(paths[0])
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


def session_keys(arm: Arm) -> np.ndarray:
    return arm.sessions[list(KEY_COLUMNS)].astype(str).to_numpy()


def check_paired(arms: Sequence[Arm], references: Mapping[str, str] | None = None) -> None:
    """Paired arms must hold the same sessions (same (session, image, target) keys).

    Without ``references`` every arm is paired with the first; with it, each arm with its reference
    (``{label: reference label}``), so arms of other starts (a human start runs one session per
    annotator of an image, a simulated start one per image) may hold other sessions, and even other
    images (a capped ``n_sessions`` reaches fewer images with the human start): see
    :func:`image_set_warning`.
    """
    if not arms:
        return
    by_label = {a.label: a for a in arms}
    if references is None:
        pairs = [(arm, arms[0]) for arm in arms[1:]]
    else:
        pairs = [(arm, by_label[references[arm.label]]) for arm in arms
                 if references.get(arm.label, arm.label) != arm.label and references[arm.label] in by_label]
    keys = {a.label: session_keys(a) for a in arms}
    for arm, ref in pairs:
        k, rk = keys[arm.label], keys[ref.label]
        if k.shape != rk.shape or not (k == rk).all():
            raise ValueError(
                f"paths: arms {arm.label!r} ({len(k)} sessions) and {ref.label!r} ({len(rk)} sessions) "
                "ran on different sessions (session, image, target), so they cannot be paired; run them with "
                "the same dataset, n_sessions and seed"
            )


def image_set(arm: Arm) -> np.ndarray:
    return np.unique(arm.sessions["image"].astype(str).to_numpy())


def image_set_warning(arms: Sequence[Arm]) -> str | None:
    """A warning when the arms did not all run on the same images, else None."""
    if not arms:
        return None
    sets = {a.label: image_set(a) for a in arms}
    first = sets[arms[0].label]
    if all(v.shape == first.shape and (v == first).all() for v in sets.values()):
        return None
    counts = ", ".join(f"{lab!r}: {len(v)}" for lab, v in sets.items())
    return ("the arms did not all run on the same images (images per arm: " + counts + "; a capped n_sessions "
            "reaches fewer images with the human start, which runs one session per annotator), so their rows of "
            "summary.csv are over different images; each comparison pairs an arm with a reference on the same "
            "sessions, and starts.csv uses the images common to a group's starts")

