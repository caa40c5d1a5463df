#!/usr/bin/env bash
# Cairn and etcd, 3 durable members each on loopback, measured one after the other in
# one run with the same load generator (`cairn bench append`).
#
#   deploy/bench/compare.sh [--clients 1,16,128] [--duration 10s] [--payload 256]
#
# Needs protoc for the etcd client (apt-get install protobuf-compiler) and installs
# Debian's etcd-server when etcd is missing. Only one system runs at a time, so
# neither steals the other's CPU.
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
ARGS=("$@")
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(--clients 1,16,128 --duration 10s)

cleanup() {
  "$ROOT/deploy/local/cluster.sh" stop >/dev/null 2>&1 || true
  "$ROOT/deploy/bench/etcd-cluster.sh" stop >/dev/null 2>&1 || true
  [[ -z $OWN_DIR ]] || rm -rf "$OWN_DIR"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build -q --release -p cairn-controlplane -p cairn-cli --features cairn-cli/etcd)
CAIRN=$TARGET/release/cairn

echo "== cairn (3 members)"
"$ROOT/deploy/local/cluster.sh" start >/dev/null
# Both write APIs: one Submit call per append (as etcd's Put), and one SubmitStream per
# client with each append answered before the next is sent.
for api in unary stream; do
  "$CAIRN" --endpoints 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 bench append --api $api "${ARGS[@]}" 2>/dev/null
done
"$ROOT/deploy/local/cluster.sh" stop >/dev/null

echo "== etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}') (3 members)"
"$ROOT/deploy/bench/etcd-cluster.sh" start >/dev/null
"$CAIRN" bench append --backend etcd --pids "$("$ROOT/deploy/bench/etcd-cluster.sh" pids)" "${ARGS[@]}" 2>/dev/null
