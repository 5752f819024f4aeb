"""The score-head rule's data (CHECKPOINTS.md, rule step 8): interaction-loop states of a frozen scored network.

For each of fold A's training tasks, N_PER_SOURCE augmented real images (their own targets) and N_PER_SOURCE
pseudo-task images (superpixel targets), and 2 N_PER_SOURCE synthetic images, at the working size: a start
drawn as the loop draws it, 0-3 simulated corrections on the network's own candidates (the oracle and click
of probseg.interaction_loop), then the 8 candidates, the coarse features and each candidate's Dice with the
whole target. Training tasks only: nothing of the fold's unseen tasks is read.

Usage, from the repository root (as run on 2026-12-02, about 4 minutes beside three trainings):
    python3 results/medscribble/selection/score_head/cache_states.py results/medscribble/checkpoints/A/complete-k.pt /tmp/cacheA.pt 240
then loto.py on the file it writes (1.5 GB; not committed).
"""
import sys, time
import numpy as np, torch
import probseg
from probseg.data.medical import build_medical_target_pool, pool_batch_to_float
from probseg.data.synth import SynthSpec
from probseg.data.augment import AugmentSpec
from probseg.data.partials import PairSpec
from probseg.train_settings import LoopSpec
from probseg.interaction import default_brush_radius
from probseg.interaction_loop import start_state, advance, binarise, _stack
from probseg.losses import hard_dice
from probseg.train import _dihedral
torch.set_num_threads(1)
ckpt, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = probseg.load(ckpt); net = model.net.eval(); cfg = net.config
partial = cfg.mode == "partial"
ms = "../shared/medscribble"
loop = LoopSpec(); pair_spec = PairSpec.from_dict({"mode": cfg.mode})
sources = []
for t in ["ACDC", "BTCV", "HipXRay", "STARE"]:
    sources.append((f"{t}-real", [t], 1.0, 0.0, n))
    sources.append((f"{t}-pseudo", [t], 1.0, 1.0, n))
sources.append(("synth", ["ACDC"], 0.0, 0.0, 2 * n))
rec = {k: [] for k in ["image", "x_m", "x_s", "pred_m", "pred_s", "coarse", "dice", "source", "old"]}
names = [s[0] for s in sources]
t0 = time.time()
for si, (name, tasks, rf, pf, cnt) in enumerate(sources):
    pool = build_medical_target_pool(cnt, 100 + si, tasks, ms, rf, SynthSpec(size=128), AugmentSpec(pseudo_fraction=pf), size=128)
    gen = torch.Generator().manual_seed(si)
    radius = default_brush_radius(128)
    for b0 in range(0, cnt, 16):
        batch = pool_batch_to_float(pool[b0:b0 + 16])
        batch = _dihedral(batch, torch.randint(0, 8, (len(batch),), generator=gen))
        images = batch[:, :1]; gts = batch[:, 1].numpy() > 0.5
        rngs = [np.random.default_rng([7, si, b0, i]) for i in range(len(batch))]
        states = [start_state(r, g, loop, pair_spec, radius) for r, g in zip(rngs, gts)]
        nsteps = int(torch.randint(0, loop.max_steps + 1, (1,), generator=gen))
        with torch.no_grad():
            for _ in range(nsteps):
                feeds = [s.feed(partial) for s in states]
                xm = _stack([f[0] for f in feeds], "cpu"); xs = _stack([f[1] for f in feeds], "cpu")
                pm, ps, _ = net.decode_candidates(images, xm, xs)
                masks, segs = binarise(pm, ps, xm, xs)
                states = [advance(s, g, masks[i].numpy(), segs[i].numpy(), partial=partial, radius=radius) for i, (s, g) in enumerate(zip(states, gts))]
            feeds = [s.feed(partial) for s in states]
            xm = _stack([f[0] for f in feeds], "cpu"); xs = _stack([f[1] for f in feeds], "cpu")
            x = torch.cat([images, xm, xs], 1)
            feats = net.decoder.features(x)
            pm, ps, old = net.decode_candidates(images, xm, xs)
            coarse = net.decoder.coarse(feats)
            _, segs = binarise(pm, ps, xm, xs)
            whole = torch.from_numpy(gts)[:, None]
            d = hard_dice(segs, whole.expand_as(segs))
        rec["image"].append((images[:, 0] * 255).round().to(torch.uint8)); rec["x_m"].append(xm[:, 0].bool()); rec["x_s"].append(xs[:, 0].bool())
        rec["pred_m"].append(pm.half()); rec["pred_s"].append(ps.half()); rec["coarse"].append(coarse.float().half().contiguous())
        rec["dice"].append(d.float()); rec["old"].append(old.float()); rec["source"].append(torch.full((len(batch),), si))
    print(name, f"{time.time()-t0:.0f}s", flush=True)
torch.save({k: torch.cat(v) for k, v in rec.items()} | {"names": names}, out)
