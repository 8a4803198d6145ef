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
#     REGION_COORDS=1  region words read through their lattice value from the first step (train --region-coords)
set -euo pipefail
W=${1:-runs}
EDIT_OPS=${EDIT_OPS:-0.25}
COORDS=()
[ "${REGION_COORDS:-0}" = 1 ] && COORDS=(--region-coords)
mkdir -p "$W"
t0=$(date +%s)
stamp() { echo "== $1 done after $(( ($(date +%s) - t0) / 60 )) min" | tee -a "$W/times.txt"; }

# Pipeline 1: plan/sketch trajectories (45% long coloured compositions, data/trajectories.py).
sketchloop data build --kind trajectories --n 32000 --out "$W/traj" --seed 0 --workers 2 --edit-ops "$EDIT_OPS"
stamp trajectories
# Stage 1: plan + sketch (text CE on plans and regions, flow matching on crops and whole canvases; each
# region's image condition reads its own object's words, docs/design.md).
sketchloop train --stage plan-sketch --data "$W/traj" --out "$W/s1" --steps 4000 --batch-size 24 --save-every 500 \
    "${COORDS[@]}"
stamp plan-sketch
# ... and a second pass over the same data (a fresh warmup and cosine at half the rate): copying long
# prompts into <des> was still rare at 4,000 steps (1 of 20 shapes-complex-val prompts).
sketchloop train --stage plan-sketch --data "$W/traj" --init "$W/s1" --out "$W/s1b" --steps 2000 --batch-size 24 \
    --lr 1e-3 --save-every 500; stamp plan-sketch-2
# Pipeline 2, self-sampled: the stage-1 model's own plans and sketches at its inference settings,
# each inspected step labelled by the exact judge; consistent steps, plan and image conflicts balanced.
# The region rules on, the phrase grammar off: plans in the model's own phrases (more natural plan conflicts);
# chosen on shapes-complex-val over plans under the phrase grammar (0.445 against 0.425, 400 images).
sketchloop data build --kind inspect --n 3000 --out "$W/inspect" --seed 2 --workers 2 --checkpoint "$W/s1b" \
    --set guided=true --set copy_phrases=false; stamp inspect-data
# Stage 2: inspect; stage 3: plans, sketches and inspections together (so planning is not forgotten).
sketchloop train --stage inspect --data "$W/inspect" --init "$W/s1b" --out "$W/s2" --steps 1000 --lr 1e-3; stamp inspect
sketchloop train --stage joint --data "$W/traj" --data "$W/inspect" --init "$W/s2" --out "$W/s3" \
    --steps 800 --lr 5e-4; stamp joint
# Stage 4: the same mix again.
sketchloop train --stage joint --data "$W/traj" --data "$W/inspect" --init "$W/s3" --out "$W/s4" \
    --steps 800 --lr 5e-4; stamp joint-2
# Stage 5, the learned model alone: 32K more trajectories in which every plan adds (--edit-ops 0: a planner that
# never reads the canvas cannot learn why a detour step comes) and 30% of the prompts are worded as people write
# them (synonyms, relations either way round, bare back-references; the plans canonical); then the pointer over
# the prompt (--copy-prompt, models/unified.py _Pointer) is added and trained on both halves (docs/design.md).
sketchloop data build --kind trajectories --n 16000 --out "$W/traj-a" --seed 21 --workers 2 --edit-ops 0 --wording 0.3
sketchloop data build --kind trajectories --n 16000 --out "$W/traj-b" --seed 22 --workers 2 --edit-ops 0 --wording 0.3
stamp trajectories-2
sketchloop train --stage plan-sketch --data "$W/traj-a" --init "$W/s4" --out "$W/s5" --steps 2500 --lr 1e-3 \
    --save-every 500; stamp plan-sketch-3
sketchloop train --stage plan-sketch --data "$W/traj-a" --data "$W/traj-b" --init "$W/s5" --out "$W/s6" \
    --steps 3000 --lr 1e-3 --save-every 500 --copy-prompt; stamp plan-sketch-pointer
# Stage 6: the stage-5 model's own rollouts at its inference settings (the model alone, greedy), judged exactly,
# an inspect pass over them and a joint pass over them and the trajectories, so that its inspections read its
# own plans.
sketchloop data build --kind inspect --n 1000 --out "$W/inspect-2" --seed 23 --workers 2 --checkpoint "$W/s6"
stamp inspect-data-2
sketchloop train --stage inspect --data "$W/inspect-2" --init "$W/s6" --out "$W/s6i" --steps 600 --lr 1e-3
stamp inspect-2
sketchloop train --stage joint --data "$W/traj-a" --data "$W/traj-b" --data "$W/inspect-2" --init "$W/s6i" \
    --out "$W/s7" --steps 800 --lr 5e-4; stamp joint-3
