"""A study's definition: its TOML schema, parsed and validated into a :class:`Study` of :class:`ArmSpec`.

Nothing here runs an arm (that is :mod:`simulator.study`). A study is a TOML file (the shipped ones are in ``studies/``) that fixes, before anything runs, the
dataset, the arms (method x policy x K x start x protocol setting), the sessions and seeds, the
effort constants, the reference arm and the primary endpoint. :func:`run_study` runs every arm through
:func:`simulator.runner.run` into ``OUT/runs/<arm>/`` (resumable: a finished arm is not rerun), writes
``OUT/study.json`` (the resolved study) and then the report (:mod:`simulator.report`).

Schema (every key but ``name`` and ``arms``/``reproduce`` is optional)::

    name = "noisy-annotator"              # the study's name (also the default output folder)
    description = "one line"              # shown by `probseg-study list`
    notes = "free text"                   # shown at the top of the report
    dataset = "disks"                     # any dataset simulator.datasets.make_dataset accepts
    train_tasks = ["ACDC", "BTCV"]        # real data: the tasks the models were trained on; the
                                          #   study refuses a dataset that includes one of them
    [folds]                               # or cross-validation folds (medscribble datasets): each names
    A = ["ACDC", "BTCV", "HipXRay", "STARE"]  # its training tasks and is evaluated on the dataset's
    B = ["CAMUS", "OASIS", "OCTA500", "WBC"]  #   other tasks, so every task is unseen by exactly one fold;
                                          #   every arm runs once per fold (a model arm's checkpoint
                                          #   names the fold's model: "ckpts/{fold}/medical.pt") and
                                          #   the report pools the folds
    sessions = 1000                       # sessions per arm (with [folds]: per fold) (default: the dataset's)
    seed = 0                              # session seed: every arm sees the same images and targets
    reference = "unet-complete"           # the label of the arm every other arm is compared with
    primary_endpoint = "noc_90"           # fixed before the study runs
    secondary_metrics = ["dice_auc_clicks"]  # reported beside the default ones (any ENDPOINTS name)
    thresholds = [0.85, 0.90]             # Dice thresholds reported (subset of 0.80, 0.85, 0.90)
    quick_sessions = 6                    # --quick: sessions per arm
    quick_max_iters = 5                   # --quick: iterations per session (at most)

    [protocol]                            # defaults of every arm (simulator.runner.RunSettings fields)
    start = "clicks"; max_iters = 20; corrections_per_iter = 1; correction_rule = "ritm"
    brush_radius = 1; pending_as_errors = false; allow_reject = true
    acceptance = "no-worse-dice"; fallback = "hand-in"; early_stop = true  # stop_at = 0.9 (optional)

    [effort]                              # seconds, see simulator.metrics.EffortModel
    c_click = 2.45; c_inspect = 1.35; b_choose = 0.15
    # or: file = "effort.json"            # constants fitted to people (probseg-annotate fit-effort)

    [bootstrap]
    n_boot = 2000; seed = 0

    [training]                            # optional: repeat the model arms over training seeds
    seeds = [0, 1, 2]                     # seed 0 = the shipped checkpoints; for the others each
    retrain = ["disks", "disks-complete"] #   listed checkpoint is retrained by the study with its
                                          #   recorded settings and that seed, into OUT/checkpoints/

    [[variants]]                          # optional: every arm runs under every variant
    name = "3-corrections"; corrections_per_iter = 3

    [[arms]]
    label = "probseg best-of-{k}"         # {field} is replaced by the arm's value
    method = "probseg"; policy = "best-of-k"  # a registered name or module.path:factory (simulator.plugins)
    k = [1, 2, 4, 8, 16]                  # a list expands into one arm per value (all lists: product)

    [reproduce]                           # optional: the paper's reproduction (probseg.evaluate)
    checkpoints = ["disks-paper", "disks"]; n_images = 1000; ks = [1, 2, 4, 8, 16]; seed = 0

An arm under several variants is labelled ``"<label> | <variant>"``; under several training seeds,
``"<label> | seed <s>"``. The report compares each arm with the reference arm of the same variant and
training seed (a reference without a checkpoint, such as the random walker, serves every seed).
"""

