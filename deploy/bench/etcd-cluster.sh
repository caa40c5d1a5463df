#!/usr/bin/env bash
# A 3-member etcd cluster on loopback, the peer `cairn bench append --backend etcd`
# measures against. Installs Debian's etcd-server when etcd is missing.
#
#   deploy/bench/etcd-cluster.sh start   client ports 2379, 22379, 32379
#   deploy/bench/etcd-cluster.sh start --tls
#                                        the same with client and peer certificates: the
#                                        files `cairn certs init` writes in $CAIRN_TLS_DIR
#                                        (member-1..3 for the members, user-admin to check)
#   deploy/bench/etcd-cluster.sh stop    stop exactly the members `start` started
#   deploy/bench/etcd-cluster.sh pids    the members' PIDs, comma-separated
#
# Data and logs under $CAIRN_BENCH_DIR (default ./.cairn-bench/etcd). etcd fsyncs
# every commit by default, as Cairn does, so both are measured durable.
set -euo pipefail

DIR=${CAIRN_BENCH_DIR:-$PWD/.cairn-bench}/etcd
NAMES=(e1 e2 e3)
CLIENT=(2379 22379 32379)
PEER=(2380 22380 32380)
TLS=0
[[ ${2:-} == --tls ]] && TLS=1
CERTS=${CAIRN_TLS_DIR:-$PWD/.cairn-local/certs}
S=http
[[ $TLS == 1 ]] && S=https
CLUSTER="e1=$S://127.0.0.1:2380,e2=$S://127.0.0.1:22380,e3=$S://127.0.0.1:32380"

say() { printf '[etcd] %s\n' "$*"; }

ensure_etcd() {
  if ! command -v etcd >/dev/null; then
    say "installing Debian's etcd-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  fi
  # The package may start a system member on the default ports; the bench needs them.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
  fi
  pkill -f '^/usr/bin/etcd$' 2>/dev/null || true
}

live_pid() {
  local f=$1 pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--name $2 " || return 1
  echo "$pid"
}

start() {
  ensure_etcd
  mkdir -p "$DIR"
  for i in 0 1 2; do
    n=${NAMES[$i]}
    if pid=$(live_pid "$DIR/$n.pid" "$n"); then say "$n already runs (pid $pid)"; continue; fi
    local tls=()
    if [[ $TLS == 1 ]]; then
      local m=$CERTS/member-$((i+1))
      tls=(--cert-file "$m.crt" --key-file "$m.key" --trusted-ca-file "$CERTS/ca.crt" --client-cert-auth
           --peer-cert-file "$m.crt" --peer-key-file "$m.key" --peer-trusted-ca-file "$CERTS/ca.crt" --peer-client-cert-auth)
    fi
    etcd --name "$n" --data-dir "$DIR/$n" \
      --listen-client-urls "$S://127.0.0.1:${CLIENT[$i]}" --advertise-client-urls "$S://127.0.0.1:${CLIENT[$i]}" \
      --listen-peer-urls "$S://127.0.0.1:${PEER[$i]}" --initial-advertise-peer-urls "$S://127.0.0.1:${PEER[$i]}" \
      "${tls[@]}" \
      --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token cairn-bench \
      --quota-backend-bytes 8589934592 \
      >> "$DIR/$n.log" 2>&1 &
    echo $! > "$DIR/$n.pid"
    say "$n started (pid $!, client port ${CLIENT[$i]})"
  done
  for _ in $(seq 1 100); do
    local curl=(curl -sf)
    [[ $TLS == 1 ]] && curl+=(--cacert "$CERTS/ca.crt" --cert "$CERTS/user-admin.crt" --key "$CERTS/user-admin.key")
    if "${curl[@]}" "$S://127.0.0.1:2379/health" | grep -q true && "${curl[@]}" "$S://127.0.0.1:22379/health" | grep -q true && "${curl[@]}" "$S://127.0.0.1:32379/health" | grep -q true; then
      say "etcd is up"
      return 0
    fi
    sleep 0.2
  done
  say "etcd did not come up; see $DIR/*.log"
  exit 1
}

stop() {
  for n in "${NAMES[@]}"; do
    if pid=$(live_pid "$DIR/$n.pid" "$n"); then
      kill "$pid"; say "$n stopped (pid $pid)"
    fi
    rm -f "$DIR/$n.pid"
  done
}

pids() {
  local out=()
  for n in "${NAMES[@]}"; do
    if pid=$(live_pid "$DIR/$n.pid" "$n"); then out+=("$pid"); fi
  done
  (IFS=,; echo "${out[*]}")
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  pids) pids ;;
  *) echo "usage: $0 start [--tls]|stop|pids" >&2; exit 2 ;;
esac
