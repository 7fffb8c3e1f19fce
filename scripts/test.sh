#!/usr/bin/env bash
# The one command that runs every test: unit tests, the multi-host lease
# tests and the torture test. Installs what it needs on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads="${HL_TEST_THREADS:-2}"
