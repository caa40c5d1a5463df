#!/usr/bin/env bash
# Simulated agents at scale against 3 durable members on loopback: 1 Hz heartbeats and
# one GPU health change per agent per minute, on a fresh cluster per round.
#
#   deploy/bench/agents.sh [AGENTS...]     (default: 1000 2000 3000; 60 s each)
#
# CAIRN_BENCH_DURATION changes the length of a round.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CAIRN_PROFILE=release
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${CAIRN_BENCH_DURATION:-60s}
ROUNDS=("$@")
[[ ${#ROUNDS[@]} -gt 0 ]] || ROUNDS=(1000 2000 3000)

BASE=$(mktemp -d /tmp/cairn-agents.XXXXXX)
cleanup() {
  CAIRN_LOCAL_DIR=${DIR:-$BASE} "$ROOT/deploy/local/cluster.sh" stop >/dev/null 2>&1 || true
  rm -rf "$BASE"
}
trap cleanup EXIT

for n in "${ROUNDS[@]}"; do
  export DIR=$BASE/round-$n
  CAIRN_LOCAL_DIR=$DIR "$ROOT/deploy/local/cluster.sh" start >/dev/null
  echo "== $n agents, $DURATION"
  "$TARGET/release/cairn" --endpoints 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 \
    bench agents --agents "$n" --duration "$DURATION" \
    --pids "$(CAIRN_LOCAL_DIR=$DIR "$ROOT/deploy/local/cluster.sh" pids)"
  CAIRN_LOCAL_DIR=$DIR "$ROOT/deploy/local/cluster.sh" stop >/dev/null
done
