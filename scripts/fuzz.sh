#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), then
# minimizes its corpus (fuzz/corpus/<target>, kept in the repository), and
# prints the executions per target. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`).
#
#   bash scripts/fuzz.sh 300        # five minutes per target
#   bash scripts/fuzz.sh 60 sealed_cookie
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(cookie_header session_id sealed_cookie stored_record)

cargo +nightly fuzz --version >/dev/null 2>&1 || {
  echo "scripts/fuzz.sh needs cargo-fuzz and a nightly toolchain: cargo install cargo-fuzz; rustup toolchain install nightly" >&2
  exit 2
}
mkdir -p target/logs
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${SECS}s"
  # Bounded: total time, input size, memory and time per input.
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$SECS" -max_len=8192 -rss_limit_mb=1024 -timeout=10 \
    >"target/logs/$t.log" 2>&1 || { tail -40 "target/logs/$t.log"; exit 1; }
  runs=$(grep -Eo 'Done [0-9]+ runs' "target/logs/$t.log" | tail -1)
  # Edges only (no hit counters): a small corpus that keeps the coverage.
  cargo +nightly fuzz cmin "$t" "corpus/$t" -- -use_counters=0 >"target/logs/$t.cmin.log" 2>&1
  echo "   $runs; corpus $(ls "corpus/$t" | wc -l) inputs, $(du -sh "corpus/$t" | cut -f1)"
done
