#!/usr/bin/env bash
# One long fuzz run of an already built target (see fuzz/RESULTS.md):
#   fuzz/long-run.sh <binary-dir> <target> <runs>
# Runs at nice 19 so other builds are not starved; the growing corpus goes to
# ~/.cache/portcullis/fuzz-corpus/<target> (the committed seeds are read
# only), crashes to fuzz/artifacts/<target>/, the log to fuzz/artifacts/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
bin_dir=$1 target=$2 runs=$3
work="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/fuzz-corpus/$target"
mkdir -p "$work" "artifacts/$target"
inputs=("$work" "corpus/$target")
[ -d "regressions/$target" ] && inputs+=("regressions/$target")
exec nice -n 19 "$bin_dir/$target" "${inputs[@]}" -dict="dict/$target.dict" -runs="$runs" -max_len=4096 \
  -timeout=2 -report_slow_units=1 -rss_limit_mb=2048 -max_total_time="${FUZZ_MAX_SECONDS:-5400}" \
  -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"artifacts/$target.log" 2>&1