from __future__ import annotations

import copy
import itertools
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .datasets import DataNotFound, make_dataset, missing_data, task_filter, with_tasks
from .methods import METHODS
from .metrics import DICE_THRESHOLDS, EffortModel
from .policies import POLICIES
from .runner import RunSettings
from .setting import settings_of

__all__ = [
    "ENDPOINTS",
    "STUDIES_DIR",
    "ArmSpec",
    "Study",
    "find_study",
    "fold_dataset",
    "list_studies",
    "parse_study",
    "quick_study",
    "read_study",
    "slug",
]

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"

ENDPOINTS = (
    "noc_80", "noc_85", "noc_90", "noi_80", "noi_85", "noi_90",
    "dice_at_clicks_3", "dice_at_clicks_5", "dice_at_clicks_10",
    "dice_at_iter_1", "dice_at_iter_5", "dice_at_iter_10", "dice_at_iter_20",
    "dice_auc", "dice_auc_clicks", "final_dice", "final_hd95", "effort_s",
)

_TOP_KEYS = {
    "name", "description", "notes", "dataset", "train_tasks", "sessions", "seed", "reference", "primary_endpoint",
    "thresholds", "quick_sessions", "quick_max_iters", "protocol", "effort", "bootstrap", "training",
    "variants", "arms", "reproduce", "folds", "secondary_metrics",
}
# The keys come from the run settings' fields (simulator.runner.RunSettings and the records it nests),
# grouped as probseg-simulate groups its options: [protocol] and [effort] take their group's fields, an
# arm its group's and the protocol's, except those the study sets once at its top level.
_SETTINGS = {s.name: s for s in settings_of(RunSettings)}
_STUDY_LEVEL = ("dataset", "n_sessions", "seed")  # the study's dataset, sessions and seed
_PROTOCOL_KEYS = tuple(name for name, s in _SETTINGS.items() if s.group == "protocol")
_EFFORT_KEYS = tuple(name for name, s in _SETTINGS.items() if s.group == "effort")
_ARM_KEYS = tuple(name for name, s in _SETTINGS.items()
                  if (s.group == "arm" and name not in _STUDY_LEVEL) or s.group == "protocol")
# What a TOML value of each setting type must be (TOML has no None: an optional setting is left out).
_TOML_TYPES: dict[type, tuple[type | tuple[type, ...], str]] = {
    int: (int, "an integer"), float: ((int, float), "a number"), bool: (bool, "true or false"), str: (str, "a string"),
}
_REPRODUCE_KEYS = {"checkpoints", "n_images", "ks", "seed", "figure"}
_SLUG = re.compile(r"[^A-Za-z0-9.=_-]+")


@dataclass(frozen=True)
class ArmSpec:
    """One resolved arm: a label, the run settings, and where its run lives.

    Attributes:
        label: unique within the study.
        name: the arm's label without the training seed (groups one arm over seeds).
        variant: the protocol variant's name (``default`` when the study has none).
        train_seed: the training seed of its checkpoint, or None for methods without one.
        settings: the :class:`~simulator.runner.RunSettings` as a dict.
        run_dir: the run folder, relative to the study's output folder.
        base: the label as the study file gives it (before variant and seed are appended).
        reference: the label of the arm this one is compared with: the study's reference arm
            under the same variant and training seed.
        folds: ``{fold: the run settings of that fold}`` for a study with cross-validation folds (the
            fold's unseen tasks as the dataset, the fold's checkpoint), each run into
            ``run_dir/fold-<fold>``; empty otherwise (the arm is one run, ``settings``, into ``run_dir``).
    """

    label: str
    name: str
    variant: str
    train_seed: int | None
    settings: dict[str, Any]
    run_dir: str
    base: str = ""
    reference: str = ""
    folds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Study:
    """A parsed and validated study definition (see the module docstring for the schema)."""

    name: str
    path: Path | None
    raw: dict[str, Any]
    description: str = ""
    notes: str = ""
    dataset: str = "disks"
    train_tasks: list[str] = field(default_factory=list)
    sessions: int | None = None
    seed: int = 0
    reference: str | None = None
    primary_endpoint: str = "noc_90"
    secondary_metrics: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=lambda: [0.85, 0.90])
    quick_sessions: int = 6
    quick_max_iters: int = 5
    n_boot: int = 2000
    boot_seed: int = 0
    train_seeds: list[int] = field(default_factory=lambda: [0])
    retrain: list[str] = field(default_factory=list)
    reproduce: dict[str, Any] | None = None
    arms: list[ArmSpec] = field(default_factory=list)
    folds: dict[str, list[str]] = field(default_factory=dict)
    fold_datasets: dict[str, str] = field(default_factory=dict)

    def arm(self, label: str) -> ArmSpec:
        for a in self.arms:
            if a.label == label:
                return a
        raise ValueError(f"reference: no arm is labelled {label!r}; arms: {', '.join(a.label for a in self.arms)}")


