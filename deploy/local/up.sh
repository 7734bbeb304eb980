#!/usr/bin/env bash
# Runs Postflow locally: NATS with JetStream, PostgreSQL (a database per service), an SMTP
# capture that writes .eml files, all six services and the demo tenant; then posts a
# signed sample order and shows the email it produced. Ctrl-C stops everything.
# Installs what is missing first (Debian packages). Run it again any time: each run
# starts from empty state.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
. deploy/local/common.sh

STATE="$ROOT/.postflow"
# PostgreSQL runs as the postgres user, which may not reach into the checkout (e.g. /root).
PGDIR="${POSTFLOW_PGDIR:-/var/tmp/postflow-local-pg}"
NATS_PORT=4222 PG_PORT=5433 SMTP_PORT=2525
INGEST_PORT=8080 TRACKER_PORT=8081

install_missing nats-server postgresql curl ca-certificates
require_cargo
export PATH="$PATH:/usr/sbin:$(pg_bin)"
TARGET="${CARGO_TARGET_DIR:-target}"

for port in $NATS_PORT $PG_PORT $SMTP_PORT $INGEST_PORT $TRACKER_PORT 8082 8083 8084 8085; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "error: port $port is in use on 127.0.0.1; stop whatever uses it (a previous run?) and retry" >&2
        exit 1
    fi
done

echo "==> building (the first build takes a few minutes)"
cargo build --locked --bins
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BIN="$TARGET/debug"
"$BIN/postflow" check --tenants deploy/local/tenants

rm -rf "$STATE/nats" "$STATE/mail" "$STATE/logs"
mkdir -p "$STATE/nats" "$STATE/mail" "$STATE/logs"
PIDS=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "==> stopping"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_pg
    echo "stopped. logs are in .postflow/logs/"
}
trap cleanup INT TERM EXIT

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}
stop_pg() {
    [ -f "$PGDIR/data/postmaster.pid" ] && as_pg pg_ctl -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
}

echo "==> starting nats-server (JetStream) on :$NATS_PORT"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$STATE/nats" >"$STATE/logs/nats.log" 2>&1 &
PIDS+=($!)

echo "==> starting PostgreSQL on :$PG_PORT"
stop_pg
rm -rf "$PGDIR"
mkdir -p "$PGDIR"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGDIR"
as_pg initdb -D "$PGDIR/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$STATE/logs/initdb.log" 2>&1
as_pg pg_ctl -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w \
    -o "-p $PG_PORT -h 127.0.0.1 -k $PGDIR -c fsync=off" start >/dev/null
for db in segmenter scheduler sender tracker; do
    psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "create database $db" >/dev/null
done

echo "==> starting the SMTP capture on :$SMTP_PORT (mail goes to .postflow/mail/)"
"$BIN/postflow-mailcatcher" --addr "127.0.0.1:$SMTP_PORT" --dir "$STATE/mail" >"$STATE/logs/mailcatcher.log" 2>&1 &
PIDS+=($!)

export POSTFLOW_NATS__URL="nats://127.0.0.1:$NATS_PORT"
export POSTFLOW_TELEMETRY__LOG_FORMAT=json
export RUST_LOG="${RUST_LOG:-info}"
KEY="local-tracking-key-$(date +%s)"
start() { # name port [KEY=VALUE...]
    local name=$1 port=$2
    shift 2
    env POSTFLOW_HTTP__ADDR="127.0.0.1:$port" "$@" "$BIN/postflow-$name" >"$STATE/logs/$name.log" 2>&1 &
    PIDS+=($!)
}
db() { echo "POSTFLOW_DATABASE__URL=postgres://postgres@127.0.0.1:$PG_PORT/$1"; }
TENANTS="POSTFLOW_TENANTS_DIR=$ROOT/deploy/local/tenants"

echo "==> starting the six services"
start tracker "$TRACKER_PORT" "$(db tracker)" "$TENANTS" "POSTFLOW_TRACKING__SIGNING_KEY=$KEY"
start segmenter 8082 "$(db segmenter)"
start scheduler 8083 "$(db scheduler)" "$TENANTS"
start renderer 8084 "$TENANTS" "POSTFLOW_TRACKING__SIGNING_KEY=$KEY" \
    "POSTFLOW_TRACKING__BASE_URL=http://127.0.0.1:$TRACKER_PORT"
start sender 8085 "$(db sender)" "$TENANTS" POSTFLOW_SMTP__HOST=127.0.0.1 "POSTFLOW_SMTP__PORT=$SMTP_PORT"
start ingest "$INGEST_PORT" "$TENANTS"

for port in $INGEST_PORT $TRACKER_PORT 8082 8083 8084 8085; do
    for _ in $(seq 1 150); do
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "error: a process exited early; see .postflow/logs/" >&2; tail -n 20 "$STATE"/logs/*.log >&2; exit 1; }
        done
        sleep 0.2
    done
done
echo "==> ready: ingest on http://127.0.0.1:$INGEST_PORT, tracker on http://127.0.0.1:$TRACKER_PORT"

echo "==> posting a signed sample Shopify order to the demo tenant"
SAMPLE=deploy/local/sample-order.json
SIG=$("$BIN/postflow" sign-shopify --secret demo-secret "$SAMPLE")
curl -fsS -X POST "http://127.0.0.1:$INGEST_PORT/v1/webhooks/demo/shopify" \
    -H "content-type: application/json" -H "x-shopify-topic: orders/create" \
    -H "x-shopify-webhook-id: local-demo-$(date +%s)" -H "x-shopify-hmac-sha256: $SIG" \
    --data-binary "@$SAMPLE"
echo

for _ in $(seq 1 150); do
    MAIL=$(ls "$STATE"/mail/*.eml 2>/dev/null | head -n 1 || true)
    [ -n "$MAIL" ] && break
    sleep 0.2
done
if [ -z "${MAIL:-}" ]; then
    echo "error: no email arrived; see .postflow/logs/" >&2
    exit 1
fi
echo
echo "==> the order confirmation arrived: ${MAIL#"$ROOT"/}"
grep -m1 -i '^Subject:' "$MAIL" || true
echo "    open it in a mail client, or: less ${MAIL#"$ROOT"/}"
echo "    preview any template: curl -X POST http://127.0.0.1:8084/v1/preview/demo/order_confirmation -d @file.json"
echo
echo "Postflow is running. Post more webhooks to http://127.0.0.1:$INGEST_PORT/v1/webhooks/demo/shopify"
echo "(secret: demo-secret). Press Ctrl-C to stop."
wait
