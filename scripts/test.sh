#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, integration, doc, trybuild
# compile-fail and HTTP end-to-end tests. Used by .ci/run and the README.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need: headless Chromium and its WebDriver for the
# browser test of the demo shop (tests/tests/browser.rs), and redis-server and
# redis-cli, which the Redis tests start on free loopback ports of their own.
# Installed when missing (needs root and apt-get).
NEED=(chromium chromium-driver redis-server redis-tools openssl)
missing=()
for pkg in "${NEED[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing packages ${missing[*]}: run 'sudo apt-get install ${missing[*]}'" >&2
    exit 2
  fi
fi

echo "== cargo fmt --all --check"
cargo fmt --all --check
echo "== cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo test --workspace --all-features (unit, integration, trybuild, HTTP end to end, browser, doc tests)"
cargo test --workspace --all-features
echo "== docs build without warnings (broken links, private links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p typed-session -p typed-session-derive -p typed-session-examples --quiet
echo "== every feature combination of typed-session builds"
# Hand-picked rather than `cargo hack --feature-powerset`: the powerset of
# the 8 features is 256 builds, over an hour on the 2-core CI machines. The
# list covers each feature alone, each store with and without `derive`,
# the stores together, and each optional feature (TLS, metrics, the shape
# check) with the full set. The code's `cfg`s are one feature each, except
# where the memory and file stores meet (backend/erased.rs), and that pair
# is here with and without `derive`.
for features in "" "metrics" "derive" "memory-store" "file-store" "redis-store" "derive,memory-store" "derive,file-store" "memory-store,file-store" "derive,memory-store,file-store" "cookie-store" "derive,cookie-store" "derive,memory-store,file-store,redis-store" "derive,memory-store,file-store,redis-store,cookie-store" "redis-tls" "derive,memory-store,file-store,redis-tls,cookie-store" "schema-check" "derive,schema-check"; do
  echo "   --no-default-features --features '$features'"
  cargo check -p typed-session --no-default-features --features "$features" --quiet
done
echo "== all tests passed"
