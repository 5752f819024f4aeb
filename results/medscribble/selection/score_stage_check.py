"""The measurement behind CHECKPOINTS.md's "score stage": probseg.train._score_stage applied to a
quarter-budget candidate of the fold A selection (its weights are not committed: rebuild them first with
the command in its .json record), then its first proposals from the click start on its left-out training task, before and after.

Usage, from the repository root: python3 results/medscribble/selection/score_stage_check.py
heads-complete-without-BTCV BTCV 400 (candidate stem, its left-out task, score steps).
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
name, task, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
ck = f"results/medscribble/selection/A-complete/checkpoints/{name}.pt"
rec = json.load(open(ck.replace(".pt", ".json")))
model = probseg.load(ck)
known = {f.name for f in fields(TrainSettings)}
settings = TrainSettings(**{k: v for k, v in rec["settings"].items() if k in known})
settings.score_steps = steps
cfg = model.net.config
pair_spec = PairSpec.from_dict({**settings.pair_spec, "mode": cfg.mode})
loop_spec = LoopSpec.from_dict(settings.loop_spec)

print(name, "before:", first_proposals(model, task), flush=True)
t0 = time.time()
pool, _ = _medical_pool(settings, cfg, pair_spec, False, whole_targets=True)
gen = torch.Generator().manual_seed(settings.seed)
radius = default_brush_radius(pool.shape[-2])
net = model.net.train()
running = _score_stage(net, pool, gen, settings, loop_spec, pair_spec, radius, torch.device("cpu"), False, [])
net.eval()
print(name, f"after {steps} score steps ({time.time() - t0:.0f} s, score mse {running['score_mse']:.4f}):",
      first_proposals(model, task), flush=True)
