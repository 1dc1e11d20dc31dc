#!/usr/bin/env bash
# The venv of tools/serve_openai_test.py: the official `openai` Python client
# (and pydantic, which it brings), in out/venv-serve (git-ignored).
# tests/test_serve_openai runs the client checks when this venv exists (CI
# makes it: .ci/run) and prints SKIP otherwise.
#
#   tools/setup_serve_venv.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-out/venv-serve}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -c 'import openai' 2>/dev/null || "$venv/bin/pip" install -q "openai==3.63.0"
"$venv/bin/python" -c 'import openai; print("serve venv ready: openai", openai.__version__)'
