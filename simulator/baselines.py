"""Tuning the classical baselines on training data only, and the tuned values the simulator uses.

The random walker's beta is chosen by :func:`tune_random_walker_beta` on images of the *training*
split: for disks the paper's 1,000 training images (never the held-out ones the sessions run on); for
MedScribble each fold's four training tasks (:data:`MEDSCRIBBLE_FOLDS`), so a run on a fold's unseen
tasks uses a walker tuned without them (:func:`walker_entry` finds the entry).

The choice is fixed before any test figure exists, by the one-standard-error rule over a bootstrap of
the training images (:func:`one_se_choice`): the smallest beta whose mean training score is within one
bootstrap standard error of the best mean, the error being that of the paired difference (every
beta runs on the same images). Smaller is simpler: beta scales how much the image's
gradients cut the walker's edges (beta -> 0 ignores the image and interpolates between the seeds), and
a smaller beta also gives a better-conditioned system. The single best score on 19 images is noisy;
the rule trades a difference the training images cannot tell apart for the more regular walker.

The walker is solved exactly (``bf``, see :class:`simulator.methods.RandomWalkerMethod`); several
solvers can still be scored (``--mode``), each walker keeping the solver of the chosen setting, with
settings ordered by solver (as given) then beta. ``probseg-tune-baselines`` reruns the search and
writes its entry of ``tuned_baselines.json`` beside this file, with the grid, the scores and the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probseg.cli import ArgumentParser, cli_entry
from probseg.data import make_disk_dataset, subset_mask
from probseg.data.disks import TRAIN_SEED

from .methods import RW_MODES, RandomWalkerMethod
from .metrics import carried_dice
from .policies import make_policy
from .session import SessionConfig, run_session

__all__ = [
    "MEDSCRIBBLE_FOLDS", "TUNED_PATH", "WalkerTuning", "main", "one_se_choice", "pick_solver", "pool_entries",
    "tune_disks", "tune_random_walker_beta", "tune_real", "tuned_beta", "tuned_mode", "tuning_from_scores",
    "walker_entry",
]

TUNED_PATH = Path(__file__).resolve().parent / "tuned_baselines.json"
DEFAULT_BETAS = (10.0, 30.0, 60.0, 130.0, 250.0, 500.0, 1000.0, 2000.0)
N_BOOT = 2000  # bootstrap resamples of the training images for the standard error
# MedScribble's two folds, by their TRAINING tasks: fold A tests on fold B's tasks and the reverse.
MEDSCRIBBLE_FOLDS = {"A": ("ACDC", "BTCV", "HipXRay", "STARE"), "B": ("CAMUS", "OASIS", "OCTA500", "WBC")}


def _table() -> dict:
    try:
        return json.loads(TUNED_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"rw_beta: no tuned value ({TUNED_PATH} unreadable: {exc}); pass rw_beta explicitly") from None


def _medscribble_tasks(dataset: str) -> set[str]:
    """The tasks a ``medscribble:PATH?tasks=A,B`` dataset keeps; empty for any other dataset."""
    from .datasets import task_filter

    return set(task_filter(dataset)[1])


def walker_entry(dataset: str) -> str:
    """The ``tuned_baselines.json`` entry a run on session dataset ``dataset`` takes its walker from.

    ``disks`` for the disks; for a MedScribble task filter whose tasks are all unseen by a fold (none
    of its training tasks), that fold's entry (``medical-A``, ``medical-B``); else ``medical``.
    """
    if dataset == "disks":
        return "disks"
    tasks = _medscribble_tasks(dataset)
    table = _table()
    for fold, train in MEDSCRIBBLE_FOLDS.items():
        if tasks and not tasks & set(train) and f"medical-{fold}" in table:
            return f"medical-{fold}"
    return "medical"


def tuned_beta(method: str, dataset: str = "disks") -> float:
    """The tuned beta of ``random-walker`` or ``random-walker-partial`` in entry ``dataset``."""
    try:
        return float(_table()[dataset][method]["beta"])
    except KeyError:
        raise ValueError(f"rw_beta: no tuned value for {method!r} on {dataset!r}; run probseg-tune-baselines") from None


def tuned_mode(method: str, dataset: str = "disks") -> str:
    """The solver ``tuned_beta`` was chosen with: the walker's own record, else the entry's, else ``cg_j``
    (the solver of the records written before the solver was recorded)."""
    try:
        entry = json.loads(TUNED_PATH.read_text())[dataset]
    except (OSError, ValueError, KeyError):
        return "cg_j"
    fallback = str(entry.get("mode", "cg_j"))
    own = entry.get(method)
    return str(own.get("mode", fallback)) if isinstance(own, dict) else fallback


@dataclass
class WalkerTuning:
    """One walker's tuning on training images.

    Attributes:
        chosen: the beta the one-standard-error rule keeps (:func:`one_se_choice`).
        best: the beta with the best mean score (ties: the earliest in the grid).
        means: ``{beta: mean score over images}``.
        se: ``{beta: bootstrap standard error of that mean's difference from the best mean}``.
        per_image: ``{beta: float64 (n_images,)}``, each image's score (its sessions' mean).
    """

    chosen: float
    best: float
    means: dict[float, float]
    se: dict[float, float]
    per_image: dict[float, np.ndarray]


def one_se_choice(per_image: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> tuple[int, np.ndarray, np.ndarray]:
    """The one-standard-error rule over a bootstrap of the images, on paired differences.

    Args:
        per_image: float (n_settings, n_images), each setting's score on each training image, the
            settings ordered from the simplest (most regularised) to the least.
        seed: seeds the bootstrap; n_boot: its resamples (the same image draws for every setting).
    Returns:
        ``(chosen index, means (n_settings,), standard errors (n_settings,))``. A setting's standard
        error is that of its mean's difference from the best mean: the standard deviation, over
        resamples of the images, of (its mean - the best setting's mean) on the same resample (0 for
        the best). The chosen setting is the first whose mean is >= the best mean minus its error.

    Paired, because every setting runs on the same images: the standard error of one setting's mean
    (0.06 in Dice on a fold's 19-20 training images) measures how hard the images are, not whether two
    settings differ, and dwarfs the whole beta curve (0.012 from beta 500 to 64,000 for the complete
    walker), so the unpaired rule kept whatever beta ended the grid.
    """
    scores = np.asarray(per_image, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"per_image: expected float (n_settings, n_images), got shape {scores.shape}")
    if n_boot < 2:
        raise ValueError(f"n_boot: must be >= 2, got {n_boot}")
    means = scores.mean(axis=1)
    best = int(np.argmax(means))
    draws = np.random.default_rng(seed).integers(0, scores.shape[1], size=(n_boot, scores.shape[1]))
    boot = scores[:, draws].mean(axis=2)  # (n_settings, n_boot)
    se = (boot - boot[best]).std(axis=1, ddof=1)
    chosen = int(np.flatnonzero(means >= means[best] - se)[0])
    return chosen, means, se


def session_score(steps: Sequence[dict], n_iters: int) -> float:
    """A tuning session's score: its mean Dice over ``n_iters`` iterations (a session handed in early
    keeps its last Dice), the area under its Dice curve, which still separates settings that all
    end at Dice 1 on easy images."""
    return float(np.mean(carried_dice(steps, n_iters)))


def tune_random_walker_beta(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    betas: Sequence[float],
    *,
    partial: bool = False,
    n_corrections: int = 3,
    brush_radius: int | None = None,
    seed: int = 0,
    mode: str = "bf",
    start: str = "clicks",
    human_scribbles: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    groups: Sequence[int] | None = None,
    n_boot: int = N_BOOT,
) -> WalkerTuning:
    """Pick the random walker's beta on TRAINING images (never on evaluation images).

    Each session runs from ``start``, then ``n_corrections`` RITM corrections under the ``first``
    policy (one proposal, nothing to choose); its score is :func:`session_score`. An image's score is
    the mean of its sessions' (``groups`` names each session's image; by default one session per
    image), and the beta is chosen by :func:`one_se_choice` with the betas in increasing order.

    Args:
        images: float (H, W) each; targets: bool (H, W) each, same length (one per session).
        betas: candidate values (> 0), any order.
        partial: tune ``random-walker-partial`` instead of ``random-walker``.
        seed: seeds the session generators and the bootstrap.
        mode: the walker's solver (see :class:`~simulator.methods.RandomWalkerMethod`).
        start: the sessions' start (``clicks``, ``scribbles`` or ``human``).
        human_scribbles: each session's ``(pos, neg)``, bool (H, W) each, for ``start='human'``.
        groups: each session's image index (sessions of one image are resampled together).
    """
    n = len(images)
    if len(targets) != n or n == 0:
        raise ValueError(f"images: need a non-empty list matching targets, got {n} and {len(targets)}")
    if len(betas) == 0 or any(not b > 0 for b in betas):
        raise ValueError(f"betas: need at least one value, all > 0, got {list(betas)}")
    if n_corrections < 0:
        raise ValueError(f"n_corrections: must be >= 0, got {n_corrections}")
    if (start == "human") != (human_scribbles is not None) or (human_scribbles is not None and len(human_scribbles) != n):
        raise ValueError("human_scribbles: give one (pos, neg) pair per session with start='human', and only then")
    group = np.arange(n) if groups is None else np.asarray(groups)
    if group.shape != (n,):
        raise ValueError(f"groups: need one image index per session ({n}), got shape {group.shape}")
    ordered = sorted({float(b) for b in betas})
    n_iters = n_corrections + 1
    config = SessionConfig(k=1, start=start, max_iters=n_iters, brush_radius=brush_radius)
    first = make_policy("first")
    per_session = np.empty((len(ordered), n))
    for j, beta in enumerate(ordered):
        method = RandomWalkerMethod(beta=beta, partial=partial, mode=mode)
        for i in range(n):
            steps = run_session(
                images[i], targets[i], method, first, config, np.random.default_rng([seed, i]),
                human_scribbles=None if human_scribbles is None else human_scribbles[i],
            )
            per_session[j, i] = session_score(steps, n_iters)
    ids = np.unique(group)
    per_image = np.stack([per_session[:, group == g].mean(axis=1) for g in ids], axis=1)
    return tuning_from_scores({b: per_image[j] for j, b in enumerate(ordered)}, seed=seed, n_boot=n_boot)


def tuning_from_scores(per_image: dict[float, np.ndarray], seed: int = 0, n_boot: int = N_BOOT) -> WalkerTuning:
    """The :class:`WalkerTuning` of ``{beta: float (n_images,) scores}`` under :func:`one_se_choice`,
    betas in increasing order."""
    ordered = sorted(per_image)
    chosen, means, se = one_se_choice(np.stack([per_image[b] for b in ordered]), seed=seed, n_boot=n_boot)
    return WalkerTuning(
        chosen=ordered[chosen], best=ordered[int(np.argmax(means))],
        means=dict(zip(ordered, map(float, means))), se=dict(zip(ordered, map(float, se))),
        per_image={b: np.asarray(per_image[b], dtype=np.float64) for b in ordered},
    )


def pick_solver(tunings: dict[str, WalkerTuning], seed: int = 0, n_boot: int = N_BOOT) -> tuple[str, float]:
    """The ``(mode, beta)`` the one-standard-error rule keeps over every solver's grid.

    Settings are ordered by solver (in the order given) then beta, so the first solver listed is the
    preferred one and another wins only by more than a standard error.
    """
    settings = [(m, b) for m, t in tunings.items() for b in t.means]
    if not settings:
        raise ValueError("tunings: empty")
    chosen, _, _ = one_se_choice(np.stack([tunings[m].per_image[b] for m, b in settings]), seed=seed, n_boot=n_boot)
    return settings[chosen]


def _record(tunings: dict[str, WalkerTuning], seed: int) -> dict:
    mode, beta = pick_solver(tunings, seed=seed)
    kept = tunings[mode]
    return {
        "beta": beta, "mode": mode, "best_mean_beta": kept.best,
        "mean_dice_by_beta": {str(b): round(v, 4) for b, v in kept.means.items()},
        "se_vs_best_by_beta": {str(b): round(v, 4) for b, v in kept.se.items()},
        # Each training image's score, in image order: what the rule saw, and what --pool reuses.
        "dice_by_image": {m: {str(b): [round(float(x), 6) for x in v] for b, v in t.per_image.items()}
                          for m, t in tunings.items()},
        "mean_dice_by_mode": {m: {str(b): round(v, 4) for b, v in t.means.items()} for m, t in tunings.items()},
    }


WALKERS = (("random-walker", False), ("random-walker-partial", True))


def pool_entries(record: dict, names: Sequence[str], seed: int = 0) -> dict:
    """An entry for the union of the training images of entries ``names`` of ``record``, chosen by the
    same rule from their stored per-image scores (no session is rerun).

    The entries must share their grid, solvers and protocol. ``medical`` pools the two MedScribble
    folds: every task, for data of other tasks.
    """
    try:
        entries = [record[n] for n in names]
    except KeyError as exc:
        raise ValueError(f"--pool: no entry {exc.args[0]!r} to pool") from None
    if len(entries) < 2:
        raise ValueError(f"--pool: name at least two entries, got {list(names)}")
    for key in ("betas", "modes", "protocol"):
        if any(e.get(key) != entries[0].get(key) for e in entries):
            raise ValueError(f"--pool: the entries differ in {key}; pool only entries tuned alike")
    out: dict = {}
    for method, _ in WALKERS:
        try:
            tunings = {mode: tuning_from_scores(
                {float(b): np.concatenate([e[method]["dice_by_image"][mode][b] for e in entries])
                 for b in entries[0][method]["dice_by_image"][mode]}, seed=seed)
                for mode in entries[0]["modes"]}
        except KeyError:
            raise ValueError("--pool: an entry has no per-image scores (dice_by_image); retune it") from None
        out[method] = _record(tunings, seed)
    out["tasks"] = sorted({t for e in entries for t in e.get("tasks", [])})
    for key in ("n_images", "n_sessions"):
        out[key] = sum(int(e.get(key, 0)) for e in entries)
    out.update({k: entries[0][k] for k in ("betas", "modes", "protocol")})
    return out


def _tune_pair(images: list[np.ndarray], targets: list[np.ndarray], betas: tuple[float, ...], seed: int,
               modes: tuple[str, ...], **session: object) -> dict[str, dict]:
    """Tune both walkers over ``modes`` x ``betas`` (see :func:`pick_solver`)."""
    out: dict[str, dict] = {}
    for method, partial in WALKERS:
        tunings = {mode: tune_random_walker_beta(images, targets, betas, partial=partial, seed=seed, mode=mode,
                                                 **session)  # type: ignore[arg-type]
                   for mode in modes}
        out[method] = _record(tunings, seed)
    return out


def tune_disks(n_images: int = 100, betas: tuple[float, ...] = DEFAULT_BETAS, seed: int = 0,
               mode: str | tuple[str, ...] = "bf") -> dict[str, dict]:
    """Tune both random walkers on ``n_images`` disk *training* images with random non-empty targets."""
    disks = make_disk_dataset(n_images, TRAIN_SEED)
    images, targets = [], []
    for i, d in enumerate(disks):
        rng = np.random.default_rng([seed, i])
        bits = int(rng.integers(1, 8))
        images.append(d.image)
        targets.append(subset_mask(d.disks, [j for j in range(3) if bits >> j & 1]))
    return _tune_pair(images, targets, betas, seed, (mode,) if isinstance(mode, str) else tuple(mode))


def tune_real(dataset: str, betas: tuple[float, ...] = DEFAULT_BETAS, seed: int = 0,
              mode: str | tuple[str, ...] = "bf", start: str = "human", annotators: str = "all") -> dict[str, dict]:
    """Tune both random walkers on the sessions of a real *training* dataset.

    ``dataset`` is a session-dataset name (e.g. ``medscribble:PATH?tasks=ACDC,BTCV,HipXRay,STARE``, fold
    A's training tasks); it must not include any task a study evaluates on. With ``start='human'`` (the
    default) each annotator's scribbles start a session (``annotators='all'``; ``'first'``: only the
    first annotator's, a third of the work), and an image's score is its sessions' mean.
    """
    from .datasets import make_dataset

    if annotators not in ("all", "first"):
        raise ValueError(f"annotators: expected 'all' or 'first', got {annotators!r}")
    # start=None: one session per image carrying its first annotator's scribbles (see make_dataset).
    ds = make_dataset(dataset, None, start=None if start == "human" and annotators == "first" else start)
    cases = [ds.case(i, seed) for i in range(len(ds))]
    image_ids = sorted({c.image_id for c in cases})
    session: dict[str, object] = {
        "start": start, "groups": [image_ids.index(c.image_id) for c in cases],
        "human_scribbles": [c.human_scribbles for c in cases] if start == "human" else None,
    }
    out = _tune_pair([c.image for c in cases], [c.target for c in cases], betas, seed,
                     (mode,) if isinstance(mode, str) else tuple(mode), **session)
    out["tasks"] = ds.session_tasks()  # type: ignore[assignment]
    out["n_images"] = len(image_ids)  # type: ignore[assignment]
    out["n_sessions"] = len(cases)  # type: ignore[assignment]
    return out


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="probseg-tune-baselines",
        description=(
            "Tune the random walker's beta on TRAINING images (disks, or a fold's real training tasks) by the "
            "one-standard-error rule and write that entry of tuned_baselines.json."
        ),
    )
    p.add_argument("--dataset", default="disks",
                   help="disks, or a real training dataset, e.g. 'medscribble:../shared/medscribble?tasks=ACDC,BTCV,HipXRay,STARE'")
    p.add_argument("--entry", default=None,
                   help="the JSON entry to write (default: disks; for MedScribble the fold whose training tasks these are, "
                        "medical-A or medical-B; else medical)")
    p.add_argument("--betas", default=",".join(f"{b:g}" for b in DEFAULT_BETAS),
                   help="comma-separated beta grid; widen it when the best value lies on its edge")
    p.add_argument("--mode", default="bf",
                   help=f"the walker's solver(s), comma-separated from {', '.join(RW_MODES)}, the preferred first")
    p.add_argument("--start", default="human", choices=("human", "clicks", "scribbles"),
                   help="the tuning sessions' start on real data (disks always start from clicks)")
    p.add_argument("--annotators", default="all", choices=("all", "first"),
                   help="human start: a session per annotator, or only the first annotator's (a third of the work)")
    p.add_argument("--pool", default=None, metavar="ENTRY,ENTRY",
                   help="instead of tuning: write --entry from these entries' stored per-image scores, pooled "
                        "(e.g. medical-A,medical-B for --entry medical)")
    p.add_argument("--n-images", type=int, default=100, help="disk training images used (disks only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(TUNED_PATH), help="where to write the JSON")
    return p


def _default_entry(dataset: str) -> str:
    """``disks``; the fold whose training tasks ``dataset`` holds exactly; else ``medical``."""
    if dataset == "disks":
        return "disks"
    tasks = _medscribble_tasks(dataset)
    for fold, train in MEDSCRIBBLE_FOLDS.items():
        if tasks == set(train):
            return f"medical-{fold}"
    return "medical"


@cli_entry("probseg-tune-baselines")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-tune-baselines``."""
    args = _parser().parse_args(argv)
    if args.n_images < 1:
        raise ValueError(f"--n-images: must be >= 1, got {args.n_images}")
    try:
        betas = tuple(float(b) for b in args.betas.split(",") if b.strip())
    except ValueError:
        raise ValueError(f"--betas: expected comma-separated numbers, got {args.betas!r}") from None
    if not betas or any(not b > 0 for b in betas):
        raise ValueError(f"--betas: expected positive numbers, got {args.betas!r}")
    modes = tuple(m.strip() for m in args.mode.split(",") if m.strip())
    if not modes or any(m not in RW_MODES for m in modes):
        raise ValueError(f"--mode: expected comma-separated solvers from {', '.join(RW_MODES)}, got {args.mode!r}")
    command = "probseg-tune-baselines " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    try:
        record = json.loads(out.read_text()) if out.exists() else {}
    except ValueError:
        raise ValueError(f"--out: {out} is not valid JSON") from None
    if args.pool is not None:
        if args.entry is None:
            raise ValueError("--entry: name the entry --pool writes (e.g. medical)")
        names = [n.strip() for n in args.pool.split(",") if n.strip()]
        result = pool_entries(record, names, seed=args.seed)
        record[args.entry] = {**result, "pooled": names, "command": command.strip()}
    else:
        entry = args.entry or _default_entry(args.dataset)
        if args.dataset == "disks":
            result = tune_disks(args.n_images, betas, seed=args.seed, mode=modes)
            start = "clicks"
        else:
            result = tune_real(args.dataset, betas, seed=args.seed, mode=modes, start=args.start,
                               annotators=args.annotators)
            start = args.start if args.start != "human" else f"human ({args.annotators} annotators)"
        record[entry] = {
            **result, "protocol": f"{start} start, 3 RITM corrections, policy first; score = mean Dice over the 4 "
            "iterations, averaged per image; beta by the one-standard-error rule over a bootstrap of the images "
            f"({N_BOOT} resamples), smallest beta first; training images only",
            "modes": list(modes), "betas": list(betas), "dataset": args.dataset, "command": command.strip(),
        }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({m: v["beta"] for m, v in result.items() if isinstance(v, dict)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
