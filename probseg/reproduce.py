"""``probseg-reproduce``: the paper's disk numbers, beside the honest metrics, and its Figure 3."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cli import ArgumentParser, cli_entry

if TYPE_CHECKING:
    from .predictor import ProbSeg

# torch, scikit-image and the model are imported where they are used, so --help and a usage error
# answer at once.

__all__ = ["format_table", "draw_figure3", "main"]

_ROWS = [
    ("added_fg_px", "added foreground px / proposal"),
    ("added_bg_px", "added background px / proposal"),
    ("max_dice", "max Dice over disk subsets (added region)"),
    ("threshold_max_dice", "  same, Otsu threshold deciding every pixel"),
    ("target_dice_at_1", "target Dice@1"),
    ("target_dice_at_4", "target Dice@4"),
    ("target_dice_at_8", "target Dice@8"),
    ("target_dice_at_16", "target Dice@16"),
    ("mean_target_dice", "target Dice, z = 0 (deterministic)"),
]


def _added_px(metrics: dict[str, float], key: str) -> float | None:
    """The pixels a proposal adds, beside a target Dice: a Dice on the added region means little
    without them (z = 0 can score 1.000 on a fraction of a pixel)."""
    if key.startswith("target_dice_at_"):
        return metrics["added_fg_px"] + metrics["added_bg_px"]  # the samples' (every sample alike)
    if key == "mean_target_dice":
        return metrics["mean_added_fg_px"] + metrics["mean_added_bg_px"]
    return None


def format_table(metrics: dict[str, float], name: str) -> str:
    """A plain-text table of ``metrics`` beside the paper's values; each target Dice row also gives
    the pixels each proposal adds (foreground + background, mean per proposal)."""
    from .evaluate import PAPER_VALUES

    lines = [f"{'metric':<46}{name:>14}{'paper':>10}{'added px':>10}", "-" * 80]
    for key, label in _ROWS:
        paper = PAPER_VALUES.get(key)
        val = metrics[key]
        fmt = "{:>14.1f}" if key.endswith("_px") else "{:>14.3f}"
        added = _added_px(metrics, key)
        lines.append(f"{label:<46}" + fmt.format(val) + (f"{paper:>10g}" if paper is not None else f"{'':>10}")
                     + (f"{added:>10.1f}" if added is not None else ""))
    lines.append(f"held-out images: {metrics['n_images']}. Target Dice is measured on the added region only: "
                 "read it with the pixels added")
    return "\n".join(lines)


def overlay(image: np.ndarray, mask: np.ndarray, seg: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """RGB float (H, W, 3): grey image, decided foreground red, decided background blue."""
    lo, hi = float(image.min()), float(image.max())
    grey = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    red, blue = np.array([1.0, 0.1, 0.1]), np.array([0.15, 0.35, 1.0])
    fg, bg = mask & seg, mask & ~seg
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * red
    rgb[bg] = (1 - alpha) * rgb[bg] + alpha * blue
    return rgb


def draw_figure3(model: ProbSeg, path: str | Path, n_rows: int = 4, n_samples: int = 5, seed: int = 0) -> Path:
    """The paper's Figure 3: per row, the input and ``n_samples`` proposals (z ~ N(0, I)).

    Foreground red, background blue, over the image. Rows are the first held-out cases.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate import heldout_cases

    path = Path(path)
    cases = heldout_cases(n_rows)
    fig, axes = plt.subplots(n_rows, n_samples + 2, figsize=(1.6 * (n_samples + 2), 1.7 * n_rows), squeeze=False)
    for r, case in enumerate(cases):
        masks, segs = model.propose(case.disk.image, case.x_m, case.x_s, k=n_samples, seed=np.random.default_rng([seed, r]))
        panels = [("target", overlay(case.disk.image, np.ones_like(case.target), case.target)), ("input", overlay(case.disk.image, case.x_m, case.x_s))]
        panels += [(f"sample {j + 1}", overlay(case.disk.image, masks[j], segs[j])) for j in range(n_samples)]
        for c, (title, rgb) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle(f"{model.name}: proposals for held-out inputs (red: foreground, blue: background)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="probseg-reproduce",
        description=(
            "Reproduce the paper's disk numbers: one proposal per held-out image (added foreground and "
            "background pixels, max Dice over disk subsets), beside an Otsu-threshold calibration and "
            "target Dice@K for K in 1, 4, 8, 16 and for z = 0."
        ),
    )
    p.add_argument("--checkpoint", default="disks", help="a shipped checkpoint name or a path to a .pt file")
    p.add_argument("--n", type=int, default=1000, help="held-out images (at most 1000 in the paper's split)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object instead of a table")
    p.add_argument("--figure", metavar="PATH",
                   help="draw the paper's Figure 3 to PATH (PNG) instead of evaluating: the figure needs only "
                        "a few proposals, not the held-out evaluation")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@cli_entry("probseg-reproduce")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-reproduce``."""
    args = _parser().parse_args(argv)
    if args.n < 1:
        raise ValueError(f"--n: must be >= 1, got {args.n}")
    if args.seed < 0:
        raise ValueError(f"--seed: must be >= 0, got {args.seed}")
    if args.figure is not None and Path(args.figure).suffix.lower() != ".png":
        raise ValueError(f"--figure: expected a .png path, got {args.figure}")
    if args.figure is not None and args.json:
        raise ValueError("--json: prints the evaluation, which --figure does not run; give one of them")
    from .evaluate import evaluate_disks
    from .registry import load

    model = load(args.checkpoint)
    if args.figure:
        draw_figure3(model, args.figure, seed=args.seed)
        print(f"figure: {args.figure}")
        return 0
    metrics = evaluate_disks(model, n=args.n, seed=args.seed, progress=not args.no_progress and not args.json)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_table(metrics, str(args.checkpoint)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
