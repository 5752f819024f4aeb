"""Tuning the classical baselines on training data only, and the tuned values the simulator uses.

The random walker's beta is chosen by :func:`simulator.methods.tune_random_walker_beta` on images of
the *training* split (for disks: the paper's 1,000 training images, never the held-out ones the
sessions run on). The walker's solver is tuned too: ``--mode bf,cg_j`` scores every beta under each
solver and keeps, per walker, the (solver, beta) pair with the best training score. The exact solve
(``bf``) and the conjugate-gradient ones (``cg_j``, Jacobi-preconditioned, to its tolerance;
``cg_mg``, multigrid-preconditioned through pyamg and capped at 30 iterations) differ at large beta,
where the system is badly conditioned and they land on different answers; none wins on every dataset.
``probseg-tune-baselines`` reruns the search and rewrites ``tuned_baselines.json`` beside this file,
which records the grid, the scores by solver and beta, and the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from probseg.cli import ArgumentParser, cli_entry
from probseg.data import make_disk_dataset, subset_mask
from probseg.data.disks import TRAIN_SEED

from .methods import RW_MODES, tune_random_walker_beta

__all__ = ["TUNED_PATH", "tuned_beta", "tuned_mode", "pick_solver", "tune_disks", "tune_real", "main"]

TUNED_PATH = Path(__file__).resolve().parent / "tuned_baselines.json"
DEFAULT_BETAS = (10.0, 30.0, 60.0, 130.0, 250.0, 500.0, 1000.0, 2000.0)


def tuned_beta(method: str, dataset: str = "disks") -> float:
    """The tuned beta of ``random-walker`` or ``random-walker-partial`` for ``dataset``."""
    try:
        table = json.loads(TUNED_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"rw_beta: no tuned value ({TUNED_PATH} unreadable: {exc}); pass rw_beta explicitly") from None
    try:
        return float(table[dataset][method]["beta"])
    except KeyError:
        raise ValueError(f"rw_beta: no tuned value for {method!r} on {dataset!r}; run probseg-tune-baselines") from None


def tuned_mode(method: str, dataset: str = "disks") -> str:
    """The solver ``tuned_beta`` was chosen with: the walker's own record, else the entry's, else ``cg_j``."""
    try:
        entry = json.loads(TUNED_PATH.read_text())[dataset]
    except (OSError, ValueError, KeyError):
        return "cg_j"
    fallback = str(entry.get("mode", "cg_j"))
    own = entry.get(method)
    return str(own.get("mode", fallback)) if isinstance(own, dict) else fallback


def pick_solver(scores_by_mode: dict[str, dict[float, float]]) -> tuple[str, float, float]:
    """The ``(mode, beta, score)`` with the best training score; ties go to the first mode, then beta.

    Args:
        scores_by_mode: ``{mode: {beta: mean Dice}}``, as :func:`tune_random_walker_beta` returns per mode.
    """
    best: tuple[str, float, float] | None = None
    for mode, scores in scores_by_mode.items():
        for beta, score in scores.items():
            if best is None or score > best[2]:
                best = (mode, float(beta), float(score))
    if best is None:
        raise ValueError("scores_by_mode: empty")
    return best


def _tune_pair(images: list[np.ndarray], targets: list[np.ndarray], betas: tuple[float, ...], seed: int,
               modes: tuple[str, ...]) -> dict[str, dict]:
    """Tune both walkers over ``modes`` x ``betas``; each keeps its best (solver, beta) (see :func:`pick_solver`)."""
    out: dict[str, dict] = {}
    for method, partial in (("random-walker", False), ("random-walker-partial", True)):
        by_mode = {mode: tune_random_walker_beta(images, targets, betas, partial=partial, seed=seed, mode=mode)[1]
                   for mode in modes}
        mode, beta, _ = pick_solver(by_mode)
        out[method] = {
            "beta": beta, "mode": mode,
            "mean_dice_by_beta": {str(b): round(v, 4) for b, v in by_mode[mode].items()},
            "mean_dice_by_mode": {m: {str(b): round(v, 4) for b, v in sc.items()} for m, sc in by_mode.items()},
        }
    return out


def tune_disks(n_images: int = 100, betas: tuple[float, ...] = DEFAULT_BETAS, seed: int = 0,
               mode: str | tuple[str, ...] = "cg_j") -> dict[str, dict]:
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
              mode: str | tuple[str, ...] = "cg_j") -> dict[str, dict]:
    """Tune both random walkers on the images of a real *training* dataset (its targets as drawn).

    ``dataset`` is a session-dataset name (e.g. ``medscribble:PATH?tasks=ACDC,BTCV,HipXRay,STARE``,
    the medical models' training tasks); it must not include any task a study evaluates on.
    """
    from .datasets import make_dataset

    ds = make_dataset(dataset, None, start="clicks")
    cases = [ds.case(i, seed) for i in range(len(ds))]
    images = [c.image for c in cases]
    targets = [c.target for c in cases]
    out = _tune_pair(images, targets, betas, seed, (mode,) if isinstance(mode, str) else tuple(mode))
    out["tasks"] = ds.session_tasks()  # type: ignore[assignment]
    out["n_images"] = len(images)  # type: ignore[assignment]
    return out


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="probseg-tune-baselines",
        description=(
            "Tune the random walker's beta on TRAINING images (disks, or the real training tasks) and update "
            "that entry of tuned_baselines.json."
        ),
    )
    p.add_argument("--dataset", default="disks",
                   help="disks, or a real training dataset, e.g. 'medscribble:../shared/medscribble?tasks=ACDC,BTCV,HipXRay,STARE'")
    p.add_argument("--entry", default=None, help="the JSON entry to write (default: disks, or medical for real data)")
    p.add_argument("--betas", default=",".join(f"{b:g}" for b in DEFAULT_BETAS),
                   help="comma-separated beta grid; widen it when the best value lies on its edge")
    p.add_argument("--mode", default="cg_j",
                   help=f"the walker's solver(s), comma-separated from {', '.join(RW_MODES)}: with several, each walker keeps "
                        "the solver and beta that score best on the training images (recorded with the beta)")
    p.add_argument("--n-images", type=int, default=100, help="disk training images used (disks only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(TUNED_PATH), help="where to write the JSON")
    return p


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
    entry = args.entry or ("disks" if args.dataset == "disks" else "medical")
    result = (tune_disks(args.n_images, betas, seed=args.seed, mode=modes) if args.dataset == "disks"
              else tune_real(args.dataset, betas, seed=args.seed, mode=modes))
    command = "probseg-tune-baselines " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    try:
        record = json.loads(out.read_text()) if out.exists() else {}
    except ValueError:
        raise ValueError(f"--out: {out} is not valid JSON") from None
    record.setdefault("protocol", "clicks start, 3 RITM corrections, policy first; score = mean Dice over the "
                      "4 iterations; training images only")
    record.pop("betas", None)  # each entry records its own grid
    record[entry] = {**result, "modes": list(modes), "betas": list(betas), "dataset": args.dataset, "command": command.strip()}
    record.pop("command", None)  # commands now live in each entry
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({m: v["beta"] for m, v in result.items() if isinstance(v, dict)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
