#!/usr/bin/env bash
# One full_cluster benchmark run: starts examples/full_cluster/run-local.sh
# (1 api, 2 logic, 2 task, 2 connect) in a fresh namespace, runs loadgen with
# CPU-per-message reporting against it, stops the cluster, prints the summary.
#
#   scripts/bench-cluster.sh closed out.json            # 1,000 users, window 16, 15 s
#   scripts/bench-cluster.sh open10k out.json           # open loop 10,000 msgs/s
#   IM_REDIS_CLUSTER_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003 \
#     scripts/bench-cluster.sh closed out.json          # on the Redis Cluster
#
# Environment: CARGO_TARGET_DIR (binaries; built by run-local.sh), IM_SRC (the
# checkout whose run-local.sh runs; default this one: point it at a worktree
# of another commit to compare builds with the same loadgen), LOADGEN (the
# loadgen binary), IM_BASE_PORT (28080), EXTRA (more loadgen flags),
# KILL="<seconds>:<role> <id>" (SIGKILL that process that many seconds into
# the measured window, e.g. KILL="5:task task-1"; the others keep running).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-closed}
json=${2:-/tmp/bench.json}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/im-target}"
src="${IM_SRC:-$PWD}"
base="${IM_BASE_PORT:-28080}"
loadgen="${LOADGEN:-$CARGO_TARGET_DIR/release/loadgen}"
[ -x "$loadgen" ] || cargo build -q --release -p loadgen
logs=$(mktemp -d /tmp/im-bench.XXXXXX)
IM_BASE_PORT=$base IM_SEND_RATE=0 IM_FRONT_DOOR__ENABLED=false IM_NAMESPACE="bench$RANDOM" IM_LOG_DIR="$logs" IM_KEEP_RUNNING=1 \
  "$src/examples/full_cluster/run-local.sh" >"$logs/run-local.out" 2>&1 &
runner=$!
trap 'kill -TERM $runner 2>/dev/null; wait $runner 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$base/healthz" >/dev/null 2>&1 \
    && curl -fsS "http://127.0.0.1:$((base + 1))/readyz" >/dev/null 2>&1 \
    && curl -fsS "http://127.0.0.1:$((base + 2))/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
sleep 2
redis_flags=()
if [ -n "${IM_REDIS_CLUSTER_URLS:-}" ]; then
  IFS=, read -ra urls <<<"$IM_REDIS_CLUSTER_URLS"
  for u in "${urls[@]}"; do redis_flags+=(--redis-url "$u"); done
else
  redis_flags+=(--redis-url "${REDIS_URL:-redis://127.0.0.1:6379}")
fi
case "$mode" in
  closed) load=(--users 1000 --window 16 --duration 15 --warmup 3) ;;
  open*) rate=${mode#open}; rate=${rate/k/000}; load=(--users 1000 --rate "$rate" --duration 15 --warmup 3) ;;
  *) echo "mode: closed | open<rate>, e.g. open5k" >&2; exit 2 ;;
esac
if [ -n "${KILL:-}" ]; then
  (
    after=${KILL%%:*}; who=${KILL#*:}; role=${who%% *}; id=${who#* }
    until grep -q "warming up" "$logs/loadgen.out" 2>/dev/null; do sleep 0.2; done
    sleep $((3 + after)) # the warm-up, then into the measured window
    pid=$(pgrep -f "full_cluster $role --[a-z-]*id $id( |\$)" | head -n 1)
    echo "SIGKILL $role $id (pid $pid) at $(date +%T.%3N)" >>"$logs/kill.out"
    kill -9 "$pid"
  ) &
fi
# shellcheck disable=SC2086
"$loadgen" --api "http://127.0.0.1:$base" --ws "ws://127.0.0.1:$((base + 1))/ws" --ws "ws://127.0.0.1:$((base + 2))/ws" \
  "${load[@]}" --check-db --json "$json" "${redis_flags[@]}" \
  --proc full_cluster:api --proc full_cluster:logic --proc full_cluster:task --proc full_cluster:connect \
  --proc mariadbd ${EXTRA:-} >"$logs/loadgen.out" 2>&1 || true
grep -v '^\s*$' "$logs/loadgen.out" | tail -n 25
cat "$logs/kill.out" 2>/dev/null || true
echo "logs: $logs"
