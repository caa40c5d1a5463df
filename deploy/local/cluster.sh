#!/usr/bin/env bash
# A 3-member Cairn cluster on loopback (127.0.0.1:7421-7423, the MLflow-compatible API on
# 127.0.0.1:5101-5103, Prometheus metrics on 127.0.0.1:9421-9423/metrics, the agent's on
# 127.0.0.1:9431), for trying things out.
#
#   deploy/local/cluster.sh start    build, start 3 members, wait for a leader
#   deploy/local/cluster.sh start --tls
#                                    the same over mutual TLS (certificates made with
#                                    `cairn certs init` in $CAIRN_LOCAL_DIR/certs), and a
#                                    node agent `local` on simulated GPUs
#   deploy/local/cluster.sh stop     stop exactly the processes `start` started
#   deploy/local/cluster.sh status   which members run, and the cluster's view
#   deploy/local/cluster.sh pids     the members' PIDs in node order
#
# Data and logs live under $CAIRN_LOCAL_DIR (default ./.cairn-local). CAIRN_LOCAL_AGENT=0
# leaves the agent out of `start --tls`. Set
# CAIRN_PROFILE=release to run release builds (default: debug); CAIRN_CLI_FEATURES adds
# cargo features to the cairn CLI build (e.g. etcd).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${CAIRN_LOCAL_DIR:-$PWD/.cairn-local}
PROFILE=${CAIRN_PROFILE:-debug}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE
PORTS=(7421 7422 7423)
MEMBERS="1=127.0.0.1:7421,2=127.0.0.1:7422,3=127.0.0.1:7423"
ENDPOINTS="127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423"

CERTS=$DIR/certs
TLS=0
say() { printf '[cluster] %s\n' "$*"; }

# The TLS flags of identity $1 (a file stem in $CERTS), as a server or agent takes them.
tls_flags() { printf -- '--tls-ca\n%s\n--tls-cert\n%s\n--tls-key\n%s\n' "$CERTS/ca.crt" "$CERTS/$1.crt" "$CERTS/$1.key"; }
# The CLI's, as user admin.
cli() {
  if [[ $TLS == 1 ]]; then
    "$BIN/cairn" --endpoints "$ENDPOINTS" --ca "$CERTS/ca.crt" --cert "$CERTS/user-admin.crt" --key "$CERTS/user-admin.key" "$@"
  else
    "$BIN/cairn" --endpoints "$ENDPOINTS" "$@"
  fi
}

# The PID in a pid file, if that process is still the cairn-server we started.
live_pid() {
  local f=$1 pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "cairn-server run --node-id $2 " || return 1
  echo "$pid"
}

build() {
  local flag=()
  [[ $PROFILE == release ]] && flag=(--release)
  say "building ($PROFILE)"
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p cairn-server -p cairn-cli ${CAIRN_CLI_FEATURES:+--features "$CAIRN_CLI_FEATURES"})
}

start() {
  build
  mkdir -p "$DIR"
  local tls=()
  if [[ $TLS == 1 && ! -f $CERTS/ca.key ]]; then
    "$BIN/cairn" certs init --dir "$CERTS" --members 3 --agent local --user admin >/dev/null
    say "certificates made in $CERTS (CA, members 1-3, agent local, user admin)"
  fi
  for i in 1 2 3; do
    if pid=$(live_pid "$DIR/node$i.pid" "$i"); then
      say "node $i already runs (pid $pid)"
      continue
    fi
    [[ $TLS == 1 ]] && mapfile -t tls < <(tls_flags "member-$i")
    "$BIN/cairn-server" run --node-id "$i" --listen "127.0.0.1:${PORTS[$((i-1))]}" \
      --data-dir "$DIR/node$i" --initial-members "$MEMBERS" --mlflow-listen "127.0.0.1:510$i" \
      --metrics-listen "127.0.0.1:942$i" "${tls[@]}" >> "$DIR/node$i.log" 2>&1 &
    echo $! > "$DIR/node$i.pid"
    say "node $i started (pid $!, 127.0.0.1:${PORTS[$((i-1))]}, MLflow 127.0.0.1:510$i, metrics 127.0.0.1:942$i, data $DIR/node$i, log $DIR/node$i.log${tls:+, mutual TLS})"
  done
  if [[ $TLS == 1 && ${CAIRN_LOCAL_AGENT:-1} != 0 ]] && ! live_agent >/dev/null; then
    mapfile -t tls < <(tls_flags agent-local)
    "$BIN/cairn-agent" --endpoints "$ENDPOINTS" --node-name local --gpu-provider sim \
      --state-dir "$DIR/agent" --listen 127.0.0.1:7431 --metrics-listen 127.0.0.1:9431 \
      "${tls[@]}" >> "$DIR/agent.log" 2>&1 &
    echo $! > "$DIR/agent.pid"
    say "agent local started (pid $!, simulated GPUs, log $DIR/agent.log, mutual TLS)"
  fi
  for _ in $(seq 1 100); do
    if out=$(cli --timeout 1s cluster status -o json 2>/dev/null); then
      leader=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader_id", 0))')
      if [[ $leader != 0 ]]; then
        say "leader elected: node $leader"
        if [[ $TLS == 1 ]]; then
          say "try: export CAIRN_ENDPOINTS=$ENDPOINTS CAIRN_CA=$CERTS/ca.crt CAIRN_CERT=$CERTS/user-admin.crt CAIRN_KEY=$CERTS/user-admin.key"
          say "     $BIN/cairn node list"
        else
          say "try: $BIN/cairn --endpoints $ENDPOINTS cluster status"
        fi
        return 0
      fi
    fi
    sleep 0.2
  done
  say "no leader after 20 s; see the logs in $DIR"
  exit 1
}

# The PID of the agent `start --tls` started, if it still runs.
live_agent() {
  local pid
  [[ -f $DIR/agent.pid ]] || return 1
  pid=$(cat "$DIR/agent.pid")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "cairn-agent --endpoints $ENDPOINTS " || return 1
  echo "$pid"
}

stop() {
  local any=0
  if pid=$(live_agent); then
    kill "$pid"
    say "agent local stopped (pid $pid)"
    rm -f "$DIR/agent.pid"
    any=1
  fi
  for i in 1 2 3; do
    if pid=$(live_pid "$DIR/node$i.pid" "$i"); then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      say "node $i stopped (pid $pid)"
      any=1
    fi
    rm -f "$DIR/node$i.pid"
  done
  [[ $any == 1 ]] || say "nothing was running"
}

status() {
  for i in 1 2 3; do
    if pid=$(live_pid "$DIR/node$i.pid" "$i"); then say "node $i runs (pid $pid)"; else say "node $i is not running"; fi
  done
  [[ -f $CERTS/user-admin.crt ]] && TLS=1
  cli --timeout 2s cluster status || true
}

# The members' PIDs in node order, comma-separated (for benchmarks).
pids() {
  local out=()
  for i in 1 2 3; do
    pid=$(live_pid "$DIR/node$i.pid" "$i") || { echo "node $i is not running" >&2; exit 1; }
    out+=("$pid")
  done
  (IFS=,; echo "${out[*]}")
}

[[ ${2:-} == --tls ]] && TLS=1
case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  pids) pids ;;
  *) echo "usage: $0 start [--tls]|stop|status|pids" >&2; exit 2 ;;
esac
