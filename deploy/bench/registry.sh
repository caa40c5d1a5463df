#!/usr/bin/env bash
# MLflow's model registry (REST API 2.0) served three ways, measured one after the other on
# loopback with the same load generator (deploy/bench/registry_load.py, MLflow's own client):
#
#   (a) sqlite    `mlflow server` on SQLite
#   (b) postgres  `mlflow server` on PostgreSQL (a throwaway cluster made with initdb)
#   (c) cairn     a 3-member Cairn cluster (deploy/local/cluster.sh), load on the leader's
#                 MLflow address (member i serves MLflow on 127.0.0.1:(5100+i))
#
#   deploy/bench/registry.sh [--clients 1,16,64] [--duration 10s] [--systems sqlite,postgres,cairn]
#                            [--procs 2] [--mlflow-workers 1] [--out DIR]
#
# For each system and client count it prints a row (calls/s, p50 and p99 in ms over all
# client calls, and CPU per call: the load generator's, and the rest of the machine's busy
# time, i.e. the system under test with its database or all its members); at the end,
# Cairn's ratio to each MLflow back end where Cairn ran. Only one system runs at a time. Everything it starts is stopped, and its temporary directories
# removed, on exit. A system that cannot start is skipped with a message.
#
# Installs what it needs: a virtualenv with tests/mlflow/server-requirements.txt (at
# $CAIRN_BENCH_VENV, default ~/.cache/cairn-venv) and Debian's postgresql when initdb and
# pg_ctl are missing. Runs niced ($CAIRN_BENCH_NICE, default 10), all systems alike.
#
# --mlflow-workers (default 1): `mlflow server` with more than one uvicorn worker listens on
# a socket whose accepted connections lack TCP_NODELAY, so every request on a reused
# keep-alive connection waits ~40 ms for a delayed ACK. One worker does not have that
# stall, and on a small machine is about what MLflow can use next to the load generator.
# --procs (default 2): the load generator's client threads are spread over this many
# processes, so that Python's client is not the bottleneck. On a small machine it still
# may be: compare the CPU columns.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${CAIRN_BENCH_VENV:-$HOME/.cache/cairn-venv}
CLIENTS=1,16,64
DURATION=10s
SYSTEMS=sqlite,postgres,cairn
PROCS=2
MLFLOW_WORKERS=1
OUT=
while [[ $# -gt 0 ]]; do
  case $1 in
    --clients) CLIENTS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    --mlflow-workers) MLFLOW_WORKERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
renice -n "${CAIRN_BENCH_NICE:-10}" $$ >/dev/null 2>&1 || true

