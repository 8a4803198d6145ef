#!/usr/bin/env bash
# Reproduce the shipped checkpoint (sketchloop/checkpoints/shapes-unified) from scratch,
# data included, on a 2-core CPU:
#
#     bash scripts/train_shipped.sh [WORKDIR]        # default WORKDIR: runs/
#
# Every command resumes where it stopped if the script is run again. Times measured on
# the 2-core development machine are in docs/training.md. No data build holds a
# benchmark's scene or a held-out colour-shape pair (evaluation/heldout.py).
#
# The same recipe serves the paper table's variants (scripts/train_paper_rows.sh), with
#     EDIT_OPS=0       trajectories built with --edit-ops 0 (additive only; default 0.25)
#     SHIP=0           the weights stay in WORKDIR (not copied to the shipped checkpoint)
set -euo pipefail
W=${1:-runs}
EDIT_OPS=${EDIT_OPS:-0.25}
mkdir -p "$W"
t0=$(date +%s)
stamp() { echo "== $1 done after $(( ($(date +%s) - t0) / 60 )) min" | tee -a "$W/times.txt"; }

# Pipeline 1: plan/sketch trajectories (45% long coloured compositions, data/trajectories.py).
sketchloop data build --kind trajectories --n 32000 --out "$W/traj" --seed 0 --workers 2 --edit-ops "$EDIT_OPS"
stamp trajectories
# Stage 1: plan + sketch (text CE on plans and regions, flow matching on crops and whole canvases; each
# region's image condition reads its own object's words, docs/design.md).
sketchloop train --stage plan-sketch --data "$W/traj" --out "$W/s1" --steps 4000 --batch-size 24 --save-every 500
stamp plan-sketch
# ... and a second pass over the same data (a fresh warmup and cosine at half the rate): copying long
# prompts into <des> was still rare at 4,000 steps (1 of 20 shapes-complex-val prompts).
sketchloop train --stage plan-sketch --data "$W/traj" --init "$W/s1" --out "$W/s1b" --steps 2000 --batch-size 24 \
    --lr 1e-3 --save-every 500; stamp plan-sketch-2
# Pipeline 2, self-sampled: the stage-1 model's own plans and sketches at its inference settings,
# each inspected step labelled by the exact judge; consistent steps, plan and image conflicts balanced.
# --free-plans: the plans in the model's own phrases (more natural plan conflicts); chosen on
# shapes-complex-val over plans under the phrase grammar (0.445 against 0.425, 400 images).
sketchloop data build --kind inspect --n 3000 --out "$W/inspect" --seed 2 --workers 2 --checkpoint "$W/s1b" \
    --free-plans; stamp inspect-data
# Stage 2: inspect; stage 3: plans, sketches and inspections together (so planning is not forgotten).
sketchloop train --stage inspect --data "$W/inspect" --init "$W/s1b" --out "$W/s2" --steps 1000 --lr 1e-3; stamp inspect
sketchloop train --stage joint --data "$W/traj" --data "$W/inspect" --init "$W/s2" --out "$W/s3" \
    --steps 800 --lr 5e-4; stamp joint
# Stage 4: the same mix again.
sketchloop train --stage joint --data "$W/traj" --data "$W/inspect" --init "$W/s3" --out "$W/s4" \
    --steps 800 --lr 5e-4; stamp joint-2
# The plan check (models/plan_check.py): a small head over the final planner's own surprise at a plan, trained on
# its own plans from random scenes, half of them long compositions (right ones, ones made wrong, right ones worded
# as the wrong ones are); its threshold and the image check's chosen together on three rollouts of each
# shapes-complex-val prompt, right steps flagged at most 0.04 (docs/design.md, "The self-check").
python scripts/train_plan_check.py --checkpoint "$W/s4" --examples "${PLAN_CHECK_EXAMPLES:-3000}" \
    --long-examples "${PLAN_CHECK_LONG_EXAMPLES:-3000}" --work "$W/plan-check" --workers 2; stamp plan-check
# Ship the EMA weights (not the optimizer state), the plan check and the sampling defaults.
[ "${SHIP:-1}" = 0 ] && { echo "trained $W/s4 (not shipped: SHIP=0)"; exit 0; }
dest=sketchloop/checkpoints/shapes-unified
mkdir -p "$dest"
cp "$W/s4/model.safetensors" "$W/s4/config.json" "$W/s4/tokenizer.json" "$W/s4/plan_check.safetensors" \
    "$W/s4/plan_check.json" "$dest/"
python -c "from sketchloop.models.sampling import SamplingConfig; SamplingConfig().save_pretrained('$dest')"
echo "shipped $dest"
