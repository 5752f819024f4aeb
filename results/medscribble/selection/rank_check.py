"""Does a scored checkpoint's score head rank its candidates? Its first proposal from the click start on
each image of the given tasks: the best candidate's Dice, the top-scored one's, the mean candidate's (what a
random pick gets) and the Spearman correlation between score and Dice per image (mean over images).

Usage, from the repository root: python3 results/medscribble/selection/rank_check.py CKPT TASK[,TASK...]
(e.g. results/medscribble/checkpoints/A/complete-k.pt ACDC,BTCV,HipXRay,STARE: a fold's own training
tasks, so the figures are in-sample and never choose anything about its unseen tasks).
The other scripts of this folder import :func:`first_proposals` from here.
"""
import sys

import numpy as np
import torch
from scipy.stats import spearmanr

import probseg
from probseg.interaction import click_start, default_brush_radius
from simulator.datasets import make_dataset
from simulator.metrics import dice


def first_proposals(model, task: str) -> str:
    """One line: the first proposal's best / top-scored / mean candidate Dice and Spearman on ``task``."""
    ds = make_dataset(f"medscribble:../shared/medscribble?tasks={task}", None, start="clicks")
    best, top, mean, rho = [], [], [], []
    for i in range(len(ds)):
        case = ds.case(i, 0)
        start = click_start(case.target, default_brush_radius(case.target.shape[0]))
        _, segs, scores = model.propose(case.image, start.mask, start.seg, k=8, seed=0, return_scores=True)
        d = np.array([dice(s, case.target) for s in segs])
        best.append(d.max())
        top.append(d[int(np.argmax(scores))])
        mean.append(d.mean())
        rho.append(spearmanr(d, scores)[0])
    return (f"{task}: best {np.mean(best):.3f} top-scored {np.mean(top):.3f} mean {np.mean(mean):.3f} "
            f"Spearman {np.nanmean(rho):+.2f} ({len(ds)} images)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    model = probseg.load(sys.argv[1])
    for task in sys.argv[2].split(","):
        print(first_proposals(model, task), flush=True)