say() { printf '[registry-bench] %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/cairn-registry-bench.XXXXXX)
RESULTS=${OUT:-$WORK/results}
mkdir -p "$RESULTS"
PGDIR=          # the PostgreSQL cluster's directory, while one exists
PG_BIN=
PG_AS=()        # how to run PostgreSQL's tools (as nobody when we are root)
SERVER_PGID=    # process group of the running `mlflow server`, if any
LOAD_PGID=      # process group of the running load generator, if any
CAIRN_DIR=      # CAIRN_LOCAL_DIR of the running Cairn cluster, if any

# Stop a process group that this script started (TERM, then KILL after 5 s).
stop_group() {
  local pgid=$1
  [[ -n $pgid ]] || return 0
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pgid" 2>/dev/null || true
}

stop_server() {
  stop_group "$SERVER_PGID"
  SERVER_PGID=
}

stop_postgres() {
  if [[ -n $PGDIR ]]; then
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
    PGDIR=
  fi
}

stop_cairn() {
  if [[ -n $CAIRN_DIR ]]; then
    CAIRN_LOCAL_DIR=$CAIRN_DIR CAIRN_PROFILE=release "$ROOT/deploy/local/cluster.sh" stop \
      >/dev/null 2>&1 || true
    rm -rf "$CAIRN_DIR"
    CAIRN_DIR=
  fi
}

cleanup() {
  stop_group "$LOAD_PGID"
  stop_server
  stop_postgres
  stop_cairn
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until a registry answers a search (MLflow and Cairn alike), at most $2 seconds.
wait_registry() {
  local uri=$1 limit=$2
  # In the background so that a signal to this script is handled at once.
  "$VENV/bin/python" - "$uri" "$limit" <<'EOF' &
import sys, time, urllib.request
uri, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        with urllib.request.urlopen(uri + "/api/2.0/mlflow/registered-models/search?max_results=1",
                                    timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit(1)
EOF
  wait $!
}

install_venv() {
  if "$VENV/bin/python" -c 'import mlflow, psycopg2, sys; sys.exit(mlflow.__version__ != "3.17.2")' \
      2>/dev/null; then
    return 0
  fi
  say "installing tests/mlflow/server-requirements.txt into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$ROOT/tests/mlflow/server-requirements.txt"
}

find_postgres() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then PG_BIN=$d; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    PG_BIN=$(dirname "$(command -v initdb)")
    return 0
  fi
  return 1
}

install_postgres() {
  find_postgres && return 0
  say "installing Debian's postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  find_postgres || { say "no initdb/pg_ctl after installing postgresql"; return 1; }
}

# Run the load for every client count against one registry; $1 names the system.
load() {
  local system=$1 uri=$2 c
  for c in ${CLIENTS//,/ }; do
    say "$system: $c clients for $DURATION"
    # In its own process group, in the background: a signal to this script is handled at
    # once (not after the load), and cleanup stops the generator with all its processes.
    setsid timeout "$LOAD_LIMIT" "$VENV/bin/python" "$ROOT/deploy/bench/registry_load.py" \
      --uri "$uri" --clients "$c" --duration "$DURATION" --procs "$PROCS" \
      --prefix "bench-$system" > "$RESULTS/$system-$c.json" 2> "$WORK/load.err" &
    LOAD_PGID=$!
    wait "$LOAD_PGID" || {
        LOAD_PGID=
        say "$system: the load generator failed at $c clients:"; tail -5 "$WORK/load.err" >&2
        rm -f "$RESULTS/$system-$c.json"; continue; }
    LOAD_PGID=
    row "$RESULTS/$system-$c.json" "$system"
  done
}

row() {
  "$VENV/bin/python" - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
err = f"  ({r['errors']} errors)" if r["errors"] else ""
print(f"{sys.argv[2]:<10} {r['clients']:>7} {r['calls_per_s']:>10.1f} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f}"
      f" {r['server_cpu_ms_per_call']:>13.2f} {r['loadgen_cpu_ms_per_call']:>13.2f}{err}", flush=True)
EOF
}

# `mlflow server` on a back-end store URI, in its own process group.
start_mlflow() {
  local name=$1 store=$2 port
  port=$(free_port)
  mkdir -p "$WORK/$name-artifacts"
  # The job runner (huey consumers) has nothing to do with the registry; keep it off.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$VENV/bin/mlflow" server \
    --backend-store-uri "$store" --default-artifact-root "$WORK/$name-artifacts" \
    --host 127.0.0.1 --port "$port" --workers "$MLFLOW_WORKERS" \
    > "$WORK/$name-server.log" 2>&1 &
  SERVER_PGID=$!
  if ! wait_registry "http://127.0.0.1:$port" 180; then
    say "$name: mlflow server did not come up; its log:"; tail -20 "$WORK/$name-server.log" >&2
    stop_server
    return 1
  fi
  MLFLOW_URI=http://127.0.0.1:$port
}

run_sqlite() {
  start_mlflow sqlite "sqlite:///$WORK/mlflow.db" || return 0
  load sqlite "$MLFLOW_URI"
  stop_server
}

run_postgres() {
  install_postgres || { say "postgres: skipped (no PostgreSQL)"; return 0; }
  local port
  PGDIR=$(mktemp -d /tmp/cairn-registry-pg.XXXXXX)
  chmod 755 "$PGDIR"
  if [[ $(id -u) == 0 ]]; then
    chown nobody "$PGDIR"
    PG_AS=(runuser -u nobody --)
  else
    PG_AS=()
  fi
  port=$(free_port)
  "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 \
    >"$PGDIR/initdb.log" 2>&1 || { say "postgres: skipped (initdb failed)"; tail -5 "$PGDIR/initdb.log" >&2
    stop_postgres; return 0; }
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PGDIR" start \
    >/dev/null || { say "postgres: skipped (did not start)"; tail -20 "$PGDIR/postgres.log" >&2
    stop_postgres; return 0; }
  "${PG_AS[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres mlflow \
    || { say "postgres: skipped (createdb failed)"; stop_postgres; return 0; }
  # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; name psycopg2 (server-requirements.txt).
  start_mlflow postgres "postgresql+psycopg2://postgres@127.0.0.1:$port/mlflow" || { stop_postgres; return 0; }
  load postgres "$MLFLOW_URI"
  stop_server
  stop_postgres
}

# ------------------------------------------------------------------------------------------
# Cairn: a 3-member cluster started by deploy/local/cluster.sh; member i serves MLflow's API
# on 127.0.0.1:(5100+i) (its --mlflow-listen flag). The load goes to the leader's address.
run_cairn() {
  local target=${CARGO_TARGET_DIR:-$ROOT/target} bin leader
  bin=$target/release
  if [[ ${CAIRN_BENCH_NO_BUILD:-0} != 1 ]]; then
    say "cairn: building (release)"
    (cd "$ROOT" && cargo build -q --release -p cairn-server -p cairn-cli) \
      || { say "cairn: skipped (build failed)"; return 0; }
  fi
  if [[ ! -x $bin/cairn-server ]]; then
    say "cairn: skipped (no $bin/cairn-server)"; return 0
  fi
  CAIRN_DIR=$(mktemp -d /tmp/cairn-registry-cairn.XXXXXX)
  if ! CAIRN_LOCAL_DIR=$CAIRN_DIR CAIRN_PROFILE=release "$ROOT/deploy/local/cluster.sh" start \
      >"$WORK/cairn-start.log" 2>&1; then
    say "cairn: skipped (the cluster did not start)"; tail -5 "$WORK/cairn-start.log" >&2
    stop_cairn; return 0
  fi
  leader=$("$bin/cairn" --endpoints 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 --timeout 2s \
    cluster status -o json 2>/dev/null \
    | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin).get("leader_id", 0))' \
    || echo 0)
  if [[ $leader == 0 ]]; then
    say "cairn: skipped (no leader)"; stop_cairn; return 0
  fi
  local uri=http://127.0.0.1:$((5100 + leader))
  if ! wait_registry "$uri" 30; then
    say "cairn: skipped (the leader, node $leader, does not serve MLflow on $uri)"
    stop_cairn; return 0
  fi
  say "cairn: leader is node $leader, MLflow API on $uri"
  load cairn "$uri"
  stop_cairn
}
# ------------------------------------------------------------------------------------------

