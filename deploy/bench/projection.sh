#!/usr/bin/env bash
# The Kubernetes projection against the test api-server (a real kube-apiserver with etcd,
# ../shared/tools/kube-apiserver.sh): `cairn-server dev --kubeconfig` (release build, no
# agent) projects N registered models (created through the MLflow API, 8 at a time).
#
#   0. steady-state lag: models created at --rate per second for 20 s, each timed from
#      Cairn's answer to the object appearing in a `kubectl get -w` (projection_lag.py);
#   1. projection: time from the first model created to all N objects in Kubernetes, and
#      the rate at which Cairn accepted them, next to it;
#   2. restore: the api-server restarts on an empty etcd; time until all N are back;
#   3. the CPU each side used meanwhile (Cairn; kube-apiserver with etcd).
#
#   deploy/bench/projection.sh [--models 10000] [--rate 50]
#
# Needs curl and kubectl. Everything it starts is stopped, and its directory removed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KUBE="$ROOT/../shared/tools/kube-apiserver.sh"
N=10000
RATE=50
while [[ $# -gt 0 ]]; do
  case $1 in
    --models) N=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf '[projection-bench] %s\n' "$*" >&2; }

cd "$ROOT"
cargo build -q --release -p cairn-server
TARGET=$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
WORK=$(mktemp -d /tmp/cairn-projection-bench.XXXXXX)
SERVER_PID=
cleanup() {
  [[ -z $SERVER_PID ]] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  "$KUBE" stop "$WORK/kube" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$KUBE" build >/dev/null
"$KUBE" start "$WORK/kube" >/dev/null
export KUBECONFIG=$WORK/kube/kubeconfig
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ADDR=127.0.0.1:$(free_port)
MLFLOW=127.0.0.1:$(free_port)
"$TARGET/release/cairn-server" dev --no-agent --data-dir "$WORK/dev" --listen "$ADDR" \
  --mlflow-listen "$MLFLOW" --kubeconfig "$KUBECONFIG" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf "http://$MLFLOW/api/2.0/mlflow/registered-models/search" >/dev/null && break; sleep 0.2; done
# The CRDs are installed once the projector leads.
for _ in $(seq 1 300); do kubectl get crd models.cairn.dev >/dev/null 2>&1 && break; sleep 0.2; done

cpu() {  # utime + stime of the given pids, in clock ticks
  local t=0 pid
  for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$t"
}
kube_pids() { cat "$WORK/kube/kube-apiserver.pid" "$WORK/kube/etcd.pid"; }
count() { kubectl get models.cairn.dev -n cairn --no-headers 2>/dev/null | wc -l; }
now() { date +%s.%N; }
wait_for() {  # wait until count() reaches $1; prints the time
  while [[ $(count) -lt $1 ]]; do sleep 0.5; done
  now
}
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

say "0. steady-state lag at $RATE models/s"
python3 "$ROOT/deploy/bench/projection_lag.py" "$MLFLOW" "$RATE" 20 "$KUBECONFIG"
LAG=$(count)

say "1. projecting $N models"
C0=$(cpu "$SERVER_PID"); K0=$(cpu $(kube_pids)); T0=$(now)
seq 1 "$N" | xargs -P 8 -I{} curl -sf -o /dev/null -X POST "http://$MLFLOW/api/2.0/mlflow/registered-models/create" \
  -H 'Content-Type: application/json' -d '{"name": "bench-{}"}'
T1=$(now)
T2=$(wait_for $((N + LAG)))
C1=$(cpu "$SERVER_PID"); K1=$(cpu $(kube_pids))
echo "created $N models in $(secs "$T0" "$T1") s ($(python3 -c "print(f'{$N / ($T1 - $T0):.0f}')") /s through the MLflow API)"
echo "all $N objects in Kubernetes $(secs "$T0" "$T2") s after the first: $(python3 -c "print(f'{$N / ($T2 - $T0):.0f}')") objects/s"
echo "CPU meanwhile: Cairn $(python3 -c "print(f'{($C1 - $C0) / 100:.1f}')") s, kube-apiserver + etcd $(python3 -c "print(f'{($K1 - $K0) / 100:.1f}')") s"

say "2. the api-server restarts on an empty etcd"
"$KUBE" stop "$WORK/kube" >/dev/null
rm -rf "$WORK/kube/etcd-data"
T3=$(now)
"$KUBE" start "$WORK/kube" >/dev/null
C2=$(cpu "$SERVER_PID"); K2=$(cpu $(kube_pids))
T4=$(wait_for $((N + LAG)))
C3=$(cpu "$SERVER_PID"); K3=$(cpu $(kube_pids))
echo "all $((N + LAG)) objects back $(secs "$T3" "$T4") s after the restart began"
echo "CPU meanwhile: Cairn $(python3 -c "print(f'{($C3 - $C2) / 100:.1f}')") s, kube-apiserver + etcd $(python3 -c "print(f'{($K3 - $K2) / 100:.1f}')") s"