# Stage 7, knowledge (world/knowledge.py, the WISE half of the paper): 16K more add-only trajectories in which 60% of
# the prompts not worded otherwise name one group's colour, count or shape through a fact of the knowledge base's
# trajectory split (the plans plain: "add a black circle"), and the plain-text facts corpus (the trajectory and the
# text split; held-out facts appear nowhere). The vocabulary grows by the knowledge words (new rows start fresh,
# every other weight and id kept). Then the model's own rollouts, 40% of them on knowledge prompts (a plan conflict
# on a group named through a fact says the fact), an inspect pass and a joint pass over everything.
sketchloop data build --kind trajectories --n 16000 --out "$W/traj-k" --seed 31 --workers 2 --edit-ops 0 --wording 0.3 \
    --knowledge 0.6
sketchloop data build --kind facts --n 6000 --out "$W/facts" --seed 32 --workers 2 --shard-size 3000
stamp knowledge-data
sketchloop train --stage plan-sketch --data "$W/traj-a" --data "$W/traj-b" --data "$W/traj-k" --data "$W/facts" \
    --init "$W/s7" --out "$W/s8" --steps 2500 --lr 5e-4 --save-every 500; stamp plan-sketch-knowledge
sketchloop data build --kind inspect --n 1000 --out "$W/inspect-k" --seed 33 --workers 2 --checkpoint "$W/s8" \
    --knowledge 0.4; stamp inspect-data-3
sketchloop train --stage inspect --data "$W/inspect-k" --init "$W/s8" --out "$W/s8i" --steps 600 --lr 1e-3
stamp inspect-3
sketchloop train --stage joint --data "$W/traj-a" --data "$W/traj-b" --data "$W/traj-k" --data "$W/facts" \
    --data "$W/inspect-k" --init "$W/s8i" --out "$W/s9" --steps 800 --lr 5e-4; stamp joint-4
# Stage 8, depth and counted parts (docs/shapesworld.md, "Depth and counted parts"): 10K more add-only trajectories
# in which 16% of the scenes hold a pair in depth (drawn back first: a region that overlaps what is drawn paints over
# it) and 23% stars with a stated number of points (the shares of the shipped run's set), 15% of the plain prompts
# naming an attribute through a fact; a plan-sketch pass over them three times over (a third of what it reads), one
# stage-5 set, the knowledge set and the corpus, the vocabulary grown by the depth and points words; then the model's
# own rollouts on such scenes, an inspect pass and a joint pass over everything.
sketchloop data build --kind trajectories --n 10000 --out "$W/traj-d" --seed 41 --workers 2 --edit-ops 0 --wording 0.3 \
    --depth 0.16 --parts 0.23 --knowledge 0.15; stamp depth-data
D=(--data "$W/traj-a" --data "$W/traj-k" --data "$W/facts" --data "$W/traj-d" --data "$W/traj-d" --data "$W/traj-d")
sketchloop train --stage plan-sketch "${D[@]}" --init "$W/s9" --out "$W/s10" --steps 3000 --lr 7e-4 --save-every 500
stamp plan-sketch-depth
sketchloop data build --kind inspect --n 1000 --out "$W/inspect-d" --seed 43 --workers 2 --checkpoint "$W/s10" \
    --knowledge 0.3 --depth 0.35 --parts 0.3; stamp inspect-data-4
sketchloop train --stage inspect --data "$W/inspect-d" --data "$W/inspect-k" --init "$W/s10" --out "$W/s10i" \
    --steps 600 --lr 1e-3; stamp inspect-4
sketchloop train --stage joint "${D[@]}" --data "$W/inspect-d" --data "$W/inspect-k" --init "$W/s10i" --out "$W/s11" \
    --steps 800 --lr 5e-4; stamp joint-5
# Stage 9, drawing depth and points: 6K more add-only trajectories, half of the scenes with a pair in depth and 35%
# with stars of a stated number of points; two passes of the image expert alone (`--stage image`: every text weight
# kept) over them, the stage-8 set and a stage-5 set, with 40% and then 50% of each step's crops hard ones (drawn over
# paint already there, or with counted parts; training/sequences.py FlowItem.hard); then a plan-sketch pass over
# everything with the new set twice (the planner's regions for a pair in depth overlapped twice as much as the
# teacher's) and a joint pass with the inspect sets.
sketchloop data build --kind trajectories --n 6000 --out "$W/traj-o" --seed 51 --workers 2 --edit-ops 0 --wording 0.3 \
    --depth 0.5 --parts 0.35 --knowledge 0.15; stamp hard-data
I=(--data "$W/traj-o" --data "$W/traj-d" --data "$W/traj-a")
sketchloop train --stage image "${I[@]}" --init "$W/s11" --out "$W/i1" --steps 1500 --lr 5e-4 --hard-crops 0.4 \
    --save-every 250; stamp image
sketchloop train --stage image "${I[@]}" --init "$W/i1" --out "$W/i2" --steps 2000 --lr 5e-4 --hard-crops 0.5 \
    --save-every 500; stamp image-2
D=(--data "$W/traj-a" --data "$W/traj-k" --data "$W/facts" --data "$W/traj-d" --data "$W/traj-o" --data "$W/traj-o")
sketchloop train --stage plan-sketch "${D[@]}" --init "$W/i2" --out "$W/s13" --steps 2000 --lr 5e-4 --hard-crops 0.3 \
    --save-every 500; stamp plan-sketch-hard
