#!/usr/bin/env bash
# Cairn and etcd, 3 durable members each on loopback, measured one after the other in
# one run with the same load generator (`cairn bench append`).
#
#   deploy/bench/compare.sh [--rounds 3] [--clients 1,16,128] [--duration 10s] [--payload 256]
#
# Each round starts both systems afresh, one after the other (only one runs at a time,
# so neither steals the other's CPU), and prints its tables. The end is a summary: the
# median of the rounds for each system, API and client count, and Cairn's ratio to etcd.
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
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=3
ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(--clients 1,16,128 --duration 10s)
RESULTS=$CAIRN_LOCAL_DIR/results

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

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS: cairn (3 members)"
  rm -rf "$CAIRN_LOCAL_DIR"/node*
  "$ROOT/deploy/local/cluster.sh" start >/dev/null
  # Both write APIs: one Submit call per append (as etcd's Put), and one SubmitStream
  # per client with each append answered before the next is sent.
  for api in unary stream; do
    bench "$round-cairn-$api" --endpoints 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 \
      bench append --api "$api"
  done
  "$ROOT/deploy/local/cluster.sh" stop >/dev/null

  rm -rf "$CAIRN_BENCH_DIR/etcd"
  "$ROOT/deploy/bench/etcd-cluster.sh" start >/dev/null
  echo "== round $round of $ROUNDS: etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}') (3 members)"
  bench "$round-etcd" bench append --backend etcd \
    --pids "$("$ROOT/deploy/bench/etcd-cluster.sh" pids)"
  "$ROOT/deploy/bench/etcd-cluster.sh" stop >/dev/null
done

echo "== summary: medians of $ROUNDS rounds"
"$CAIRN" bench summary "$RESULTS"/*.json
