"""``probseg-select``: choose a real-image model family by the rule fixed in CHECKPOINTS.md, on a
fold's training tasks only.

Per fold and per row of the 2x2 design (``partial`` or ``complete`` K-candidate model), each family
(:data:`FAMILIES`: ``heads``, ``ssn``) is trained once per training task of the fold, at a fraction of
its full recipe (a quarter by the rule), with that task left out, and evaluated on the images of the
task left out: best-of-8 sessions of the robot protocol from the click start and the human start,
Dice after 5 clicks. The score of a family is the mean over the left-out tasks of the task's mean
(each image's score: the mean of its sessions, click and human starts pooled). The family with the
higher score wins; when the two are within one standard error of their paired difference (a
bootstrap that resamples images within each task, the same draws for both families), the one whose
candidates differ usefully (the mean, over click-start sessions, of the best candidate's Dice minus
the top-scored candidate's, at the first proposal) wins, and a tie there goes to ``heads`` (the
cheaper to sample).

The deterministic control is tuned the same way (``--row unet``): its two recipes (:data:`UNET_RECIPES`:
the loop with and without the superpixel pseudo-tasks) are compared by the same rule on its one answer
(``unet-complete``, policy ``first``), where a tie goes to the families' recipe. A third, ``pseudo-long``
(``pseudo`` at twice the steps and pool, :data:`RECIPE_SCALE`: the U-Net's step is cheap enough for that
to fit the 60-minute budget), is compared with ``pseudo`` by ``--families pseudo,pseudo-long`` (rule step
9), where a tie goes to ``pseudo``. A pair other than the row's default (:data:`DEFAULT_PAIRS`) keeps its
decision in its own file (``selection-pseudo-vs-pseudo-long.json``), beside the default pair's
``selection.json``, so both decisions share one folder's candidates.

Every candidate is trained by the documented ``probseg-train`` command (recorded with its figures),
so each can be reproduced alone; ``--jobs`` runs several side by side. Each candidate is evaluated as
soon as it is trained, and its evaluation kept beside its training record (``STEM.eval.json``,
committed with it): a rerun into the same ``--out`` keeps every candidate whose records say the same
commands made them, even on a fresh checkout without the weights, and the checkpoints already there;
a finished decision (``selection.json``) made by the same commands is kept as it is. No figure of the
fold's unseen tasks is read.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probseg.cli import ArgumentParser, cli_entry

__all__ = [
    "DEFAULT_PAIRS", "FAMILIES", "FINAL_SCORE_STEPS", "FULL_RECIPE", "RANKED_SCORE", "RECIPE_SCALE", "ROWS", "UNET_RECIPES",
    "Candidate", "Decision", "choose_family", "decision_name", "main",
    "is_decision", "paired_task_se", "row_choices", "run_selection", "shipped_family", "train_final",
]

# The families of issue 13 and their configuration per row of the 2x2 design.
FAMILIES: dict[str, dict[str, str]] = {
    "heads": {"partial": "medical-heads", "complete": "medical-heads-complete"},
    "ssn": {"partial": "medical-ssn", "complete": "medical-ssn-complete"},
}
# The deterministic control (the design's complete x 1 cell) is tuned as carefully as the families: its
# two recipes, the same loop and budget with and without the superpixel pseudo-tasks, compared by the
# same rule (``--row unet``); ``{recipe: its pseudo-task fraction}``.
UNET_RECIPES: dict[str, float] = {"pseudo": 0.5, "real": 0.0, "pseudo-long": 0.5}
UNET_CONFIG = "medical-unet-complete"
# Multiples of FULL_RECIPE's steps and pool (1 for any recipe not named). The U-Net's step takes 0.435 s on
# 2 quiet cores (--threads 2: 101 steps of a 2,000-pair pool in 60.8 s, 1 step in 17.2 s), against the
# families' 0.75 s, so its 3,500 steps use under half of the 60-minute budget; pseudo-long spends the
# budget: 7,000 steps and a 16,000-pair pool, about 53 minutes (CHECKPOINTS.md, rule step 9).
RECIPE_SCALE: dict[str, float] = {"pseudo-long": 2.0}
ROWS = ("partial", "complete", "unet")
# The pair each row compares unless --families names another.
DEFAULT_PAIRS: dict[str, tuple[str, str]] = {"partial": ("heads", "ssn"), "complete": ("heads", "ssn"),
                                              "unet": ("pseudo", "real")}
# The order of preference when everything else ties: heads are the cheaper to sample; the U-Net keeps the
# recipe the families train with, and the shorter of two schedules.
PREFERENCE = ("heads", "ssn", "pseudo", "real", "pseudo-long")


def _preference(family: str) -> int:
    """Rank of ``family`` in :data:`PREFERENCE` (an unknown name last)."""
    return PREFERENCE.index(family) if family in PREFERENCE else len(PREFERENCE)


# The full-budget recipe the fractions scale (steps and pool size): the interaction loop, batch 16, and
# half of the real images' targets replaced by pseudo-tasks' (superpixel regions), as ScribblePrompt trains.
# Sized to the 60-minute budget: medical-heads-complete took 75 s to build its 8,000-image pool and
# 0.75 s per step on 2 quiet cores (--threads 2), so 3,500 steps take about 45 minutes.
FULL_RECIPE = {"steps": 3500, "batch_size": 16, "n_pairs": 8000, "pseudo_fraction": 0.5}
# The final (full-budget) recipes of the scored families end with this many steps training the score head
# alone (probseg-train --score-steps; CHECKPOINTS.md, step 7). The candidates do not change with it, so
# the selection, which decides on best-of-8, trains without it.
FINAL_SCORE_STEPS = 500
# Then (CHECKPOINTS.md, step 8) a new score head is fitted to the frozen network: the `fine` head, squared
# error only, as many steps as the rule's experiment trained it; its checkpoint, "-ranked" beside the
# base's, is the fold's (and the shipped) model. The candidates, and so best-of-8, stay the base's.
RANKED_SCORE = {"score_head": "fine", "score_steps": 800}
STARTS = ("clicks", "human")
ENDPOINT = "dice_at_clicks_5"
N_BOOT = 1000
# The budget fraction the rule fixes for the candidates (CHECKPOINTS.md, step 2).
RULE_FRACTION = 0.25
# Iterations that reach 5 clicks from any start (the click start has 2, each iteration adds 1).
MAX_ITERS = 5


@dataclass(frozen=True)
class Candidate:
    """One training run of the selection: ``family``'s ``row`` model, ``left_out`` held out."""

    family: str
    row: str
    left_out: str
    config: str
    train_tasks: tuple[str, ...]
    pseudo_fraction: float = 0.5
    scale: float = 1.0

    @property
    def stem(self) -> str:
        return f"{self.family}-{self.row}-without-{self.left_out}"