sketchloop train --stage joint "${D[@]}" --data "$W/inspect-d" --data "$W/inspect-k" --init "$W/s13" --out "$W/s14" \
    --steps 800 --lr 5e-4; stamp joint-6
# Stage 10, one colour for an uncoloured group: the teacher now paints "a diamond" red (or the next of
# layout.FREE_COLOURS that may overlap its depth partners) where it used to pick a colour at random, which the
# image expert had learned as a blend of colours. 7K trajectories of the new convention (a third of them with a
# pair in depth, a fifth with counted stars) and one pass of the image expert alone over them.
sketchloop data build --kind trajectories --n 7000 --out "$W/traj-u" --seed 61 --workers 2 --edit-ops 0 --wording 0.3 \
    --depth 0.35 --parts 0.2 --knowledge 0.1; stamp one-colour-data
sketchloop train --stage image --data "$W/traj-u" --init "$W/s14" --out "$W/i3" --steps 2500 --lr 5e-4 \
    --hard-crops 0.4 --save-every 500; stamp image-3
# Stage 11, plans in the prompt's own words: until now a worded prompt's steps were written for the scene sampled
# before the wording, so a third of its `<des>` stated a relation the other way round from the prompt or named the
# groups in another order, which no planner can read off the prompt (data/trajectories.py draw_trajectory).
# 9K trajectories with the steps written for the scene as the prompt states it, half of them worded; a joint pass
# over them twice, the stage-10 set, the corpus and the inspect sets; a second one with a stage-5 set added back
# (the new sets hold a tenth of its counted groups, and after the first pass the planner put a group's regions on
# top of each other); then the image expert alone on the two sets drawn the stage-10 way, so that it paints an
# uncoloured group in one colour again.
sketchloop data build --kind trajectories --n 9000 --out "$W/traj-w" --seed 71 --workers 2 --edit-ops 0 --wording 0.5 \
    --depth 0.3 --parts 0.2 --knowledge 0.1; stamp prompt-order-data
sketchloop train --stage joint --data "$W/traj-w" --data "$W/traj-w" --data "$W/traj-u" --data "$W/facts" \
    --data "$W/inspect-d" --data "$W/inspect-k" --init "$W/i3" --out "$W/s15" --steps 2500 --lr 5e-4 \
    --hard-crops 0.3 --save-every 500; stamp joint-7
sketchloop train --stage joint --data "$W/traj-w" --data "$W/traj-a" --data "$W/traj-u" --data "$W/facts" \
    --data "$W/inspect-d" --data "$W/inspect-k" --init "$W/s15" --out "$W/s16" --steps 1500 --lr 3e-4 \
    --hard-crops 0.3 --save-every 500; stamp joint-8
sketchloop train --stage image --data "$W/traj-w" --data "$W/traj-u" --init "$W/s16" --out "$W/i4" --steps 1000 \
    --lr 5e-4 --hard-crops 0.4 --save-every 500; stamp image-4
# Stage 12, the region map (models/unified.py _RegionMap): a spatial head over the regions written before, trained
# alone on the region words of 5,500 more trajectories of the stage-11 recipe with 20% counted scenes; every other
# weight kept bit for bit. The planner kept placing new objects on drawn ones; on the map, where there is room is
# one neighbourhood away.
sketchloop data build --kind trajectories --n 5500 --out "$W/traj-r" --seed 171 --workers 2 --edit-ops 0 --wording 0.5 \
    --depth 0.3 --parts 0.2 --knowledge 0.1 --counts 0.2; stamp region-map-data
sketchloop train --stage regions --data "$W/traj-r" --init "$W/i4" --out "$W/r1" --steps 2000 --lr 2e-3 --region-map \
    --save-every 250; stamp region-map
# The plan check (models/plan_check.py): a small head over the final planner's own surprise at a plan, trained on
# its own plans from random scenes, half of them long compositions (right ones, ones made wrong, right ones worded
# as the wrong ones are); its threshold and the image check's chosen together on two rollouts of each
# shapes-complex-val prompt, right steps flagged at most 0.04 (docs/design.md, "The self-check").
python scripts/train_plan_check.py --checkpoint "$W/r1" --examples "${PLAN_CHECK_EXAMPLES:-1000}" \
    --long-examples "${PLAN_CHECK_LONG_EXAMPLES:-1000}" --val-seeds 2 --work "$W/plan-check" --workers 2
stamp plan-check
# Ship the EMA weights (not the optimizer state), the plan check and the sampling defaults.
[ "${SHIP:-1}" = 0 ] && { echo "trained $W/r1 (not shipped: SHIP=0)"; exit 0; }
dest=sketchloop/checkpoints/shapes-unified
mkdir -p "$dest"
cp "$W/r1/model.safetensors" "$W/r1/config.json" "$W/r1/tokenizer.json" "$W/r1/plan_check.safetensors" \
    "$W/r1/plan_check.json" "$dest/"
python -c "from sketchloop.models.sampling import SamplingConfig; SamplingConfig().save_pretrained('$dest')"
echo "shipped $dest"
