#!/usr/bin/env bash
# Our engine against llama.cpp on the same weights, same threads, one run (docs/quantization.md).
#
#   tools/bench_llama_cpp.sh [MODEL_DIR] [THREADS] [WORKDIR]
#     MODEL_DIR  a Tuna-2 checkpoint (default /work/bench-models/qwen0.5b-bf16, the
#                Qwen2.5-0.5B-shaped bench model of tools/make_bench_models.sh)
#     THREADS    default 2;  WORKDIR default out/llama (git-ignored)
#
# llama.cpp's source comes from PyPI's llama-cpp-python 0.3.36 source distribution
# (vendor/llama.cpp, commit 0c1e570), built with cmake -DGGML_NATIVE=ON (llama-bench,
# llama-quantize). No torch: the LLM of MODEL_DIR is written as a llama.cpp "qwen2" GGUF by
# tools/llama_bench_model.py from our own bf16 GGUF of it (`tuna quantize --type bf16`), so both
# engines run the same bf16 weights; llama-quantize makes Q8_0 and Q4_K_M from it, our
# `tuna quantize` makes q8_0 and q4_k from the checkpoint. Then, alternating engines per type:
#   llama-bench -p 512 -n 64 -t THREADS  (pp512, tg64 from an empty context), llama-bench -p 0 -n 64
#   -d 512 (tg64 after 512 tokens of context: what `tuna bench` measures), and
#   tuna bench --threads THREADS --gen-steps 0
# Every step is skipped when its output exists. Needs cmake, a C++ compiler and the gguf venv.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-/work/bench-models/qwen0.5b-bf16}
T=${2:-2}
W=${3:-out/llama}
TUNA=${TUNA:-build/tuna}
TOKENIZER=${TOKENIZER:-../shared/tokenizer/tuna2/tokenizer.json}
mkdir -p "$W/models"
tools/setup_gguf_venv.sh >/dev/null
PY=out/venv-gguf/bin/python
if [ ! -d "$W/llama.cpp" ]; then
    out/venv-gguf/bin/pip download -q --no-deps --no-binary :all: -d "$W/dl" llama-cpp-python==0.3.36
    tar -xzf "$W/dl/llama_cpp_python-0.3.36.tar.gz" -C "$W/dl"
    mv "$W/dl/llama_cpp_python-0.3.36/vendor/llama.cpp" "$W/llama.cpp"
fi
if [ ! -x "$W/llama.cpp/build/bin/llama-bench" ]; then
    (cd "$W/llama.cpp" && cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DGGML_OPENMP=ON -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null && cmake --build build -j"$(nproc)" --target llama-bench llama-quantize >/dev/null)
fi
BIN=$W/llama.cpp/build/bin
[ -f "$W/models/tuna-bf16/model.gguf" ] || "$TUNA" quantize -m "$MODEL" -o "$W/models/tuna-bf16" --type bf16 --quiet
[ -f "$W/models/qwen05-bf16.gguf" ] || $PY tools/llama_bench_model.py "$W/models/tuna-bf16/model.gguf" "$TOKENIZER" "$W/models/qwen05-bf16.gguf"
for q in Q8_0 Q4_K_M; do
    f=$W/models/qwen05-$(echo $q | tr A-Z a-z).gguf
    [ -f "$f" ] || "$BIN/llama-quantize" "$W/models/qwen05-bf16.gguf" "$f" $q >/dev/null 2>&1
done
for q in q8_0 q4_k; do
    [ -f "$W/models/tuna-$q/model.gguf" ] || "$TUNA" quantize -m "$MODEL" -o "$W/models/tuna-$q" --type $q --quiet >/dev/null
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg); threads $T"
for pair in "bf16 bf16 $MODEL" "q8_0 q8_0 $W/models/tuna-q8_0" "q4_k_m q4_k $W/models/tuna-q4_k"; do
    set -- $pair
    echo "== llama.cpp $1"
    "$BIN/llama-bench" -m "$W/models/qwen05-$1.gguf" -t "$T" -p 512 -n 64 -r 3 2>/dev/null | grep -E "pp512|tg64"
    "$BIN/llama-bench" -m "$W/models/qwen05-$1.gguf" -t "$T" -p 0 -n 64 -d 512 -r 3 2>/dev/null | grep -E "tg64"
    echo "== tuna $2"
    "$TUNA" bench -m "$3" --threads "$T" --reps 3 --gen-steps 0 --json "$W/tuna-$2.json" | sed -n 2p
done
