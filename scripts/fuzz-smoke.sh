#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (cargo fuzz, libFuzzer + AddressSanitizer)
# and runs each for a short while from its committed seed corpus
# (fuzz/corpus/<target>) plus the saved crash regressions
# (fuzz/regressions/<target>). Any crash, timeout or leak fails the run.
#
#   scripts/fuzz-smoke.sh                 every target, FUZZ_SECONDS (20) each
#   scripts/fuzz-smoke.sh request_target  one target
#
# cargo-fuzz needs nightly-only rustc flags; the pinned stable toolchain
# accepts them with RUSTC_BOOTSTRAP=1 (set here, for these builds only).
# Builds go to FUZZ_TARGET_DIR (outside the clone, so CI reuses them), never
# to the main build's target directory. Long runs: see fuzz/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
target_dir="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/fuzz-target}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz is missing (scripts/setup.sh installs it)" >&2
  exit 1
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
build_log=$(mktemp)
build() { cargo fuzz build --target-dir "$target_dir" "$@" >"$build_log" 2>&1 || { tail -n 80 "$build_log" >&2; echo "fuzz-smoke: build failed" >&2; exit 1; }; }
if [ $# -gt 0 ]; then
  for target in "${targets[@]}"; do build "$target"; done
else
  build
fi
rm -f "$build_log"
built=$(date +%s)
echo "fuzz-smoke: built ${#targets[@]} targets in $((built - start)) s" >&2

passed=0
failed=0
for target in "${targets[@]}"; do
  work=$(mktemp -d)
  inputs=("$work" "fuzz/corpus/$target")
  [ -d "fuzz/regressions/$target" ] && inputs+=("fuzz/regressions/$target")
  options=(-max_total_time="$seconds" -timeout=2 -rss_limit_mb=2048 -print_final_stats=1)
  [ -f "fuzz/dict/$target.dict" ] && options+=(-dict="fuzz/dict/$target.dict")
  log="$work.log"
  if cargo fuzz run --target-dir "$target_dir" "$target" "${inputs[@]}" -- "${options[@]}" >"$log" 2>&1; then
    passed=$((passed + 1))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz-smoke: $target ok: $runs executions in ${seconds} s, $cov" >&2
    rm -f "$log"
  else
    failed=$((failed + 1))
    echo "fuzz-smoke: $target FAILED; the last lines of its log ($log):" >&2
    tail -n 60 "$log" >&2
    # Print the failing inputs themselves: CI runs in a throwaway clone, so
    # an artifact left on its disk is lost with it.
    for artifact in "fuzz/artifacts/$target"/*; do
      [ -f "$artifact" ] && [ "$artifact" -nt "$work" ] || continue
      echo "fuzz-smoke: failing input $(basename "$artifact") ($(wc -c <"$artifact") bytes), base64:" >&2
      base64 -w 0 "$artifact" >&2
      echo >&2
    done
    echo "fuzz-smoke: reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run $target fuzz/artifacts/$target/<crash-file>" >&2
  fi
  rm -rf "$work"
done

echo "fuzz-smoke: $((passed + failed)) targets in $(($(date +%s) - start)) s" >&2
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
