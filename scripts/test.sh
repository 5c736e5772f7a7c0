#!/usr/bin/env bash
# Runs the whole test suite: system setup, then every crate's unit,
# integration, property and golden tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