def _err(path: str, msg: str) -> ValueError:
    return ValueError(f"{path}: {msg}")


def _check_keys(table: Any, allowed: Any, path: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _err(path, f"expected a table, got {type(table).__name__}")
    for key in table:
        if key not in allowed:
            raise _err(f"{path}.{key}" if path else key, f"unknown field; allowed: {', '.join(sorted(allowed))}")
    return table


def _typed(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    # TOML booleans are ints to Python; a flag must not pass as a number, nor a number as a flag.
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)))
    if not ok:
        raise _err(path, f"expected {what}, got {value!r}")
    return value


def _check_value(key: str, value: Any, path: str) -> None:
    registry = {"method": METHODS, "policy": POLICIES}.get(key)
    if registry is not None and isinstance(value, str):
        try:
            registry.load(value)  # a registered name or module:factory that imports
        except ValueError as exc:
            raise _err(path, str(exc).split(": ", 1)[1]) from None
    choices = _SETTINGS[key].choices
    if choices is not None and value not in choices:
        raise _err(path, f"unknown value {value!r}; allowed: {', '.join(map(str, choices))}")
    kind, what = _TOML_TYPES[_SETTINGS[key].type]
    _typed(value, kind, path, what)


def slug(label: str) -> str:
    """A label as a folder name: letters, digits, ".", "=", "_" and "-" only, lower case."""
    return _SLUG.sub("-", label).strip("-").lower() or "arm"


def read_study(source: str | Path) -> Study:
    """Parse and validate a study from a name (``studies/NAME.toml``) or a TOML path.

    Raises:
        ValueError: naming the field at fault and, where the field has a fixed set, the allowed values.
    """
    path = find_study(source)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_study(raw, path)