install_venv
# The load generator's own bound: the timed part, plus setup and the 30 s HTTP timeout.
LOAD_LIMIT=$("$VENV/bin/python" -c "import sys; sys.path.insert(0, '$ROOT/deploy/bench')
from registry_load import parse_duration; print(int(parse_duration('$DURATION')) + 300)")
printf '%-10s %7s %10s %9s %9s %13s %13s\n' system clients calls/s p50_ms p99_ms server_cpu_ms loadgen_cpu_ms
for system in ${SYSTEMS//,/ }; do
  case $system in
    sqlite) run_sqlite ;;
    postgres) run_postgres ;;
    cairn) run_cairn ;;
    *) say "unknown system: $system" ;;
  esac
done

# Cairn's ratio to each MLflow back end, where both ran.
"$VENV/bin/python" - "$RESULTS" "$CLIENTS" <<'EOF'
import json, os, sys
results, clients = sys.argv[1], sys.argv[2].split(",")
def get(system, c):
    p = os.path.join(results, f"{system}-{c}.json")
    return json.load(open(p)) if os.path.exists(p) else None
lines = []
for c in clients:
    cairn = get("cairn", c)
    if not cairn:
        continue
    for base in ("sqlite", "postgres"):
        b = get(base, c)
        if b and b["calls_per_s"] and cairn["p99_ms"]:
            cpu = (b["server_cpu_ms_per_call"] / cairn["server_cpu_ms_per_call"]
                   if cairn["server_cpu_ms_per_call"] else float("inf"))
            lines.append(f"cairn/{base:<9} {c:>7} {cairn['calls_per_s'] / b['calls_per_s']:>13.2f}x"
                         f" {b['p99_ms'] / cairn['p99_ms']:>16.2f}x {cpu:>16.2f}x")
if lines:
    print()
    print("Cairn's ratio (higher is better): calls/s cairn/mlflow, p99 mlflow/cairn, and server")
    print("CPU per call mlflow/cairn (the machine's busy time less the load generator's)")
    print(f"{'ratio':<15} {'clients':>7} {'calls/s':>14} {'p99':>17} {'server cpu':>17}")
    print("\n".join(lines))
EOF
