#!/usr/bin/env bash
# Cairn and etcd, 3 durable members each on loopback, measured one after the other in
# one run with the same load generator (`cairn bench append`).
#
#   deploy/bench/compare.sh [--rounds 3] [--tls] [--clients 1,16,128] [--duration 10s] [--payload 256]
#
# --tls: every round also measures both systems over mutual TLS (client and peer
# certificates from `cairn certs init`, the same files for both), after the plaintext
# runs, and the summary compares each with etcd over the same transport.
# Each round starts both systems afresh, one after the other (only one runs at a time,
# so neither steals the other's CPU), and prints its tables. The end is a summary: the
# median of the rounds for each system, API and client count, and Cairn's ratio to etcd,
# then a write's timeline (each stage's medians, from the members' metrics).
# Needs protoc for the etcd client (apt-get install protobuf-compiler) and installs
# Debian's etcd-server when etcd is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# A data directory made here is removed at exit (a run leaves gigabytes behind).
OWN_DIR=
if [[ -z ${CAIRN_LOCAL_DIR:-} ]]; then
  OWN_DIR=$(mktemp -d /tmp/cairn-bench.XXXXXX)
  export CAIRN_LOCAL_DIR=$OWN_DIR
fi
export CAIRN_BENCH_DIR=$CAIRN_LOCAL_DIR
export CAIRN_PROFILE=release
export CAIRN_CLI_FEATURES=etcd   # cluster.sh builds the same cairn binary
# One load generator as one user: no per-identity rate or stream limit (128 streaming
# clients are one identity over TLS), and no agent beside the members (etcd has none).
export CAIRN_REQUESTS_PER_SECOND=0 CAIRN_STREAMS_PER_CALLER=0 CAIRN_LOCAL_AGENT=0
export CAIRN_TLS_DIR=$CAIRN_LOCAL_DIR/certs
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=3
TLS=0
ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --tls) TLS=1; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(--clients 1,16,128 --duration 10s)
RESULTS=$CAIRN_LOCAL_DIR/results
# Each member's /metrics (cluster.sh): every Cairn round also records a write's timeline.
METRICS=http://127.0.0.1:9421/metrics,http://127.0.0.1:9422/metrics,http://127.0.0.1:9423/metrics

cleanup() {
  "$ROOT/deploy/local/cluster.sh" stop >/dev/null 2>&1 || true
  "$ROOT/deploy/bench/etcd-cluster.sh" stop >/dev/null 2>&1 || true
  [[ -z $OWN_DIR ]] || rm -rf "$OWN_DIR"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build -q --release -p cairn-server -p cairn-cli --features cairn-cli/etcd)
CAIRN=$TARGET/release/cairn
mkdir -p "$RESULTS"

# Print a round's table and keep its figures for the summary.
bench() {
  local out=$1; shift
  "$CAIRN" "$@" "${ARGS[@]}" -o json 2>/dev/null > "$RESULTS/$out.json"
  "$CAIRN" bench summary "$RESULTS/$out.json" | sed 's/^/  /'
}

[[ $TLS == 0 ]] || "$CAIRN" certs init --dir "$CAIRN_TLS_DIR" --members 3 >/dev/null
MODES=(plain)
[[ $TLS == 0 ]] || MODES+=(tls)

for round in $(seq "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    flag=() creds=()
    if [[ $mode == tls ]]; then
      flag=(--tls)
      creds=(--ca "$CAIRN_TLS_DIR/ca.crt" --cert "$CAIRN_TLS_DIR/user-admin.crt" --key "$CAIRN_TLS_DIR/user-admin.key")
    fi
    # Both write APIs: one Submit call per append (as etcd's Put), and one SubmitStream
    # per client with each append answered before the next is sent. Each starts on
    # fresh members, as etcd does, so neither's memory holds the other's writes.
    for api in unary stream; do
      echo "== round $round of $ROUNDS ($mode): cairn $api (3 members)"
      rm -rf "$CAIRN_LOCAL_DIR"/node*
      "$ROOT/deploy/local/cluster.sh" start "${flag[@]}" >/dev/null
      bench "$round-$mode-cairn-$api" --endpoints 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 \
        "${creds[@]}" bench append --api "$api" --metrics "$METRICS"
      "$ROOT/deploy/local/cluster.sh" stop >/dev/null
    done

    rm -rf "$CAIRN_BENCH_DIR/etcd"
    "$ROOT/deploy/bench/etcd-cluster.sh" start "${flag[@]}" >/dev/null
    echo "== round $round of $ROUNDS ($mode): etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}') (3 members)"
    bench "$round-$mode-etcd" "${creds[@]}" bench append --backend etcd \
      --pids "$("$ROOT/deploy/bench/etcd-cluster.sh" pids)"
    "$ROOT/deploy/bench/etcd-cluster.sh" stop >/dev/null
  done
done

echo "== summary: medians of $ROUNDS rounds"
"$CAIRN" bench summary "$RESULTS"/*.json
