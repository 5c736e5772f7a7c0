#!/usr/bin/env bash
# Rewrites policies/tests/golden/*.expected from what the policy compiler
# prints today. Review the diff (git diff policies/tests/golden) before
# committing: every message should name the right line:column and say what
# was expected.
set -euo pipefail
cd "$(dirname "$0")/.."
PORTCULLIS_BLESS=1 cargo test -p portcullis-policy --test golden "$@"
git status --short policies/tests/golden