@dataclass
class Decision:
    """What the rule chose, and the figures it chose by.

    Attributes:
        chosen: the family chosen.
        reason: ``score`` (a clear winner), ``diversity`` (within one standard error, decided by the
            useful diversity) or ``preference`` (tied on both).
        scores: ``{family: the mean over left-out tasks of the task mean Dice after 5 clicks}``.
        se: the bootstrap standard error of the difference of the two families' scores.
        diversity: ``{family: mean best-of-8 minus top-scored Dice at the first proposal}``.
        per_task: ``{family: {task: the task's mean Dice after 5 clicks}}``.
    """

    chosen: str
    reason: str
    scores: dict[str, float]
    se: float
    diversity: dict[str, float]
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)


def paired_task_se(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0
) -> float:
    """Standard error of ``score(a) - score(b)``, where a score is the mean over tasks of the task's
    mean over images, by a bootstrap that resamples images within each task (the same draws for
    ``a`` and ``b``, which hold the same images in the same order).

    Args:
        a, b: ``{task: float (n_images,)}``, each image's score.
        n_boot: resamples (>= 2); seed: seeds them.
    """
    if set(a) != set(b) or not a:
        raise ValueError(f"a, b: expected scores of the same tasks, got {sorted(a)} and {sorted(b)}")
    if n_boot < 2:
        raise ValueError(f"n_boot: must be >= 2, got {n_boot}")
    rng = np.random.default_rng(seed)
    diffs = np.zeros(n_boot)
    for task in sorted(a):
        x, y = np.asarray(a[task], dtype=np.float64), np.asarray(b[task], dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1 or x.size == 0:
            raise ValueError(f"a, b: task {task!r} needs the same non-empty images in both, got {x.shape} and {y.shape}")
        draws = rng.integers(0, x.size, size=(n_boot, x.size))
        diffs += (x[draws] - y[draws]).mean(axis=1)
    return float((diffs / len(a)).std(ddof=1))


def choose_family(
    per_image: Mapping[str, Mapping[str, np.ndarray]],
    diversity: Mapping[str, float],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Decision:
    """The rule of CHECKPOINTS.md for two families (see the module docstring).

    Args:
        per_image: ``{family: {task: float (n_images,)}}``, each left-out image's score, the images of
            a task in the same order for every family.
        diversity: ``{family: mean best-of-8 minus top-scored Dice}``.
    """
    families = sorted(per_image, key=_preference)
    if len(families) != 2 or set(diversity) != set(families):
        raise ValueError(f"per_image, diversity: expected the same two families, got {sorted(per_image)} and {sorted(diversity)}")
    per_task = {f: {t: float(np.mean(v)) for t, v in per_image[f].items()} for f in families}
    scores = {f: float(np.mean(list(per_task[f].values()))) for f in families}
    first, second = families
    se = paired_task_se(per_image[first], per_image[second], n_boot=n_boot, seed=seed)
    if abs(scores[first] - scores[second]) > se:
        chosen, reason = max(families, key=lambda f: scores[f]), "score"
    elif diversity[first] != diversity[second]:
        chosen, reason = max(families, key=lambda f: diversity[f]), "diversity"
    else:
        chosen, reason = first, "preference"
    return Decision(chosen, reason, scores, se, {f: float(diversity[f]) for f in families}, per_task)


def row_choices(row: str) -> dict[str, tuple[str, float]]:
    """``{family or recipe: (configuration, pseudo-task fraction)}`` compared in ``row``."""
    if row not in ROWS:
        raise ValueError(f"row: expected one of {', '.join(ROWS)}, got {row!r}")
    if row == "unet":
        return {name: (UNET_CONFIG, frac) for name, frac in UNET_RECIPES.items()}
    return {name: (rows[row], float(FULL_RECIPE["pseudo_fraction"])) for name, rows in FAMILIES.items()}


def candidates(fold_tasks: Sequence[str], row: str, families: Sequence[str] | None = None,
               left_out: Sequence[str] | None = None) -> list[Candidate]:
    """The training runs of one fold and row: each family (the ``unet`` row: each recipe) once per
    left-out training task."""
    choices = row_choices(row)
    families = DEFAULT_PAIRS[row] if families is None else tuple(families)
    if len(set(families)) != 2:
        raise ValueError(f"families: the rule compares two, got {', '.join(families) or 'none'}")
    unknown = [f for f in families if f not in choices]
    if unknown:
        raise ValueError(f"families: unknown family {unknown[0]!r} for row {row}; known: {', '.join(choices)}")
    held = list(fold_tasks) if left_out is None else list(left_out)
    bad = [t for t in held if t not in fold_tasks]
    if bad:
        raise ValueError(f"left_out: {bad[0]!r} is not a training task of the fold ({', '.join(fold_tasks)})")
    return [Candidate(f, row, t, choices[f][0], tuple(x for x in fold_tasks if x != t), choices[f][1],
                      RECIPE_SCALE.get(f, 1.0)) for f in families for t in held]


def decision_name(row: str, families: Sequence[str] | None = None) -> str:
    """The file a selection's decision goes to: ``selection.json`` for the row's default pair
    (:data:`DEFAULT_PAIRS`), ``selection-A-vs-B.json`` for another (``A``, ``B`` in :data:`PREFERENCE` order),
    so a second comparison in the same folder keeps the first's decision."""
    if families is None or set(families) == set(DEFAULT_PAIRS[row]):
        return "selection.json"
    a, b = sorted(families, key=_preference)
    return f"selection-{a}-vs-{b}.json"


def train_command(c: Candidate, out: Path, fraction: float, medscribble: str, device: str, threads: int,
                  seed: int = 0, score_steps: int = 0) -> list[str]:
    """The ``probseg-train`` arguments that train candidate ``c`` at ``fraction`` of :data:`FULL_RECIPE`
    (its steps and pool times ``c.scale``), then ``score_steps`` steps of its score head alone
    (``--score-steps``, left out when 0)."""
    steps = max(1, round(FULL_RECIPE["steps"] * fraction * c.scale))
    n_pairs = max(FULL_RECIPE["batch_size"], round(FULL_RECIPE["n_pairs"] * fraction * c.scale))
    return [
        "--config", c.config, "--dataset", "medical", "--interaction-loop", "--steps", str(steps),
        "--batch-size", str(FULL_RECIPE["batch_size"]), "--n-pairs", str(n_pairs), "--seed", str(seed),
        "--pseudo-fraction", str(c.pseudo_fraction),
        "--train-tasks", ",".join(c.train_tasks), "--medscribble", medscribble, "--eval-images", "0",
        "--device", device, "--threads", str(threads), "--no-progress",
        *(["--score-steps", str(score_steps)] if score_steps else []), "--out", str(out),
    ]


def ranked_path(checkpoint: str | Path) -> Path:
    """Where a scored final's refitted score head goes: ``A/complete-k.pt`` -> ``A/complete-k-ranked.pt``."""
    ckpt = Path(checkpoint)
    return ckpt.with_name(f"{ckpt.stem}-ranked.pt")


def refit_command(base: Path, out: Path, device: str, threads: int) -> list[str]:
    """The ``probseg-train --refit-score`` arguments that fit :data:`RANKED_SCORE`'s score head to ``base``."""
    return [
        "--refit-score", str(base), "--score-steps", str(RANKED_SCORE["score_steps"]),
        "--score-head", str(RANKED_SCORE["score_head"]), "--device", device, "--threads", str(threads),
        "--no-progress", "--out", str(out),
    ]


def _made_by(ckpt: Path, command: str) -> bool:
    """True when ``ckpt`` exists and its record says ``command`` trained it (an unreadable record: retrain)."""
    record = ckpt.with_suffix(".json")
    if not (ckpt.exists() and record.exists()):
        return False
    try:
        return json.loads(record.read_text()).get("command") == command
    except (OSError, ValueError, AttributeError):
        return False


def _train(c: Candidate, args: list[str], log: Path) -> None:
    """Run ``probseg-train`` in a subprocess (its own process: trainings may run side by side)."""
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "probseg.train_cli", *args], stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise ValueError(f"training {c.stem} failed ({log}): {tail[0]}")


def _evaluate(c: Candidate, checkpoint: Path, out: Path, medscribble: str, workers: int, n_sessions: int | None,
              progress: bool) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Best-of-8 sessions of ``c``'s checkpoint on its left-out task from each start; returns the session
    rows (task, image, start, endpoint) and, per click-start session, its first proposal's candidates:
    ``{"gain": best minus top-scored Dice (the rule's useful diversity), "best", "top", "mean": the best,
    the top-scored and the mean candidate's Dice (what a random pick gets)}``."""
    from .runner import RunSettings, run

    rows: list[dict[str, Any]] = []
    first: dict[str, list[float]] = {"gain": [], "best": [], "top": [], "mean": []}
    # The K-candidate rows by best-of-8, the U-Net by its one answer (as the studies run them).
    method, policy, k = {"partial": ("probseg", "best-of-k", 8), "complete": ("probseg-complete", "best-of-k", 8),
                         "unet": ("unet-complete", "first", 1)}[c.row]
    for start in STARTS:
        settings = RunSettings.from_dict({
            "dataset": f"medscribble:{medscribble}?tasks={c.left_out}", "n_sessions": n_sessions,
            "method": method, "checkpoint": str(checkpoint), "policy": policy, "k": k, "seed": 0, "start": start,
            "max_iters": MAX_ITERS,
        })
        steps, sessions, _ = run(settings, out=out / start, workers=workers, progress=progress)
        rows += [{"task": r.task, "image": r.image, "start": start, ENDPOINT: float(getattr(r, ENDPOINT))}
                 for r in sessions.itertuples()]
        if start == "clicks":
            for s in steps[steps["iteration"] == 1].itertuples():
                dices, scores = np.asarray(s.candidate_dice, dtype=float), np.asarray(s.candidate_scores, dtype=float)
                top = int(np.argmax(scores)) if np.isfinite(scores).all() else 0
                first["gain"].append(float(dices.max() - dices[top]))
                first["best"].append(float(dices.max()))
                first["top"].append(float(dices[top]))
                first["mean"].append(float(dices.mean()))
    return rows, first


def _evaluation_settings(medscribble: str, n_sessions: int | None) -> dict[str, Any]:
    """What an evaluation's figures depend on besides the checkpoint; a record made otherwise is redone."""
    return {"starts": list(STARTS), "endpoint": ENDPOINT, "max_iters": MAX_ITERS, "seed": 0,
            "n_sessions": n_sessions, "medscribble": Path(medscribble).name}


def _evaluation_path(ckpt: Path) -> Path:
    return ckpt.with_name(f"{ckpt.stem}.eval.json")


def _write_evaluation(path: Path, command: str, evaluation: Mapping[str, Any], rows: list[dict[str, Any]],
                      first: Mapping[str, list[float]]) -> None:
    """Keep a candidate's evaluation beside its training record, so that a later run (on a fresh checkout,
    where the uncommitted weights are gone) resumes without retraining it."""
    from probseg.atomic import atomic_write

    text = json.dumps({"command": command, "evaluation": dict(evaluation), "rows": rows, "first": dict(first)},
                      indent=1, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _read_evaluation(path: Path, command: str, evaluation: Mapping[str, Any]
                     ) -> tuple[list[dict[str, Any]], dict[str, list[float]]] | None:
    """A candidate's recorded evaluation ``(rows, first)`` when the same training command and evaluation made
    it and its training record is beside it; None otherwise (missing, unreadable or made otherwise)."""
    training = path.with_name(path.name.removesuffix(".eval.json") + ".json")
    try:
        record = json.loads(path.read_text())
        trained = json.loads(training.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(trained, dict) or trained.get("command") != command:
        return None
    if record.get("command") != command or record.get("evaluation") != dict(evaluation):
        return None
    rows, first = record.get("rows"), record.get("first")
    if not isinstance(rows, list) or not isinstance(first, dict):
        return None
    return rows, first


def _decided(path: Path, fold: str, row: str, fraction: float, n_sessions: int | None,
             commands: Mapping[str, str]) -> Decision | None:
    """The decision recorded in ``path`` when the same fold, row, budget and sessions made it with exactly
    these candidates' training commands (``{stem: command}``); None otherwise. A finished selection needs
    neither its weights nor its evaluations again (``--final`` reruns it to read its decision)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "decision" not in record:
        return None
    same = (record.get("fold"), record.get("row"), record.get("fraction"), record.get("n_sessions")) == \
        (fold, row, fraction, n_sessions)
    made = {f"{c.get('family')}-{c.get('row')}-without-{c.get('left_out')}": c.get("command")
            for c in record.get("candidates", []) if isinstance(c, dict)}
    if not same or made != dict(commands):
        return None
    try:
        return Decision(**record["decision"])
    except TypeError:
        return None


def run_selection(
    fold: str,
    row: str,
    out: str | Path,
    fraction: float = 0.25,
    families: Sequence[str] | None = None,
    left_out: Sequence[str] | None = None,
    medscribble: str | None = None,
    device: str = "auto",
    threads: int = 2,
    jobs: int = 1,
    workers: int = 2,
    n_sessions: int | None = None,
    n_boot: int = N_BOOT,
    progress: bool = True,
) -> Decision:
    """Train, evaluate and choose (see the module docstring); writes ``OUT/selection.json`` and
    ``OUT/selection.md`` and returns the decision.

    Args:
        fold: ``A`` or ``B`` (:data:`simulator.baselines.MEDSCRIBBLE_FOLDS`).
        row: ``partial`` or ``complete`` (the K-candidate families), or ``unet`` (the deterministic
            control's recipes, :data:`UNET_RECIPES`).
        families: the two compared (default: the row's two).
        out: the folder of the checkpoints, the evaluations and the decision (reruns resume there).
        fraction: of :data:`FULL_RECIPE`'s steps and pool (0.25 by the rule).
        left_out: a subset of the fold's tasks to leave out (default: all four; a subset is a partial
            run, reported as such).
        n_sessions: sessions per start and left-out task (default: all); a smaller number is a smoke test.
        jobs: trainings run side by side; workers: the evaluation's workers (see :func:`simulator.runner.run`).
    """
    from probseg.data.medscribble import DEFAULT_MEDSCRIBBLE

    from .baselines import MEDSCRIBBLE_FOLDS

    if fold not in MEDSCRIBBLE_FOLDS:
        raise ValueError(f"fold: expected one of {', '.join(MEDSCRIBBLE_FOLDS)}, got {fold!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: must be in (0, 1], got {fraction!r}")
    if jobs < 1:
        raise ValueError(f"jobs: must be >= 1, got {jobs}")
    medscribble = medscribble or DEFAULT_MEDSCRIBBLE
    if not Path(medscribble).is_dir():
        raise ValueError(f"medscribble: MedScribble folder not found: {medscribble}")
    todo = candidates(MEDSCRIBBLE_FOLDS[fold], row, families, left_out)
    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    commands: dict[str, str] = {}

    def say(line: str) -> None:
        if progress:  # a line per training: they run for minutes each, in subprocesses without bars
            print(f"probseg-select: {line}", file=sys.stderr, flush=True)

    evaluation = _evaluation_settings(medscribble, n_sessions)
    evaluated: dict[str, tuple[list[dict[str, Any]], dict[str, list[float]]]] = {}
    # Evaluations run one at a time (each starts its own workers), beside the other jobs' trainings.
    evaluating = threading.Lock()

    def train_one(c: Candidate) -> None:
        ckpt = out / "checkpoints" / f"{c.stem}.pt"
        args = train_command(c, ckpt, fraction, medscribble, device, threads)
        commands[c.stem] = command = "probseg-train " + shlex.join(args)
        kept = _read_evaluation(_evaluation_path(ckpt), command, evaluation)
        if kept is not None:
            # Its evaluation is on record (committed): neither the weights nor a rerun are needed.
            say(f"{c.stem}: kept (trained and evaluated by the same commands before)")
            evaluated[c.stem] = kept
            return
        if _made_by(ckpt, command):
            say(f"{c.stem}: kept (trained by the same command before)")
        else:
            say(f"{c.stem}: training ({ckpt.with_suffix('.log')})")
            t0 = time.perf_counter()
            _train(c, args, out / "checkpoints" / f"{c.stem}.log")
            say(f"{c.stem}: trained in {(time.perf_counter() - t0) / 60:.1f} min")
        with evaluating:
            say(f"{c.stem}: evaluating")
            result = _evaluate(c, ckpt, out / "runs" / c.stem, medscribble, workers, n_sessions, progress)
        _write_evaluation(_evaluation_path(ckpt), command, evaluation, *result)
        evaluated[c.stem] = result

    planned = {c.stem: "probseg-train " + shlex.join(train_command(c, out / "checkpoints" / f"{c.stem}.pt", fraction,
                                                                   medscribble, device, threads)) for c in todo}
    decided = out / decision_name(row, families)
    done = _decided(decided, fold, row, fraction, n_sessions, planned)
    if done is not None:
        say(f"fold {fold}, row {row}: decided before by the same commands ({decided}): kept")
        return done
    say(f"fold {fold}, row {row}: {len(todo)} candidates, {jobs} at a time")
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(train_one, todo))

    families = tuple(dict.fromkeys(c.family for c in todo))
    per_image: dict[str, dict[str, np.ndarray]] = {f: {} for f in families}
    gains: dict[str, list[float]] = {f: [] for f in families}
    records = []
    for c in todo:
        rows, first = evaluated[c.stem]
        by_image: dict[str, list[float]] = {}
        for r in rows:
            by_image.setdefault(str(r["image"]), []).append(r[ENDPOINT])
        images = sorted(by_image)
        per_image[c.family][c.left_out] = np.array([np.mean(by_image[i]) for i in images])
        gains[c.family] += first["gain"]
        metrics = json.loads((out / "checkpoints" / f"{c.stem}.json").read_text()).get("metrics", {})
        records.append({**asdict(c), "command": commands[c.stem], "images": len(images), "sessions": len(rows),
                        ENDPOINT: float(np.mean([r[ENDPOINT] for r in rows])),
                        "diversity_gain": float(np.mean(first["gain"])),
                        **{f"first_{k}_dice": float(np.mean(first[k])) for k in ("best", "top", "mean")},
                        "train_minutes": round(float(metrics.get("train_seconds", float("nan"))) / 60, 1)})
    decision = choose_family(per_image, {f: float(np.mean(g)) for f, g in gains.items()}, n_boot=n_boot)
    partial_run = left_out is not None and set(left_out) != set(MEDSCRIBBLE_FOLDS[fold])
    result = {"fold": fold, "row": row, "fraction": fraction, "recipe": FULL_RECIPE, "complete_run": not partial_run,
              "n_sessions": n_sessions, "decision": asdict(decision), "candidates": records}
    decided.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    decided.with_suffix(".md").write_text(_markdown(result))
    return decision


def is_decision(record: Mapping[str, Any]) -> bool:
    """True when a selection ran as the rule says: every training task left out, the quarter budget, every
    image (not a smoke test); only such a selection decides what trains at the full budget."""
    return bool(record.get("complete_run")) and record.get("n_sessions") is None and \
        float(record.get("fraction", 0)) == RULE_FRACTION


def _read_selection(folder: Path, arg: str, name: str = "selection.json") -> dict[str, Any]:
    """A finished selection's decision file ``name`` (:func:`decision_name`) that is a decision
    (:func:`is_decision`); ``ValueError`` naming ``arg`` otherwise."""
    path = Path(folder) / name
    try:
        record = json.loads(path.read_text())
    except OSError:
        raise ValueError(f"{arg}: {path} not found; run probseg-select for that fold and row first") from None
    except ValueError:
        raise ValueError(f"{arg}: {path} is not valid JSON") from None
    if not isinstance(record, dict) or "decision" not in record:
        raise ValueError(f"{arg}: {path} is not a selection's record")
    if not is_decision(record):
        raise ValueError(f"{arg}: {path} is a partial run or a smoke test (a subset of tasks left out, another "
                         f"fraction than {RULE_FRACTION:g} or capped sessions), not a decision")
    return record


def shipped_family(records: Sequence[Mapping[str, Any]]) -> str:
    """Step 4 of the rule: the family both folds chose, else the one with the higher score summed over folds
    (a tie there goes by :data:`PREFERENCE`)."""
    rows = {r["row"] for r in records}
    if len(records) < 1 or len(rows) != 1:
        raise ValueError(f"selection: expected the decisions of one row, got rows {sorted(rows)}")
    chosen = {r["decision"]["chosen"] for r in records}
    if len(chosen) == 1:
        return chosen.pop()
    total: dict[str, float] = {}
    for r in records:
        for family, score in r["decision"]["scores"].items():
            total[family] = total.get(family, 0.0) + float(score)
    best = max(total.values())
    return min((f for f, v in total.items() if v == best), key=_preference)


def train_final(
    row: str,
    family: str,
    train_tasks: Sequence[str],
    checkpoint: str | Path,
    medscribble: str,
    device: str = "auto",
    threads: int = 2,
    fraction: float = 1.0,
) -> Path:
    """Train ``family``'s ``row`` recipe at ``fraction`` (1: the full budget; a scored family's with the
    :data:`FINAL_SCORE_STEPS` score-head steps after it) on ``train_tasks`` into
    ``checkpoint`` (a ``.pt`` path; its record and log beside it) by its ``probseg-train`` command, kept
    when that very command made it before. The file is named for the row, not the family
    (``A/complete-k.pt``), so a study names each fold's model alike whichever family the fold chose.
    A scored row's network then gets the score head of :data:`RANKED_SCORE` (``probseg-train
    --refit-score``) in :func:`ranked_path` (``A/complete-k-ranked.pt``), kept likewise.

    Returns the model's path: the ranked checkpoint for a scored row, ``checkpoint`` for the U-Net.
    """
    choices = row_choices(row)
    if family not in choices:
        raise ValueError(f"family: {family!r} is not one of row {row}'s ({', '.join(choices)})")
    config, pseudo = choices[family]
    c = Candidate(family, row, "", config, tuple(train_tasks), pseudo, RECIPE_SCALE.get(family, 1.0))
    ckpt = Path(checkpoint)
    if ckpt.suffix != ".pt":
        raise ValueError(f"final: expected a .pt file to write, got {str(ckpt)!r}")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    args = train_command(c, ckpt, fraction, medscribble, device, threads,
                         score_steps=0 if row == "unet" else FINAL_SCORE_STEPS)
    if not _made_by(ckpt, "probseg-train " + shlex.join(args)):
        _train(c, args, ckpt.with_suffix(".log"))
    if row == "unet":
        return ckpt
    ranked = ranked_path(ckpt)
    args = refit_command(ckpt, ranked, device, threads)
    if not _made_by(ranked, "probseg-train " + shlex.join(args)):
        _train(c, args, ranked.with_suffix(".log"))
    return ranked


def _first_cell(record: Mapping[str, Any]) -> str:
    """``best / top-scored / mean candidate`` Dice of a candidate's first proposals (– in older records)."""
    values = [record.get(f"first_{k}_dice") for k in ("best", "top", "mean")]
    return " / ".join("–" if v is None else f"{float(v):.3f}" for v in values)


def _markdown(result: dict[str, Any]) -> str:
    d = result["decision"]
    unet = result["row"] == "unet"
    evaluated = "the U-Net's one answer" if unet else "best-of-8"
    lines = [
        f"# {'Recipe' if unet else 'Family'} selection: fold {result['fold']}, {result['row']} row",
        "",
        f"Rule: CHECKPOINTS.md (leave one training task out, {result['fraction']:g} of the recipe "
        f"{result['recipe']}"
        + "".join(f", {f}'s steps and pool x{RECIPE_SCALE[f]:g}" for f in result["decision"]["scores"] if f in RECIPE_SCALE)
        + ", Dice after 5 clicks, "
        f"{evaluated}, click and human starts pooled).",
        "" if is_decision(result) else "**A partial run or a smoke test (a subset of tasks left out, another "
                                       "fraction or capped sessions): not a decision.**",
        "",
        f"| {'recipe' if unet else 'family'} | left out | train min | images | sessions | Dice@5 clicks | "
        f"{'(one answer: no candidates)' if unet else 'best-of-8 minus top-scored'} | first proposal (clicks): "
        "best / top-scored / mean candidate | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["candidates"]:
        lines.append(f"| {r['family']} | {r['left_out']} | {r['train_minutes']} | {r['images']} | {r['sessions']} | "
                     f"{r[ENDPOINT]:.3f} | {r['diversity_gain']:.3f} | {_first_cell(r)} | `{r['command']}` |")
    lines += ["", f"Scores: {', '.join(f'{f} {v:.3f}' for f, v in d['scores'].items())}; standard error of the "
              f"difference {d['se']:.3f}; useful diversity: "
              f"{', '.join(f'{f} {v:.3f}' for f, v in d['diversity'].items())}.",
              f"**Chosen: {d['chosen']}** (by {d['reason']}).", ""]
    return "\n".join(lines)


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="probseg-select",
        description="Choose the real-image model family of one fold and row of the 2x2 design by the rule of "
                    "CHECKPOINTS.md: train each family with each training task left out, at a fraction of its "
                    "recipe, and compare them on the left-out tasks (training tasks only).",
    )
    p.add_argument("--fold", default=None, help="A (trains on ACDC, BTCV, HipXRay, STARE) or B (the other four); "
                                                 "required unless --ship")
    p.add_argument("--row", required=True, help="the design's row: partial or complete (K-candidate families: "
                                                 "heads, ssn), or unet (the U-Net's recipes: pseudo, real, "
                                                 "pseudo-long)")
    p.add_argument("--out", default=None, help="folder of the checkpoints, evaluations and decision (reruns resume); "
                                                "required unless --ship")
    p.add_argument("--fraction", type=float, default=0.25, help=f"of the full recipe {FULL_RECIPE}")
    p.add_argument("--families", default=None,
                   help="the two compared (default: heads,ssn; the unet row: pseudo,real); another pair's decision "
                        "goes to selection-A-vs-B.json beside selection.json (--final and --ship read that pair's)")
    p.add_argument("--left-out", default=None, help="comma-separated subset of the fold's tasks to leave out "
                                                    "(default: all four; a subset is a partial run, not a decision)")
    p.add_argument("--medscribble", default=None, help="MedScribble folder (default: ../shared/medscribble)")
    p.add_argument("--device", default="auto", help="where each candidate trains: cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=2, help="torch threads per training")
    p.add_argument("--jobs", type=int, default=1, help="trainings run side by side")
    p.add_argument("--workers", type=int, default=2, help="the evaluation's workers (probseg-simulate --workers)")
    p.add_argument("--n-sessions", type=int, default=None,
                   help="sessions per start and left-out task (default: all; fewer: a smoke test)")
    p.add_argument("--final", default=None, metavar="PT",
                   help="then train the chosen recipe at the full budget on all the fold's training tasks into "
                        "this file (the fold's checkpoint, e.g. results/medscribble/checkpoints/A/complete-k.pt)")
    p.add_argument("--ship", default=None, metavar="SEL_A,SEL_B",
                   help="instead of selecting: read the row's selections of both folds (their --out folders), "
                        "take the family by step 4 of the rule and train it at the full budget on all eight tasks "
                        "into --final (the shipped checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


@cli_entry("probseg-select")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-select``."""
    a = _parser().parse_args(argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    from probseg.data.medscribble import DEFAULT_MEDSCRIBBLE

    from .baselines import MEDSCRIBBLE_FOLDS

    medscribble = a.medscribble or DEFAULT_MEDSCRIBBLE
    pair = split(a.families) if a.families else None
    if a.ship is not None:
        if a.final is None:
            raise ValueError("final: --ship needs --final PT, the shipped checkpoint's file")
        if not Path(medscribble).is_dir():
            raise ValueError(f"medscribble: MedScribble folder not found: {medscribble}")
        if pair is not None:
            candidates([], a.row, pair, [])  # checks the pair names the row's families
        records = [_read_selection(Path(d), "ship", decision_name(a.row, pair)) for d in split(a.ship)]
        if sorted(r["fold"] for r in records) != sorted(MEDSCRIBBLE_FOLDS):
            raise ValueError(f"ship: expected one selection per fold ({', '.join(MEDSCRIBBLE_FOLDS)}), got "
                             f"{', '.join(r['fold'] for r in records)}")
        if any(r["row"] != a.row for r in records):
            raise ValueError(f"ship: the selections are not all of row {a.row}")
        family = shipped_family(records)
        tasks = [t for f in sorted(MEDSCRIBBLE_FOLDS) for t in MEDSCRIBBLE_FOLDS[f]]
        ckpt = train_final(a.row, family, tasks, a.final, medscribble, a.device, a.threads)
        print(json.dumps({"shipped": family, "checkpoint": str(ckpt)}))
        return 0
    for name in ("fold", "out"):
        if getattr(a, name) is None:
            raise ValueError(f"{name}: --{name} is required (unless --ship)")
    if a.final is not None:
        # Checked before hours of training, not after: what --final needs of the selection.
        if Path(a.final).suffix != ".pt":
            raise ValueError(f"final: expected a .pt file to write, got {a.final!r}")
        if a.left_out or a.n_sessions is not None or a.fraction != RULE_FRACTION:
            raise ValueError("final: trains on a decision only; drop --left-out, --n-sessions and --fraction")
    decision = run_selection(
        a.fold, a.row, a.out, fraction=a.fraction, families=pair,
        left_out=split(a.left_out) if a.left_out else None, medscribble=a.medscribble, device=a.device,
        threads=a.threads, jobs=a.jobs, workers=a.workers, n_sessions=a.n_sessions, progress=not a.no_progress,
    )
    print((Path(a.out) / decision_name(a.row, pair)).with_suffix(".md").read_text())
    print(json.dumps({"chosen": decision.chosen, "reason": decision.reason, "scores": decision.scores}))
    if a.final is not None:
        _read_selection(Path(a.out), "final", decision_name(a.row, pair))  # a partial run or a smoke test is not a decision to train on
        ckpt = train_final(a.row, decision.chosen, MEDSCRIBBLE_FOLDS[a.fold], a.final, medscribble, a.device, a.threads)
        print(json.dumps({"final": decision.chosen, "checkpoint": str(ckpt)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
