#!/usr/bin/env bash
# Runs the benchmarks against the real stack and writes BENCHMARKS.md (full mode) or a
# smoke-test table (--quick). Installs what is missing first (Debian packages).
# Usage: deploy/local/bench.sh [--quick] [postflow-bench options]
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/local/common.sh

install_missing nats-server postgresql postfix nginx-light ca-certificates
require_cargo
export PATH="$PATH:/usr/sbin:$(pg_bin)"
TARGET="${CARGO_TARGET_DIR:-target}"

if [ "${1:-}" = "--quick" ]; then
    # A smoke test: the debug build the test suite already made is enough.
    cargo build --locked --bins
    exec "$TARGET"/debug/postflow-bench --quick --out "$TARGET"/bench-quick.md --json "$TARGET"/bench-quick.json "${@:2}"
fi
cargo build --locked --release --bins
exec "$TARGET"/release/postflow-bench --out "$TARGET"/bench.md --json "$TARGET"/bench.json "$@"
