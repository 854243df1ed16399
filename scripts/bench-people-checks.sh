#!/usr/bin/env bash
# Run from the repository root after: cargo build --release -p quickstart -p loadgen
# Writes docs/bench/quickstart-closed-people-{on,off}-{1,2,3}.json (OUT= to change).
# Quickstart closed loop, relation checks on vs off, alternating, same build.
set -u
T=${CARGO_TARGET_DIR:-/var/tmp/im-target}/release
OUT=${OUT:-docs/bench}
mkdir -p "$OUT"; LOG=$(mktemp -d)
for i in 1 2 3; do
  for mode in on off; do
    $T/quickstart --listen 127.0.0.1:18090 --send-rate 0 --front-door off --relation-checks $mode >$LOG/qs-$mode-$i.log 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.1; done
    $T/loadgen --api http://127.0.0.1:18090 --users 1000 --window 16 --duration 15 --warmup 3 --pid $pid --json $OUT/quickstart-closed-people-$mode-$i.json >$LOG/lg-$mode-$i.log 2>&1
    kill $pid; wait $pid 2>/dev/null
    python3 - "$mode" "$i" "$OUT" <<'PY'
import json,sys
d=json.load(open(f"{sys.argv[3]}/quickstart-closed-people-{sys.argv[1]}-{sys.argv[2]}.json"))
print(sys.argv[1], sys.argv[2], "delivered/s %.0f" % d["delivered_per_sec"], "server us/msg %.2f" % (d.get("proc_cpu_us_per_msg") or -1), "loadgen us/msg %.2f" % d["loadgen_cpu_us_per_msg"], "lost", d["lost"], "dup", d["duplicated"], "ooo", d["out_of_order"], "p99", d["latency_ms"].get("p99") if isinstance(d["latency_ms"],dict) else d["latency_ms"])
PY
  done
done
