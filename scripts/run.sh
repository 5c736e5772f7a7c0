#!/usr/bin/env bash
# Runs Portcullis on this machine in one command: builds the release binary,
# then `portcullis quickstart` starts the control plane, one edge, a demo app
# and the development identity provider on localhost, with SQLite in ./data.
# Extra arguments go to quickstart (e.g. --port-base 18000). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p portcullis
binary="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/portcullis"
echo "portcullis is $binary (put it on your PATH: cargo install --path cli --locked)" >&2
exec "$binary" quickstart "$@"
