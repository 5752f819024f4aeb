#!/bin/bash
# Interim check of issue 13's targets on fold A alone (not the medscribble study, which needs both folds):
# fold A's models (trained on ACDC, BTCV, HipXRay, STARE) on fold A's unseen tasks, click and human starts,
# 10 iterations. Run from the repository root: bash results/medscribble/interim-A/run.sh [OUT]
# (OUT, default /tmp/interim-A, gets the runs), then python3 results/medscribble/interim-A/summarise.py OUT.
set -u
D="medscribble:../shared/medscribble?tasks=CAMUS,OASIS,OCTA500,WBC"
C=results/medscribble/checkpoints/A
O=${1:-/tmp/interim-A}
mkdir -p "$O"
run() { # name method checkpoint policy k start
  probseg-simulate --dataset "$D" --method "$2" --checkpoint "$3" --policy "$4" --k "$5" --start "$6" \
    --max-iters 10 --workers 1 --out "$O/$1-$6" --no-progress --json > "$O/$1-$6.json" 2> "$O/$1-$6.err"
  echo "$(date +%T) $1 $6 rc=$?"
}
for s in clicks human; do
  run unet unet-complete $C/unet.pt first 1 $s
  for p in best-of-k model-ranked random-of-k; do
    run complete-$p probseg-complete $C/complete-k-ranked.pt $p 8 $s
    run partial-$p probseg $C/partial-k-ranked.pt $p 8 $s
  done
done
