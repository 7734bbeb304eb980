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

if [ "${1:-}" = "--quick" ]; then
    # A smoke test: the debug build the test suite already made is enough.
    cargo build --locked --bins
    exec target/debug/postflow-bench --quick --out target/bench-quick.md --json target/bench-quick.json "${@:2}"
fi
cargo build --locked --release --bins
exec target/release/postflow-bench --out target/bench.md --json target/bench.json "$@"