def _fitted_effort(effort: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """The constants of ``[effort] file = ...``, an effort file fitted to people's timings
    (``probseg-annotate fit-effort``); a relative path is read from the study file's folder."""
    if len(effort) > 1:
        raise _err("effort.file", "give the constants either as a fitted effort file or as c_click, c_inspect and "
                   "b_choose, not both")
    source = Path(_typed(effort["file"], str, "effort.file", "a path to an effort file (probseg-annotate fit-effort)"))
    if not source.is_absolute() and path is not None:
        source = Path(path).parent / source
    from .annotate.effort_fit import load_effort_file  # only studies that name a file need it

    try:
        fitted = load_effort_file(source)
    except ValueError as exc:
        raise _err("effort.file", str(exc).removeprefix("effort_model: ")) from None
    return {key: getattr(fitted, key) for key in _EFFORT_KEYS}


def parse_study(raw: dict[str, Any], path: Path | None = None) -> Study:
    """Validate a study given as a dict (the parsed TOML); see :func:`read_study`."""
    raw = copy.deepcopy(raw)
    _check_keys(raw, _TOP_KEYS, "")
    if "name" not in raw:
        raise _err("name", "missing; every study has a name")
    name = _typed(raw["name"], str, "name", "a string")
    if not name or slug(name) != name.lower():
        raise _err("name", f"use letters, digits, '.', '_' and '-' only, got {name!r}")
    study = Study(name=name, path=path, raw=raw)
    study.description = _typed(raw.get("description", ""), str, "description", "a string")
    study.notes = _typed(raw.get("notes", ""), str, "notes", "a string")
    study.dataset = _typed(raw.get("dataset", "disks"), str, "dataset", "a string")
    need = missing_data(study.dataset)
    if need is not None:
        raise DataNotFound(f"dataset: {need}")
    train_tasks = raw.get("train_tasks", [])
    if not isinstance(train_tasks, list) or not all(isinstance(t, str) for t in train_tasks):
        raise _err("train_tasks", f"expected a list of task names, got {train_tasks!r}")
    study.train_tasks = list(train_tasks)
    if "folds" in raw:
        if "train_tasks" in raw:
            raise _err("train_tasks", "a study with [folds] names each fold's training tasks there, not here")
        study.folds = _parse_folds(raw["folds"], study.dataset)
        study.fold_datasets = {f: fold_dataset(study.dataset, train) for f, train in study.folds.items()}
    if "sessions" in raw:
        study.sessions = _typed(raw["sessions"], int, "sessions", "an integer >= 1")
        if study.sessions < 1:
            raise _err("sessions", f"must be >= 1, got {study.sessions}")
    study.seed = _typed(raw.get("seed", 0), int, "seed", "an integer >= 0")
    if study.seed < 0:
        raise _err("seed", f"must be >= 0, got {study.seed}")
    study.primary_endpoint = raw.get("primary_endpoint", "noc_90")
    if study.primary_endpoint not in ENDPOINTS:
        raise _err("primary_endpoint", f"unknown metric {study.primary_endpoint!r}; allowed: {', '.join(ENDPOINTS)}")
    secondary = raw.get("secondary_metrics", [])
    if not isinstance(secondary, list) or any(m not in ENDPOINTS for m in secondary):
        raise _err("secondary_metrics", f"expected a list from {', '.join(ENDPOINTS)}, got {secondary!r}")
    study.secondary_metrics = list(dict.fromkeys(secondary))
    thresholds = raw.get("thresholds", [0.85, 0.90])
    if not isinstance(thresholds, list) or not thresholds or any(
        not isinstance(t, (int, float)) or round(float(t), 2) not in DICE_THRESHOLDS for t in thresholds
    ):
        raise _err("thresholds", f"expected a list from {', '.join(map(str, DICE_THRESHOLDS))}, got {thresholds!r}")
    study.thresholds = sorted(round(float(t), 2) for t in thresholds)
    for key in ("quick_sessions", "quick_max_iters"):
        if key in raw:
            value = _typed(raw[key], int, key, "an integer >= 1")
            if value < 1:
                raise _err(key, f"must be >= 1, got {value}")
            setattr(study, key, value)

    protocol = _check_keys(raw.get("protocol", {}), _PROTOCOL_KEYS, "protocol")
    for key, value in protocol.items():
        _check_value(key, value, f"protocol.{key}")
    effort = _check_keys(raw.get("effort", {}), (*_EFFORT_KEYS, "file"), "effort")
    if "file" in effort:
        effort = _fitted_effort(effort, path)
    for key, value in effort.items():
        _typed(value, (int, float), f"effort.{key}", "a number >= 0")
    try:
        EffortModel(**effort)
    except ValueError as exc:
        raise _err("effort", str(exc)) from None
    boot = _check_keys(raw.get("bootstrap", {}), {"n_boot", "seed"}, "bootstrap")
    study.n_boot = _typed(boot.get("n_boot", 2000), int, "bootstrap.n_boot", "an integer >= 100")
    if study.n_boot < 100:
        raise _err("bootstrap.n_boot", f"must be >= 100, got {study.n_boot}")
    study.boot_seed = _typed(boot.get("seed", 0), int, "bootstrap.seed", "an integer >= 0")

    training = _check_keys(raw.get("training", {}), {"seeds", "retrain"}, "training")
    seeds = training.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise _err("training.seeds", f"expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _err("training.seeds", f"repeated seed in {seeds!r}")
    study.train_seeds = list(seeds)
    retrain = training.get("retrain", [])
    if not isinstance(retrain, list) or not all(isinstance(c, str) for c in retrain):
        raise _err("training.retrain", f"expected a list of shipped checkpoint names, got {retrain!r}")
    if len(study.train_seeds) > 1 and not retrain:
        raise _err("training.retrain", "several training seeds need the shipped checkpoints to retrain")
    study.retrain = list(retrain)
    if study.folds and len(study.train_seeds) > 1:
        raise _err("training.seeds", "a study with [folds] trains each fold's model itself; repeat it over "
                                     "training seeds with one study per seed")

    if "reproduce" in raw:
        study.reproduce = _parse_reproduce(raw["reproduce"])
    variants = _parse_variants(raw.get("variants", []))
    arms_raw = raw.get("arms", [])
    if not isinstance(arms_raw, list):
        raise _err("arms", "expected an array of tables ([[arms]])")
    if not arms_raw and study.reproduce is None:
        raise _err("arms", "a study needs at least one [[arms]] entry or a [reproduce] section")
    study.arms = _resolve_arms(study, arms_raw, protocol, effort, variants)
    if study.train_tasks and study.arms:
        seen = sorted(set(study.train_tasks) & set(make_dataset(study.dataset).session_tasks()))
        if seen:
            raise _err("dataset", f"includes the training task(s) {', '.join(seen)} listed in train_tasks; "
                                  "a study evaluates on unseen tasks only")
    if study.arms:
        labels = [a.label for a in study.arms]
        if "reference" not in raw:
            raise _err("reference", f"missing; name the arm every other arm is compared with, one of: {', '.join(labels)}")
        ref = _typed(raw["reference"], str, "reference", "an arm label")
        bases = sorted({a.base for a in study.arms})
        if ref not in bases:
            raise _err("reference", f"no arm is labelled {ref!r}; arms: {', '.join(bases)}")
        study.reference = ref
        study.arms = [replace(a, reference=_reference_of(a, study.arms, ref)) for a in study.arms]
    return study


def _parse_folds(table: Any, dataset: str) -> dict[str, list[str]]:
    """``{fold: its training tasks}``, checked: a MedScribble dataset without a task filter of its own, and
    every task of the dataset unseen by exactly one fold (each task is evaluated once, by the fold that
    never trained on it)."""
    from .datasets import make_dataset

    if not isinstance(table, dict) or not table:
        raise _err("folds", "expected a table of fold name = [its training tasks], e.g. A = [\"ACDC\", \"BTCV\"]")
    if not dataset.startswith("medscribble:") or task_filter(dataset)[1]:
        raise _err("folds", f"needs a medscribble:PATH dataset without ?tasks= (each fold picks its tasks), got {dataset!r}")
    tasks = set(make_dataset(dataset).session_tasks())
    folds: dict[str, list[str]] = {}
    for name, train in table.items():
        if slug(name) != name.lower() or "." in name or "=" in name:
            raise _err(f"folds.{name}", "a fold's name uses letters, digits, '_' and '-' only")
        if not isinstance(train, list) or not train or not all(isinstance(t, str) for t in train):
            raise _err(f"folds.{name}", f"expected a non-empty list of training task names, got {train!r}")
        unknown = sorted(set(train) - tasks)
        if unknown:
            raise _err(f"folds.{name}", f"{unknown[0]!r} is not a task of {dataset!r} (tasks: {', '.join(sorted(tasks))})")
        folds[str(name)] = list(train)
    for task in sorted(tasks):
        unseen_by = [f for f, train in folds.items() if task not in train]
        if len(unseen_by) != 1:
            which = "no fold" if not unseen_by else f"folds {', '.join(unseen_by)}"
            raise _err("folds", f"task {task!r} is unseen by {which}; every task must be evaluated by exactly one fold")
    return folds


def fold_dataset(dataset: str, train_tasks: list[str]) -> str:
    """A fold's dataset: ``dataset`` (``medscribble:PATH``) keeping the tasks not in ``train_tasks``."""
    from .datasets import make_dataset

    return with_tasks(dataset, [t for t in make_dataset(dataset).session_tasks() if t not in train_tasks])


def _fold_settings(study: Study, settings: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    """Per fold, the arm's run settings on that fold: its unseen tasks and, for a method with a checkpoint,
    the fold's own (the arm's ``checkpoint`` with ``{fold}`` filled in)."""
    if not study.folds:
        return {}
    method = settings["method"]
    ckpt = settings.get("checkpoint")
    has_default = METHODS[method].get("checkpoint") is not None
    if (ckpt is not None or has_default) and (not isinstance(ckpt, str) or "{fold}" not in ckpt):
        raise _err(f"{path}.checkpoint", f"method {method!r} needs each fold's own model in a study with [folds]: "
                   "give a checkpoint path holding {fold} (e.g. \"results/NAME/checkpoints/{fold}/medical.pt\")")
    out = {}
    for fold in study.folds:
        s = {**settings, "dataset": study.fold_datasets[fold]}
        if ckpt is not None:
            s["checkpoint"] = ckpt.replace("{fold}", fold)
        out[fold] = s
    return out


def _reference_of(arm: ArmSpec, arms: list[ArmSpec], ref: str) -> str:
    """The reference arm's label under ``arm``'s variant and training seed."""
    cands = [a for a in arms if a.base == ref and a.variant == arm.variant]
    for a in cands:
        if a.train_seed == arm.train_seed:
            return a.label
    # A reference without a checkpoint (train_seed None) serves every seed; a seeded reference
    # serves a seed-less arm through its first seed.
    return cands[0].label


def _parse_reproduce(table: Any) -> dict[str, Any]:
    table = _check_keys(table, _REPRODUCE_KEYS, "reproduce")
    ckpts = table.get("checkpoints", ["disks-paper", "disks"])
    if not isinstance(ckpts, list) or not ckpts or not all(isinstance(c, str) for c in ckpts):
        raise _err("reproduce.checkpoints", f"expected a non-empty list of checkpoint names or paths, got {ckpts!r}")
    n_images = _typed(table.get("n_images", 1000), int, "reproduce.n_images", "an integer in 1..1000")
    if not 1 <= n_images <= 1000:
        raise _err("reproduce.n_images", f"must be in 1..1000, got {n_images}")
    ks = table.get("ks", [1, 2, 4, 8, 16])
    if not isinstance(ks, list) or not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise _err("reproduce.ks", f"expected a list of integers >= 1, got {ks!r}")
    seed = _typed(table.get("seed", 0), int, "reproduce.seed", "an integer >= 0")
    figure = _typed(table.get("figure", True), bool, "reproduce.figure", "true or false")
    return {"checkpoints": ckpts, "n_images": n_images, "ks": sorted(set(ks)), "seed": seed, "figure": figure}


def _parse_variants(items: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(items, list):
        raise _err("variants", "expected an array of tables ([[variants]])")
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        path = f"variants[{i}]"
        item = _check_keys(item, ("name", *_PROTOCOL_KEYS), path)
        if "name" not in item:
            raise _err(f"{path}.name", "missing; every variant has a name")
        name = _typed(item["name"], str, f"{path}.name", "a string")
        for key, value in item.items():
            if key != "name":
                _check_value(key, value, f"{path}.{key}")
        out.append((name, {k: v for k, v in item.items() if k != "name"}))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise _err("variants", f"repeated variant name in {names}")
    return out or [("default", {})]


def _expand(arm: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The cartesian product over the arm's list-valued fields."""
    keys = [k for k, v in arm.items() if isinstance(v, list)]
    for k in keys:
        if not arm[k]:
            raise _err(f"{path}.{k}", "an empty list expands to no arm")
    combos = itertools.product(*(arm[k] for k in keys)) if keys else [()]
    return [{**arm, **dict(zip(keys, combo))} for combo in combos]


def _resolve_arms(
    study: Study,
    arms_raw: list[Any],
    protocol: dict[str, Any],
    effort: dict[str, Any],
    variants: list[tuple[str, dict[str, Any]]],
) -> list[ArmSpec]:
    arms: list[ArmSpec] = []
    for i, item in enumerate(arms_raw):
        path = f"arms[{i}]"
        item = _check_keys(item, ("label", *_ARM_KEYS), path)
        if "method" not in item:
            raise _err(f"{path}.method", f"missing; allowed: {', '.join(METHODS)}")
        for values in _expand(item, path):
            for key, value in values.items():
                if key != "label":
                    _check_value(key, value, f"{path}.{key}")
            label_tpl = values.get("label", "{method} {policy} K={k}")
            spec = {k: v for k, v in values.items() if k != "label"}
            base_settings = {"policy": "best-of-k", "k": 8, **protocol, **spec}
            try:
                base_label = str(label_tpl).format(**base_settings)
            except (KeyError, IndexError, ValueError) as exc:
                raise _err(f"{path}.label", f"cannot fill {label_tpl!r}: {exc}") from None
            method = spec["method"]
            ckpt = spec.get("checkpoint", METHODS[method].get("checkpoint"))
            seeded = ckpt in study.retrain and len(study.train_seeds) > 1
            for vname, overrides in variants:
                arm_settings = {**base_settings, **overrides}
                # A protocol field the arm sets itself wins over the variant only when the study has
                # no variants; with variants, the variant is the point of the comparison.
                if len(variants) == 1:
                    arm_settings.update({k: v for k, v in spec.items() if k in _PROTOCOL_KEYS})
                name = base_label if len(variants) == 1 else f"{base_label} | {vname}"
                for tseed in (study.train_seeds if seeded else [None]):
                    label = name if tseed is None or len(study.train_seeds) == 1 else f"{name} | seed {tseed}"
                    settings = {
                        "dataset": study.dataset, "n_sessions": study.sessions, "seed": study.seed,
                        **effort, **arm_settings,
                    }
                    if seeded:
                        # Seed 0 is the shipped checkpoint (trained with seed 0); others are trained here.
                        settings["checkpoint"] = ckpt if tseed == 0 else f"checkpoints/{ckpt}-seed{tseed}.pt"
                    try:
                        RunSettings.from_dict(settings).validate()
                    except (ValueError, TypeError) as exc:
                        raise _err(path, str(exc)) from None
                    arms.append(ArmSpec(label=label, name=name, variant=vname, train_seed=tseed, settings=settings,
                                        run_dir=f"runs/{slug(label)}", base=base_label,
                                        folds=_fold_settings(study, settings, path)))
    labels = [a.label for a in arms]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise _err("arms", f"two arms share the label {dup[0]!r}; give each a distinct label")
    dirs = [a.run_dir for a in arms]
    if len(set(dirs)) != len(dirs):
        raise _err("arms", "two arm labels map to the same run folder; make them differ in letters or digits")
    return arms


def find_study(source: str | Path) -> Path:
    """A study's TOML file: an existing path, or a name looked up in ``./studies`` then the shipped folder."""
    p = Path(source)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ValueError(f"study: no such file {p}")
        return p
    for folder in (Path("studies"), STUDIES_DIR):
        cand = folder / f"{source}.toml"
        if cand.is_file():
            return cand
    names = ", ".join(s.stem for s in list_studies()) or "none"
    raise ValueError(f"study: no study named {source!r}; shipped: {names}")


def list_studies() -> list[Path]:
    """The shipped study files, sorted by name."""
    return sorted(STUDIES_DIR.glob("*.toml")) if STUDIES_DIR.is_dir() else []


def quick_study(study: Study) -> Study:
    """The same study on a few sessions, few iterations and the first training seed: a smoke test."""
    q = copy.copy(study)
    keep_seed = study.train_seeds[0]
    q.arms = []
    for a in study.arms:
        if a.train_seed is not None and a.train_seed != keep_seed:
            continue
        def quick(settings: dict[str, Any]) -> dict[str, Any]:
            s = dict(settings)
            s["n_sessions"] = study.quick_sessions
            s["max_iters"] = min(int(s.get("max_iters", 20)), study.quick_max_iters)
            s["chunk_size"] = max(1, min(int(s.get("chunk_size", 20)), (study.quick_sessions + 1) // 2))
            return s

        q.arms.append(replace(a, settings=quick(a.settings), folds={f: quick(s) for f, s in a.folds.items()}))
    q.train_seeds = [keep_seed]
    q.n_boot = 200
    if study.reproduce is not None:
        q.reproduce = {**study.reproduce, "n_images": min(20, study.reproduce["n_images"])}
    return q
