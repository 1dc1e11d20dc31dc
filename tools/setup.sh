#!/usr/bin/env bash
# Installs what the engine needs on Debian 12 and builds it.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config libopenblas-dev libpng-dev libjpeg62-turbo-dev \
    libcjson-dev libpcre2-dev libmicrohttpd-dev zlib1g-dev libutf8proc-dev \
    dataset-fashion-mnist fonts-dejavu-core >/dev/null
make -j"$(nproc)"
