#!/usr/bin/env bash
# Restoration benchmark on the bundled model (docs/restoration.md):
#
#   tools/restore_bench.sh DATASET_DIR [OUT_DIR] [BUDGETS_STEPS...]
#
# DATASET_DIR is tools/make_dataset.py's output (train streams + eval/all.jsonl).
# 1. reference R: the bundled model fine-tuned briefly (so nothing compares
#    against the shipped weights);
# 2. damaged D: R with k LLM layers and k head blocks re-initialised (rule mixed);
# 3. D restored by `tuna restore` under each budget (neutralised), once without
#    neutralising, and the official recipe (fine-tune everything, lr 2e-5, warmup
#    1000) and everything at the restore lr, under the same budget;
# 4. every model scored by `tuna eval` on the same held-out subset, and by the
#    restore probe loss.
# Budgets are optimizer steps on one thread (--threads 1), reported with the CPU time
# they took: CPU seconds do not depend on what else the machine runs, wall-clock
# minutes on a shared machine would. Writes OUT_DIR/results.md (and recovery.png).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: tools/restore_bench.sh DATASET_DIR [OUT_DIR] [BUDGETS_STEPS...]}
out=${2:-out/restore-bench}
shift 2 || shift $#
budgets=${*:-"50 200"}
k=${K:-1}
tuna=${TUNA:-build/tuna}
mkdir -p "$out"
keys=(--t2i_jsonl "$data/t2i.jsonl" --mmu_jsonl "$data/understanding.jsonl" --edit_jsonl "$data/edit.jsonl"
      --text_jsonl "$data/text.jsonl" --t2i_batch_size 8 --mmu_batch_size 8 --edit_batch_size 8
      --text_batch_size 8 --buckets 32x32 --und_layout inference --seed 1 --probe_samples 32 --threads 1 -q)
eval_args=(--only "${EVAL_KINDS:-understand,generate}" --max-per-group "${EVAL_PER_GROUP:-6}" --steps 10 -q)

score() { # name model_dir
    local name=$1 model=$2
    [ -f "$out/$name.eval.json" ] || "$tuna" eval -m "$model" "$data/eval/all.jsonl" "${eval_args[@]}" \
        --json "$out/$name.eval.json" > "$out/$name.eval.txt"
}

# 1. the reference: 40 steps at a low rate over everything
if [ ! -f "$out/ref/model.safetensors" ]; then
    "$tuna" restore -m models/tuna2-small -o "$out/ref" --layers tuna.model,tuna.lm_head,diffusion_head_a,diffusion_head_b,time_embed,vision_encoder,mask_token \
        --no-neutralize --max_steps 40 --learning_rate 1e-4 "${keys[@]}"
fi
score ref "$out/ref"

# 2. the damage
units="tuna.model.layers.1,diffusion_head_a.1"
[ "$k" = 2 ] && units="tuna.model.layers.1,tuna.model.layers.2,diffusion_head_a.0,diffusion_head_a.1"
[ -f "$out/damaged-k$k/model.safetensors" ] ||
    "$tuna" restore damage -m "$out/ref" -o "$out/damaged-k$k" --layers "$units" --rule mixed --seed 7
"$tuna" restore detect -m "$out/damaged-k$k" > "$out/damaged-k$k.detect.txt"
score "damaged-k$k" "$out/damaged-k$k"

run() { # name steps args...
    local name=$1 steps=$2
    shift 2
    [ -f "$out/$name/restore_report.json" ] ||
        "$tuna" restore -m "$out/damaged-k$k" -o "$out/$name" --max_steps "$steps" "$@" "${keys[@]}"
    score "$name" "$out/$name"
}
everything="tuna.model,tuna.lm_head,diffusion_head_a,diffusion_head_b,time_embed,vision_encoder,mask_token"
for n in $budgets; do run "k$k-restore-${n}steps" "$n"; done
last=$(echo "$budgets" | awk '{print $NF}')
run "k$k-no-neutralize-${last}steps" "$last" --no-neutralize
run "k$k-official-${last}steps" "$last" --layers "$everything" --no-neutralize --learning_rate 2e-5 --warmup_steps 1000
[ -n "${WITH_ALL:-}" ] && run "k$k-all-${last}steps" "$last" --layers "$everything" --no-neutralize

python3 tools/restore_bench_report.py "$out" > "$out/results.md"
cat "$out/results.md"
