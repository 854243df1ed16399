#!/usr/bin/env bash
# Starts the reference cluster on 127.0.0.1: 1 api, 2 logic, 2 task and
# 2 connect processes against the machine's Redis, MariaDB and etcd (see
# scripts/services.sh to start those), prints the URLs, and stops everything
# on Ctrl-C or SIGTERM.
#
#   examples/full_cluster/run-local.sh            # API + web page on :8080, /ws on :8081 and :8082
#   IM_BASE_PORT=9080 examples/full_cluster/run-local.sh
#
# Environment: IM_BASE_PORT (8080), IM_NAMESPACE (im), IM_PROFILE (release|debug),
# REDIS_URL, DATABASE_URL, ETCD_ENDPOINTS, IM_LOG_DIR, IM_SEND_RATE (200; 0 = unlimited),
# IM_REDIS_CLUSTER_URLS (comma-separated seeds: run on a Redis Cluster instead),
# IM_KEEP_RUNNING=1 (a process that exits does not stop the others: fault drills).
# IM_FRONT_DOOR__ENABLED=false turns the login/registration/connection limits off
# (load tests from one address; never on the Internet).
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${IM_BASE_PORT:-8080}"
ns="${IM_NAMESPACE:-im}"
profile="${IM_PROFILE:-release}"
rate="${IM_SEND_RATE:-200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/im-target}"
logs="${IM_LOG_DIR:-$(mktemp -d /tmp/im-cluster.XXXXXX)}"
mkdir -p "$logs"
if [ "$profile" = release ]; then cargo build -q --release -p full_cluster; else cargo build -q -p full_cluster; fi
bin="$CARGO_TARGET_DIR/$profile/full_cluster"
export IM_CLUSTER__NAMESPACE="$ns"
export IM_CLUSTER__JWT_SECRET="${IM_CLUSTER__JWT_SECRET:-local-cluster-secret-local-cluster-secret}"

pids=()
start() { # name, args...
  local name=$1; shift
  "$bin" "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  echo "$name pid $! log $logs/$name.log"
}
stop() {
  trap - INT TERM EXIT
  echo "stopping ${#pids[@]} processes…"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped"
}
trap stop INT TERM EXIT

for i in 1 2; do
  start "logic-$i" logic --worker-id "$i" --grpc-listen "127.0.0.1:$((base + 10 + i))" --ops-listen "127.0.0.1:$((base + 30 + i))"
done
for i in 1 2; do
  start "task-$i" task --id "task-$i" --ops-listen "127.0.0.1:$((base + 40 + i))"
done
for i in 1 2; do
  start "connect-$i" connect --node-id "connect-$i" --listen "127.0.0.1:$((base + i))" --grpc-listen "127.0.0.1:$((base + 20 + i))" --send-rate "$rate"
done
start api api --listen "127.0.0.1:$base" --send-rate "$rate"

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$base/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<TXT

im cluster is running (namespace $ns):
  web page + API   http://127.0.0.1:$base/          (API http://127.0.0.1:$base/api/v1)
  connect nodes    ws://127.0.0.1:$((base + 1))/ws  ws://127.0.0.1:$((base + 2))/ws
  logic gRPC       127.0.0.1:$((base + 11)) 127.0.0.1:$((base + 12))   ops :$((base + 31)) :$((base + 32))
  task ops         http://127.0.0.1:$((base + 41))/metrics  http://127.0.0.1:$((base + 42))/metrics
  logs             $logs
Ctrl-C stops everything.
TXT
if [ "${IM_KEEP_RUNNING:-0}" = 1 ]; then
  # Fault drills: a process killed on purpose does not stop the others.
  wait "${pids[@]}" || true
else
  wait -n "${pids[@]}" || true
  echo "a process exited; see $logs" >&2
fi
