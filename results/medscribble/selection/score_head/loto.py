"""The score-head rule's experiment (CHECKPOINTS.md, rule step 8): score-head variants fitted to the cached
states of cache_states.py, leaving one training task out at a time (its real and pseudo-task images out of
the fit), scored on the left-out task's real images by the Dice of the top-scored candidate.

VARIANT is KIND:RANK_WEIGHT, KIND ``coarse`` (probseg.model._ScoreHead, today's) or ``fine`` (FineHead below:
the same layers as probseg.model._FineScoreHead, checked to give the same scores for the same weights, with
the sigmoid left to the loss), RANK_WEIGHT the weight of the listwise loss (probseg.losses.score_rank_loss's
cross-entropy, temperature 0.05) beside the squared error. Each fit: Adam 1e-3, batch 16, STEPS steps, seed 0.

Usage, from the repository root (as run on 2026-12-02; the logs beside this file):
    python3 results/medscribble/selection/score_head/loto.py /tmp/cacheA.pt coarse:0,coarse:1,fine:0 800
    python3 results/medscribble/selection/score_head/loto.py /tmp/cacheA.pt fine:1 800
Each line: the checkpoint's own head (trained on all four tasks, so in-sample), then each variant's
top-scored Dice and its fit's seconds, the mean candidate (a random pick) and the best.
"""
import sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from probseg.model import _ScoreHead, _conv_gn
torch.set_num_threads(1)

class FineHead(nn.Module):
    """Per candidate at working resolution: image, pred_m, pred_s, x_m, x_s, the candidates' mean pred_s;
    three strided convs down to the coarse grid, joined with the projected coarse features."""
    def __init__(self, coarse_channels, width):
        super().__init__()
        c = 2 * width
        def down(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.GroupNorm(4, o), nn.ReLU(inplace=True))
        self.fine = nn.Sequential(down(6, width), down(width, c))
        self.proj = nn.Conv2d(coarse_channels, c, 1)
        self.body = nn.Sequential(_conv_gn(2 * c, c), down(c, c))
        self.out = nn.Linear(c, 1)
    def forward(self, coarse, pred_m, pred_s, x_m, x_s, image):
        b, k = pred_m.shape[:2]
        cons = pred_s.mean(1, keepdim=True)
        maps = torch.stack([pred_m, pred_s, x_m.expand(-1, k, -1, -1), x_s.expand(-1, k, -1, -1),
                            image.expand(-1, k, -1, -1), cons.expand(-1, k, -1, -1)], 2).flatten(0, 1)
        fine = self.fine(F.avg_pool2d(maps, 2) if maps.shape[-1] > 64 else maps)
        feat = self.proj(coarse)[:, None].expand(-1, k, -1, -1, -1).flatten(0, 1)
        h = self.body(torch.cat([feat, fine], 1)).mean(dim=(-2, -1))
        return self.out(h)[:, 0].view(b, k)  # logits

class CoarseHead(nn.Module):
    def __init__(self, cc, w):
        super().__init__(); self.h = _ScoreHead(cc, w)
    def forward(self, coarse, pred_m, pred_s, x_m, x_s, image):
        s = self.h(coarse, pred_m, pred_s, x_m, x_s).clamp(1e-5, 1 - 1e-5)
        return torch.log(s) - torch.log1p(-s)

def loss_fn(logits, dice, rank_w, tau=0.05):
    mse = (torch.sigmoid(logits) - dice).pow(2).mean()
    if not rank_w: return mse
    q = torch.softmax(dice / tau, 1)
    ce = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    return mse + rank_w * ce

def batch(c, idx):
    f = lambda t: t[idx].float()
    return (f(c["coarse"]), f(c["pred_m"]), f(c["pred_s"]), f(c["x_m"])[:, None], f(c["x_s"])[:, None],
            (c["image"][idx].float() / 255)[:, None])

def figures(model, c, idx):
    model.eval()
    tops = []
    with torch.no_grad():
        for i in range(0, len(idx), 32):
            j = idx[i:i + 32]
            tops.append(model(*batch(c, j)).argmax(1))
    model.train()
    d = c["dice"][idx]; top = torch.cat(tops)
    return d.gather(1, top[:, None]).mean().item(), d.mean().item(), d.max(1).values.mean().item()

def train(variant, c, tr, steps, seed=0):
    g = torch.Generator().manual_seed(seed); torch.manual_seed(seed)
    cc = c["coarse"].shape[1]
    kind, rank_w = variant.split(":")
    model = (FineHead if kind == "fine" else CoarseHead)(cc, 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for s in range(steps):
        idx = tr[torch.randint(0, len(tr), (16,), generator=g)]
        loss = loss_fn(model(*batch(c, idx)), c["dice"][idx], float(rank_w))
        opt.zero_grad(); loss.backward(); opt.step()
    return model

if __name__ == "__main__":
    c = torch.load(sys.argv[1]); names = c["names"]
    variants = sys.argv[2].split(","); steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    src = c["source"]
    for t in ["ACDC", "BTCV", "HipXRay", "STARE"]:
        held = [i for i, n in enumerate(names) if n.startswith(t)]
        te = torch.nonzero(src == names.index(f"{t}-real"))[:, 0]
        tr = torch.nonzero(~torch.isin(src, torch.tensor(held)))[:, 0]
        old = c["dice"][te].gather(1, c["old"][te].argmax(1, keepdim=True)).mean().item()
        line = [f"{t}: ckpt-head(in-sample) {old:.3f}"]
        for v in variants:
            t0 = time.time(); m = train(v, c, tr, steps)
            top, mean, best = figures(m, c, te)
            line.append(f"{v} {top:.3f} ({time.time()-t0:.0f}s)")
        print(" | ".join(line) + f" | mean {mean:.3f} best {best:.3f}", flush=True)
