#!/usr/bin/env bash
# The weights of the paper table's rows that are not the shipped checkpoint (docs/paper-table.md):
#
#     bash scripts/train_paper_rows.sh [WORKDIR]      # default WORKDIR: runs/paper
#
# WORKDIR must hold the shipped recipe's data and stage-1 checkpoint (bash scripts/train_shipped.sh
# WORKDIR/recipe, or links to them): traj/ (32K trajectories), inspect/ (3,000 self-sampled
# inspect examples), s1b/ (stage 1) and s3/ (stage 3, the inspect-supervision ablations' reference). Every
# ablation starts from that same s1b and runs the recipe's steps and rates up to its stage 3; only its inspect
# data changes. Every command resumes where it stopped.
set -euo pipefail
W=${1:-runs/paper}
R=${RECIPE:-$W/recipe}
for need in traj inspect s1b s3; do
  [ -e "$R/$need" ] || { echo "error: $R/$need missing: run bash scripts/train_shipped.sh $R first (or set RECIPE)"; exit 2; }
done
mkdir -p "$W"
t0=$(date +%s)
stamp() { echo "== $1 done after $(( ($(date +%s) - t0) / 60 )) min" | tee -a "$W/times.txt"; }

# Inspect supervision: plan conflicts only, image conflicts only (subsets of the recipe's inspect data).
for v in plan image; do
  [ -d "$W/$v/data" ] || sketchloop data subset "$R/inspect" --out "$W/$v" --target consistent --target "$v"
  sketchloop train --stage inspect --data "$W/$v" --init "$R/s1b" --out "$W/$v-s2" --steps 1000 --lr 1e-3 --save-every 500
  sketchloop train --stage joint --data "$R/traj" --data "$W/$v" --init "$W/$v-s2" --out "$W/$v-s3" --steps 800 \
      --lr 5e-4 --save-every 400; stamp "$v"
done
# ... and none: the same 1,000 + 800 steps on trajectories alone.
sketchloop train --stage plan-sketch --data "$R/traj" --init "$R/s1b" --out "$W/none-s2" --steps 1000 --lr 1e-3 --save-every 500
sketchloop train --stage joint --data "$R/traj" --init "$W/none-s2" --out "$W/none-s3" --steps 800 --lr 5e-4 --save-every 400
stamp none
# Critique source: symbolic (perturbed teacher trajectories judged on the scene graph) instead of self-sampled.
sketchloop data build --kind inspect --n 3000 --out "$W/sym" --seed 2 --workers 2
sketchloop train --stage inspect --data "$W/sym" --init "$R/s1b" --out "$W/sym-s2" --steps 1000 --lr 1e-3 --save-every 500
sketchloop train --stage joint --data "$R/traj" --data "$W/sym" --init "$W/sym-s2" --out "$W/sym-s3" --steps 800 \
    --lr 5e-4 --save-every 400; stamp symbolic
# One-shot layout: the same trajectories as one step each (one plan naming the whole scene, one image with every
# region), trained from scratch with the recipe's steps and rates (stage 1 and its second pass, then the 1,000 + 800).
[ -d "$W/one-step/data" ] || sketchloop data one-step "$R/traj" --out "$W/one-step"
sketchloop train --stage plan-sketch --data "$W/one-step" --out "$W/one-step-s1" --steps 4000 --batch-size 24 --save-every 500
sketchloop train --stage plan-sketch --data "$W/one-step" --init "$W/one-step-s1" --out "$W/one-step-s1b" --steps 2000 \
    --batch-size 24 --lr 1e-3 --save-every 500
sketchloop train --stage plan-sketch --data "$W/one-step" --init "$W/one-step-s1b" --out "$W/one-step-s2" --steps 1000 \
    --lr 1e-3 --save-every 500
sketchloop train --stage joint --data "$W/one-step" --init "$W/one-step-s2" --out "$W/one-step-s3" --steps 800 --lr 5e-4 \
    --save-every 400
# ... and the shipped recipe's fourth stage. Every stage reads each region's own object (a one-shot step names the
# whole scene: read whole, every region's condition was the same, and the image expert learned to ignore it).
sketchloop train --stage joint --data "$W/one-step" --init "$W/one-step-s3" --out "$W/one-step-s4" --steps 800 --lr 5e-4 \
    --save-every 400; stamp one-step
# The text-to-image baseline: same parameter count, the same scenes' final images, the recipe's first three
# stages' 7,800 steps (the shipped model's fourth stage adds 800 more).
sketchloop train --stage t2i --data "$R/traj" --out "$W/t2i" --steps 7800 --batch-size 8 --save-every 500; stamp t2i
# The paper's instruction-diversity ablation: the shipped recipe on additive-only trajectories (--edit-ops 0),
# about 104 min.
EDIT_OPS=0 SHIP=0 bash "$(dirname "$0")/train_shipped.sh" "$W/edit0"; stamp edit-ops-0
