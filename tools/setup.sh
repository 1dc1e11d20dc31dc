#!/usr/bin/env bash
# Installs what the engine needs on Debian 12 and builds it. Works as root
# (containers, fresh VMs: no sudo needed, none used) and as a user with sudo.
# TUNA_SETUP_DRY_RUN=1 prints the commands instead of running them (tests).
set -euo pipefail
cd "$(dirname "$0")/.."
run() {
    if [ "${TUNA_SETUP_DRY_RUN:-0}" = 1 ]; then echo "$*"; else "$@"; fi
}
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "tools/setup.sh: not root and sudo is not installed: run this script as root" >&2
        exit 1
    fi
    SUDO=(sudo)
fi
run "${SUDO[@]}" apt-get update -qq
run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config libopenblas-dev libpng-dev libjpeg62-turbo-dev \
    libcjson-dev libpcre2-dev libmicrohttpd-dev zlib1g-dev libutf8proc-dev \
    dataset-fashion-mnist fonts-dejavu-core
run make -j"$(nproc)"
