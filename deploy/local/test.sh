#!/usr/bin/env bash
# Runs every test in the workspace against real nats-server, PostgreSQL and SMTP servers.
# Installs what is missing first (Debian packages). Usage: deploy/local/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/local/common.sh

install_missing nats-server postgresql postfix nginx-light ca-certificates chromium
require_cargo
export PATH="$PATH:/usr/sbin:$(pg_bin)"
TARGET="${CARGO_TARGET_DIR:-target}"
# A one-off build gains nothing from incremental state, which roughly doubles the target dir.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

echo "==> cargo clippy (workspace, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> benchmark smoke test (postflow-bench --quick; no timing assertions)"
cargo build --workspace --locked --bins
started=$SECONDS
"$TARGET"/debug/postflow-bench --quick --out "$TARGET"/bench-quick.md --json "$TARGET"/bench-quick.json >/dev/null
echo "bench: quick run finished in $((SECONDS - started)) s, table in $TARGET/bench-quick.md"

echo "==> cargo test (workspace)"
cargo test --workspace --locked "$@"
