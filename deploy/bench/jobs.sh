#!/usr/bin/env bash
# Trivial jobs end to end: 3 durable members on loopback and 3 agents with simulated GPUs
# (release builds); prints jobs completed per second and submit-to-Succeeded latency.
#
#   deploy/bench/jobs.sh [--jobs 300] [--concurrency 32]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CAIRN_PROFILE=release
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export CAIRN_LOCAL_DIR=$(mktemp -d /tmp/cairn-jobs.XXXXXX)
ENDPOINTS=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
AGENTS=()
cleanup() {
  for pid in "${AGENTS[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$ROOT/deploy/local/cluster.sh" stop >/dev/null 2>&1 || true
  rm -rf "$CAIRN_LOCAL_DIR"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build -q --release -p cairn-agent)
"$ROOT/deploy/local/cluster.sh" start >/dev/null
for i in 1 2 3; do
  "$TARGET/release/cairn-agent" --endpoints "$ENDPOINTS" --node-name "bench-node-$i" \
    --gpu-provider sim --sim-topology nvswitch-8 --address 127.0.0.1 --listen 127.0.0.1:0 \
    --state-dir "$CAIRN_LOCAL_DIR/agent$i" --port-range "$((24000 + i * 1000))-$((24999 + i * 1000))" \
    >> "$CAIRN_LOCAL_DIR/agent$i.log" 2>&1 &
  AGENTS+=($!)
done
ARGS=("$@")
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(--jobs 300 --concurrency 32)
sleep 2
"$TARGET/release/cairn" --endpoints "$ENDPOINTS" bench jobs "${ARGS[@]}"
