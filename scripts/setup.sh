#!/usr/bin/env bash
# Installs build and test dependencies on Debian 12 when missing.
set -euo pipefail
need=()
command -v cargo >/dev/null || { echo "setup: cargo is missing; install Rust (https://rustup.rs) first" >&2; exit 1; }
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to install: ${need[*]}" >&2; exit 1; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
