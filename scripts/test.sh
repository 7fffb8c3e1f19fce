#!/usr/bin/env bash
# The one command that runs every test: unit tests, the multi-host lease
# tests, the torture test, the plugin through its C ABI, the end-to-end
# tests through real libvirtd + QEMU (one host, two hosts), and the install
# check (make install/uninstall/deb into scratch directories, from a release
# build), and every fuzz target for 8 s. Installs what it needs on a fresh
# Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets
# Lints, among them: every unsafe block carries a `// SAFETY:` comment.
cargo clippy --workspace --all-targets --quiet
cargo test --workspace -- --test-threads="${HL_TEST_THREADS:-2}"
bash scripts/fuzz.sh 8
bash scripts/check-install.sh
