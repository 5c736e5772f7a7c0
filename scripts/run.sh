#!/usr/bin/env bash
# Runs Portcullis on this machine. Today that is the policy engine on the
# example policy: check it, then explain a few decisions the edge would make.
# (The quickstart issue turns this into control plane + edge + demo app + IdP.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p portcullis
portcullis() { "${CARGO_TARGET_DIR:-target}/release/portcullis" "$@"; }

policy=policies/examples/company.yaml
portcullis policy check policies/examples/*.yaml
explain() { echo; echo "\$ portcullis policy explain --policy $policy $*"; portcullis policy explain --policy "$policy" "$@"; }
explain --email ada@corp.example --groups admins --host admin.corp.example --path /users --ip 203.0.113.7 --at 2026-11-23T10:00:00+01:00
explain --email ada@corp.example --groups admins --host admin.corp.example --path /users --ip 198.51.100.9 --at 2026-11-23T10:00:00+01:00
explain --host wiki.corp.example --path /healthz --ip 198.51.100.9
explain --email sam@corp.example --groups sre --tcp ssh.internal:22 --ip 198.51.100.9
