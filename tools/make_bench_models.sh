#!/usr/bin/env bash
# Writes the random checkpoints the model benchmark reads (bench/bench_model.c,
# docs/benchmarks.md) under DIR (default out/bench-models, git-ignored):
#
#   qwen0.5b-bf16   Qwen2.5-0.5B-shaped LLM (896 wide, 24 layers, 14 q / 2 kv heads,
#                   intermediate 4864, vocab 151669) + 4-block head, bf16  (~1.1 GB)
#   qwen0.5b-f32    the same shapes in f32, for the same-dtype comparison  (~2.2 GB)
#   qwen1.5b-bf16   Qwen2.5-1.5B-shaped LLM (1536 wide, 28 layers, 12 q / 2 kv heads,
#                   intermediate 8960) + 4-block head of the same width, bf16 (~4 GB),
#                   for the peak-memory test
#
#   tools/make_bench_models.sh [DIR] [which...]      which: 0.5b-bf16 0.5b-f32 1.5b-bf16
#
# A checkpoint already written (config.json present) is kept. Writing is CPU
# bound (random numbers): a few minutes per GB on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-out/bench-models}
shift || true
which=${*:-"0.5b-bf16 0.5b-f32 1.5b-bf16"}
writer=tools/reference/write_random_checkpoint.py
mkdir -p "$dir"

write() { # name, args...
    local name=$1
    shift
    if [ -f "$dir/$name/config.json" ]; then
        echo "keep $dir/$name"
        return
    fi
    echo "write $dir/$name"
    python3 "$writer" --out "$dir/$name.partial" "$@"
    rm -rf "$dir/$name"
    mv "$dir/$name.partial" "$dir/$name"
}

for w in $which; do
    case $w in
        0.5b-bf16) write qwen0.5b-bf16 --preset qwen0.5b --dtype bf16 ;;
        0.5b-f32) write qwen0.5b-f32 --preset qwen0.5b --dtype f32 ;;
        1.5b-bf16) write qwen1.5b-bf16 --dtype bf16 --vocab 151669 --hidden 1536 \
            --llm-layers 28 --llm-heads 12 --llm-kv-heads 2 --llm-head-dim 128 --intermediate 8960 \
            --head-layers 4 --head-heads 12 --head-kv-heads 2 --head-head-dim 128 \
            --head-intermediate 8960 ;;
        *) echo "unknown checkpoint '$w' (0.5b-bf16 0.5b-f32 1.5b-bf16)" >&2; exit 2 ;;
    esac
done
du -sh "$dir"/* 2>/dev/null || true
