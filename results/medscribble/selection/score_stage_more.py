"""In-sample check behind CHECKPOINTS.md ("The score head of fold A's complete-k"): does more score-stage
training, with or without the pseudo-tasks, make the score head rank the heads at the click start? Loads
results/medscribble/checkpoints/A/complete-k.pt, trains its score head alone for STEPS more steps on a pool of
2,000 of its training pairs with the pseudo-task fraction PSEUDO (generator seed 1), and prints the first
proposal's figures on the fold's own training tasks (in-sample: a diagnostic, never a choice).

Usage, from the repository root: python3 results/medscribble/selection/score_stage_more.py PSEUDO STEPS
(this session ran 0.0 400 and 0.5 400). Nothing is written.
"""
import json, sys, time
import numpy as np, torch
from dataclasses import fields
import probseg
from probseg.train import _medical_pool, _score_stage, TrainSettings
from probseg.train_settings import LoopSpec
from probseg.data.partials import PairSpec
from probseg.interaction import default_brush_radius
from rank_check import first_proposals  # this folder's
torch.set_num_threads(1)
pseudo, steps = float(sys.argv[1]), int(sys.argv[2])
ck = "results/medscribble/checkpoints/A/complete-k.pt"
rec = json.load(open(ck.replace(".pt", ".json")))
model = probseg.load(ck)
known = {f.name for f in fields(TrainSettings)}
settings = TrainSettings(**{k: v for k, v in rec["settings"].items() if k in known})
settings.score_steps = steps
settings.augment_spec = {**settings.augment_spec, "pseudo_fraction": pseudo}
settings.n_pairs = 2000
cfg = model.net.config
pair_spec = PairSpec.from_dict({**settings.pair_spec, "mode": cfg.mode})
loop_spec = LoopSpec.from_dict(settings.loop_spec)
def first(m):
    return "; ".join(first_proposals(m, t) for t in ["ACDC", "BTCV", "HipXRay", "STARE"])
t0 = time.time()
pool, _ = _medical_pool(settings, cfg, pair_spec, False, whole_targets=True)
gen = torch.Generator().manual_seed(1)
radius = default_brush_radius(pool.shape[-2])
net = model.net.train()
running = _score_stage(net, pool, gen, settings, loop_spec, pair_spec, radius, torch.device("cpu"), False, [])
net.eval()
print(f"pseudo {pseudo} +{steps} score steps ({time.time()-t0:.0f} s, mse {running['score_mse']:.4f}):", first(model), flush=True)
