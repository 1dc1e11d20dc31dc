#!/usr/bin/env bash
# The venv of tools/gguf_interop.py: ggml's own GGUF package (PyPI `gguf`) and
# numpy, in out/venv-gguf (git-ignored). tests/test_gguf runs the interop check
# when this venv exists (CI makes it: .ci/run) and prints SKIP otherwise.
#
#   tools/setup_gguf_venv.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-out/venv-gguf}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null || "$venv/bin/pip" install -q "gguf==0.19.0" "numpy<3"
"$venv/bin/python" -c 'import gguf, numpy; print("gguf venv ready:", gguf.__file__)'
