"""``probseg-train``: its options and what it runs (the training itself is :func:`probseg.train.train`).

Nothing heavy is imported until the command line is understood, so ``--help`` and a usage error
come at once.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .cli import ArgumentParser, cli_entry
from .configs import CONFIGS, SCORE_HEADS
from .data.augment import AugmentSpec
from .train_settings import DATASETS, LoopSpec, TrainSettings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    d = TrainSettings()
    p = ArgumentParser(
        prog="probseg-train",
        description="Train a probabilistic partial-segmentation model (synthetic disks, or synthetic and real "
        "medical images) and write a checkpoint.",
    )
    p.add_argument("--config", default=d.config, help=f"model configuration, one of: {', '.join(CONFIGS)}")
    p.add_argument("--dataset", default=d.dataset, help=f"training data, one of: {', '.join(DATASETS)}")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=None, help=f"seeds data, weights and batch order (default {d.seed}; with --refit-score: the base's)")
    p.add_argument("--n-pairs", type=int, default=d.n_pairs, help="training pairs drawn into the pool")
    p.add_argument("--eval-images", type=int, default=d.eval_images, help="held-out images evaluated at the end (0: skip)")
    p.add_argument("--beta1", type=float, default=None, help="KL weight (default: the configuration's)")
    p.add_argument("--kl-warmup", type=int, default=d.kl_warmup, help="steps of linear KL-weight warm-up from 0 (0: none)")
    p.add_argument(
        "--free-bits", type=float, default=d.free_bits,
        help="nats per latent dimension the KL term does not penalise (0: none, as in the paper)",
    )
    p.add_argument(
        "--device", default=d.device,
        help="where the network trains: cpu, cuda, cuda:N or auto; the data and the final evaluation stay on the CPU",
    )
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: default)")
    p.add_argument(
        "--medscribble", default=None,
        help=f"MedScribble folder (--dataset medical; default {d.medscribble}; with --refit-score: the base's)",
    )
    p.add_argument(
        "--train-tasks", default=",".join(d.train_tasks),
        help="comma-separated MedScribble tasks to train on (--dataset medical); the others are held out",
    )
    p.add_argument(
        "--real-fraction", type=float, default=d.real_fraction,
        help="fraction of training pairs from real images (--dataset medical); the rest are synthetic",
    )
    p.add_argument(
        "--pseudo-fraction", type=float, default=AugmentSpec().pseudo_fraction,
        help="fraction of the real images (--dataset medical) whose target is a pseudo-task's instead, a region "
        "of the image's own superpixels",
    )
    p.add_argument(
        "--interaction-loop", action="store_true",
        help="train in the interaction loop: each batch simulates a short session (start, corrections at the "
        "model's own errors) before the step trained on; needed by the multi-head and SSN configurations",
    )
    p.add_argument(
        "--loop-max-steps", type=int, default=LoopSpec().max_steps,
        help="most simulated correction steps before the trained one (--interaction-loop)",
    )
    p.add_argument(
        "--score-steps", type=int, default=0,
        help="then this many interaction-loop steps training the score head alone, the network frozen "
        "(multi-head and SSN configurations): the candidates stay, their ranking learns",
    )
    p.add_argument(
        "--score-head", choices=SCORE_HEADS, default=None,
        help="the score head to build (multi-head and SSN configurations; default: the configuration's): coarse "
        "reads the candidates pooled to the latent grid, fine at half the working resolution with the image",
    )
    p.add_argument(
        "--score-rank-weight", type=float, default=None,
        help="weight of the score head's listwise ranking loss (which candidate is best), beside its squared "
        f"error on each candidate's Dice (default {LoopSpec().score_rank_weight:g}: none)",
    )
    p.add_argument(
        "--refit-score", metavar="BASE.pt", default=None,
        help="fit a new score head to the trained scored checkpoint BASE.pt, the rest of it frozen (its candidates "
        "stay): --score-steps steps on BASE's own training pool and loop settings; only --score-head, "
        "--score-rank-weight, --seed, --threads, --device, --medscribble, --out and --no-progress are read",
    )
    p.add_argument("--out", required=True, help="checkpoint path (.pt); a .json record is written beside it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


@cli_entry("probseg-train")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-train``."""
    parser = _parser()
    args = parser.parse_args(argv)
    d = TrainSettings()
    out = Path(args.out)
    if out.suffix != ".pt":
        raise ValueError(f"--out: expected a .pt path, got {out}")
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"--out: {out.parent} is not a folder")
    command = "probseg-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.refit_score is not None:
        return _refit(parser, args, command)
    if args.score_rank_weight is not None and not args.interaction_loop:
        raise ValueError("--score-rank-weight: the score head trains in the interaction loop; add --interaction-loop")
    loop_spec = {"max_steps": args.loop_max_steps} if args.interaction_loop else {}
    if args.score_rank_weight is not None:
        loop_spec["score_rank_weight"] = args.score_rank_weight
    settings = TrainSettings(
        config=args.config,
        dataset=args.dataset,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=d.seed if args.seed is None else args.seed,
        n_pairs=args.n_pairs,
        eval_images=args.eval_images,
        threads=args.threads,
        beta1=args.beta1,
        kl_warmup=args.kl_warmup,
        free_bits=args.free_bits,
        device=args.device,
        medscribble=d.medscribble if args.medscribble is None else args.medscribble,
        train_tasks=[t.strip() for t in args.train_tasks.split(",") if t.strip()],
        real_fraction=args.real_fraction,
        augment_spec={"pseudo_fraction": args.pseudo_fraction} if args.pseudo_fraction else {},
        interaction_loop=args.interaction_loop,
        loop_spec=loop_spec,
        score_steps=args.score_steps,
        score_head=args.score_head,
    )
    settings.validate()
    from .train import train  # torch: only once the command line is understood

    _, metrics = train(settings, out, progress=not args.no_progress, command=command)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}))
    return 0


# What --refit-score reads; the other options describe a training run, which the base's record fixes.
_REFIT_OPTIONS = ("refit_score", "score_steps", "score_head", "score_rank_weight", "seed", "threads", "device",
                  "medscribble", "out", "no_progress")


def _refit(parser: argparse.ArgumentParser, args: argparse.Namespace, command: str) -> int:
    """``--refit-score``: :func:`probseg.train.refit_score_head` with the command line's options."""
    ignored = [a for a in vars(args) if a not in _REFIT_OPTIONS and getattr(args, a) != parser.get_default(a)]
    if ignored:
        flag = "--" + ignored[0].replace("_", "-")
        raise ValueError(f"{flag}: not read with --refit-score, which trains on the base's own recorded settings; drop it")
    if args.score_steps < 1:
        raise ValueError("--score-steps: --refit-score trains the new score head for --score-steps steps; give one >= 1")
    if not Path(args.refit_score).is_file():
        raise ValueError(f"--refit-score: no such checkpoint: {args.refit_score}")
    from .train import refit_score_head  # torch: only once the command line is understood

    _, metrics = refit_score_head(
        args.refit_score, args.out, score_steps=args.score_steps, score_head=args.score_head,
        score_rank_weight=args.score_rank_weight, seed=args.seed, threads=args.threads,
        device=args.device, medscribble=args.medscribble,
        progress=not args.no_progress, command=command,
    )
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
