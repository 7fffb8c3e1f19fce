#!/usr/bin/env bash
# Long torture run: the multi-host torture test (tests/torture.rs) for
# HL_TORTURE_SECS seconds (default 1800 = 30 min). Replay a failure with
# HL_TORTURE_SEED=<seed printed by the failing run>.
set -euo pipefail
cd "$(dirname "$0")/.."
export HL_TORTURE_SECS="${HL_TORTURE_SECS:-1800}"
cargo build --all-targets -p highlander-tests
exec cargo test -p highlander-tests --test torture torture -- --exact --nocapture
