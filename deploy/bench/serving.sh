#!/usr/bin/env bash
# Model serving on `cairn-server dev` (release build, simulated GPUs) with the example
# model server (deploy/examples/serving/model_server.py), 4 replicas of `linear`:
#
#   1. the stable endpoint against calling one replica directly: requests/s and p50/p99
#      latency of each, and the latency the endpoint's router adds (medians of
#      alternating rounds, `cairn bench serve`);
#   2. a rolling update from version 1 to version 2 (maxSurge 1, maxUnavailable 0) under
#      load through the endpoint: the time from `cairn deploy rollout` to 100% of the
#      traffic on the new revision, and the requests that failed meanwhile.
#
#   deploy/bench/serving.sh [--clients 4] [--duration 5s] [--rounds 3]
#
# Needs python3. Everything it starts is stopped, and its directory removed, on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENTS=4
DURATION=5s
ROUNDS=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --clients) CLIENTS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf '[serving-bench] %s\n' "$*" >&2; }

cd "$ROOT"
cargo build -q --release -p cairn-server -p cairn-cli
TARGET=$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
WORK=$(mktemp -d /tmp/cairn-serving-bench.XXXXXX)
SERVER_PID=
LOAD_PID=
cleanup() {
  [[ -z $LOAD_PID ]] || kill "$LOAD_PID" 2>/dev/null || true
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ADDR=127.0.0.1:$(free_port)
export CAIRN_ENDPOINTS=$ADDR
cairn() { "$TARGET/release/cairn" "$@"; }
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

"$TARGET/release/cairn-server" dev --data-dir "$WORK/dev" --listen "$ADDR" --gpus sim \
  --mlflow-listen off > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do cairn cluster status >/dev/null 2>&1 && break; sleep 0.2; done

M=deploy/examples/serving/models
cairn model register linear --source "$ROOT/$M/linear-v1.json" --create >/dev/null
cairn model register linear --source "$ROOT/$M/linear-v2.json" >/dev/null
cat > "$WORK/linear.json" <<DOC
{"apiVersion": "cairn.dev/v1", "kind": "ModelDeployment", "metadata": {"name": "linear"},
 "spec": {"model": {"name": "linear", "version": 1}, "replicas": 4,
          "template": {"command": ["python3", "$ROOT/deploy/examples/serving/model_server.py"]},
          "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 1},
          "strategy": {"maxSurge": 1, "maxUnavailable": 0}}}
DOC
cairn deploy apply -f "$WORK/linear.json" >/dev/null

# Wait for `cairn deploy get` to satisfy a Python condition on `d`; prints the seconds taken.
wait_for() {
  local cond=$1 limit=$2 start
  start=$(date +%s.%N)
  while true; do
    if cairn deploy get linear -o json 2>/dev/null | json "1 if ($cond) else exit(1)" >/dev/null 2>&1; then
      python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')"
      return 0
    fi
    if python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $start > $limit else 1)"; then
      say "gave up after ${limit}s waiting for: $cond"
      cairn deploy get linear >&2 || true
      return 1
    fi
    sleep 0.1
  done
}
wait_for 'd["traffic"] == {"1": 100} and d["ready"] == 4' 120 >/dev/null
D=$(cairn deploy get linear -o json)
ENDPOINT=$(echo "$D" | json 'd["urls"][0].removeprefix("http://")')
REPLICA=127.0.0.1:$(echo "$D" | json 'd["revisions"][0]["replicas"][0]["port"]')
# The router takes its table at the agent's next step.
for _ in $(seq 1 50); do curl -sf -XPOST "http://$ENDPOINT/predict" -d '{"inputs": [[1]]}' >/dev/null && break; sleep 0.2; done

say "1. the endpoint ($ENDPOINT) against one replica directly ($REPLICA): $CLIENTS clients, $ROUNDS rounds of $DURATION"
for c in 1 "$CLIENTS"; do
  echo "clients: $c"
  cairn bench serve --target "$REPLICA" --target "$ENDPOINT" --clients "$c" \
    --duration "$DURATION" --rounds "$ROUNDS"
done

say "2. rolling update to version 2 under load ($CLIENTS clients through the endpoint)"
cairn bench serve --target "$ENDPOINT" --clients "$CLIENTS" --duration 45s -o json \
  > "$WORK/rollout-load.json" &
LOAD_PID=$!
sleep 2
cairn deploy rollout linear --version 2 >/dev/null
TOOK=$(wait_for 'd["traffic"] == {"2": 100} and d["ready"] == 4' 110)
DONE=$(wait_for 'len(d["revisions"]) == 1 or all(not r["replicas"] for r in d["revisions"] if r["weight"] == 0)' 60)
wait "$LOAD_PID"
LOAD_PID=
python3 - "$WORK/rollout-load.json" "$TOOK" "$DONE" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))[0]
print(f"rollout → 100% on the new revision, 4 replicas: {sys.argv[2]} s "
      f"(old replicas all gone {sys.argv[3]} s later)")
print(f"requests during the 45 s load: {load['requests']}, failed: {load['failed']}, "
      f"by revision: {load['by_revision']}, p50 {load['p50_us_median']} µs, "
      f"p99 {load['p99_us_median']} µs")
for e in load["errors"]:
    print(f"  failure: {e}")
PY
