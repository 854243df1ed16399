#!/usr/bin/env python3
"""A capacity model for the im cluster, from our own loadgen reports.

Writes docs/capacity.md and the block between `<!-- capacity:begin -->` and `<!-- capacity:end -->`
in docs/benchmarks.md; `--check` regenerates both in memory and exits 1 (diff printed) if either is
stale; `--self-test` checks the arithmetic on a synthetic report. Python 3.11, stdlib only.

The model
- Inputs: a full_cluster throughput report with `proc_cpu` and `redis_cpu` (open loop: the
  realistic per-message cost, used for sizing), optionally a closed-loop one (for comparison) and
  a connections report (RSS per idle socket on the connect nodes).
- loadgen divides CPU by delivered messages: in a 1:1 report deliveries = messages; in a group
  report the per-message roles are multiplied by `measured.delivered / measured.sent`.
- Peak load: users x MSGS_PER_USER_PEAK_HOUR / 3600 x PEAK_FACTOR messages/s; deliveries/s =
  messages/s x (1:1 share + group share x online group fan-out).
- Per delivery: task (push; its persist work too, which overestimates groups) and connect. Per
  message: logic, Redis (summed over servers), MariaDB (per row). api is off the message path
  (messages go over WebSocket): sized by HTTP requests; password logins (argon2id) run in logic.
- Nodes of a role = max(MIN_NODES_PER_ROLE, ceil(CPU us/s at peak / (CORES_PER_NODE x
  TARGET_UTILISATION x 1e6))); connect nodes also by connections per node = min(memory, CPU, cap).
  Redis masters = ceil(Redis CPU us/s / (REDIS_MASTER_UTILISATION x 1e6)), one core each, >= 3 in
  a Redis Cluster; DB shards = ceil(rows/s x us per row / (DB_CORES x DB_UTILISATION x 1e6)).
- Scaling is assumed linear in partitions: Redis Cluster by hash slot, DB shards by conversation
  partition, the im roles stateless or partitioned.
"""
import argparse
import difflib
import json
import math
import os
import re
import shlex
import sys

# ---- Assumptions (edit these; then run `python3 scripts/capacity.py`) ----
SIZES = (100_000, 1_000_000, 10_000_000)  # concurrent (connected) users
MSGS_PER_USER_PEAK_HOUR = 30   # messages a user sends during the busiest hour
PEAK_FACTOR = 2.0              # busiest minute of that hour vs the hour's mean
GROUP_SHARE = 0.3              # share of messages sent to groups (rest 1:1)
MEAN_GROUP_SIZE = 20           # members per group, sender included
GROUP_ONLINE_SHARE = 0.5       # members connected when a group message is pushed
LOGINS_PER_USER_PER_DAY = 1    # password logins (token TTL is 24 h: token_ttl_secs)
LOGIN_PEAK_FACTOR = 3.0        # logins in the peak second vs the daily mean
LOGIN_CPU_US = 38_000          # argon2id per login, in logic (docs/reliability.md: ~38 ms)
API_REQUESTS_PER_USER_PER_HOUR = 20  # HTTP calls at peak: history, sync, groups, connect
API_US_PER_REQUEST = 300       # NOT measured here (the reports carry no HTTP load)
TARGET_UTILISATION = 0.6       # CPU share a node may use at peak
CORES_PER_NODE = 8             # api, logic, task and connect nodes
MEM_PER_NODE_GIB = 16          # connect nodes
CONNECT_MEM_SHARE = 0.5        # share of a connect node's memory for connection state
CONNECT_MAX_CONNS = 500_000    # cap per connect node: a failure reconnects at most this many
MIN_NODES_PER_ROLE = 2         # for availability
REDIS_MASTER_UTILISATION = 0.7  # of the one core a Redis master's commands run on
DB_CORES = 8                   # per MariaDB shard (primary)
DB_UTILISATION = 0.6
CONNECTIONS_SPREAD_IPS = 20    # not in the connections report; docs/benchmarks.md's value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPACITY_MD, BENCHMARKS_MD = "docs/capacity.md", "docs/benchmarks.md"
BEGIN, END = "<!-- capacity:begin -->", "<!-- capacity:end -->"
DEFAULTS = {"throughput": "docs/bench/capacity-open10k.json",
            "ceiling": "docs/bench/capacity-closed.json",
            "connections": "docs/bench/cluster-connections-100k.json"}
REGEN_RE = re.compile(r"^Regenerate with: `(python3 scripts/capacity\.py[^`]*)`", re.M)
# role, proc_cpu label, charged per
ROLES = (("api", "full_cluster:api", "request"), ("logic", "full_cluster:logic", "message"),
         ("task", "full_cluster:task", "delivery"), ("connect", "full_cluster:connect", "delivery"),
         ("MariaDB", "mariadbd", "message"))


def fanout():
    """Deliveries per message: 1:1 = 1; a group message reaches its online members."""
    return (1 - GROUP_SHARE) + GROUP_SHARE * (MEAN_GROUP_SIZE - 1) * GROUP_ONLINE_SHARE


def nodes(cpu_us_per_s, budget_us_per_s, minimum=MIN_NODES_PER_ROLE):
    return max(minimum, math.ceil(cpu_us_per_s / budget_us_per_s))


def redis_masters(cpu_us_per_s):
    n = math.ceil(cpu_us_per_s / (REDIS_MASTER_UTILISATION * 1e6))
    return 1 if n <= 1 else max(3, n)  # one primary (+ replica), or a Redis Cluster of >= 3


def costs(path, r):
    """CPU us per message (per delivery for task and connect) of each role in a report."""
    m = r.get("measured") or {}
    to_msg = m["delivered"] / m["sent"] if r.get("mode") == "Group" and m.get("sent") else 1.0
    c = {"path": path, "report": r, "procs": {}, "servers": {}}
    scale = lambda v, per="message": None if v is None else v * (1 if per == "delivery" else to_msg)
    for role, label, per in ROLES:
        p = next((p for p in r.get("proc_cpu") or [] if p["label"] == label), {})
        c[role], c["procs"][role] = scale(p.get("cpu_us_per_msg"), per), len(p.get("pids", []))
    for s in r.get("redis_cpu") or []:
        c["servers"][s["url"].split("//")[-1]] = scale(s.get("cpu_us_per_msg"))
    vals = list(c["servers"].values())
    c["Redis"] = sum(vals) if vals and None not in vals else None
    rows = r.get("persisted_rows") and r.get("sent") and r["persisted_rows"] / r["sent"]
    c["rows_per_msg"] = rows = rows or 1.0
    c["db_row"] = None if c["MariaDB"] is None else c["MariaDB"] / rows
    return c


def size(users, c, rss):
    """Load and node counts at `users` concurrent users (see the module docstring)."""
    msgs = users * MSGS_PER_USER_PEAK_HOUR / 3600 * PEAK_FACTOR
    deliveries = msgs * fanout()
    logins = users * LOGINS_PER_USER_PER_DAY / 86400 * LOGIN_PEAK_FACTOR
    requests = users * API_REQUESTS_PER_USER_PER_HOUR / 3600 * PEAK_FACTOR
    budget = CORES_PER_NODE * TARGET_UTILISATION * 1e6
    per_node = conns_per_connect_node(c["connect"], deliveries / users, rss)
    return {
        "msgs": msgs, "deliveries": deliveries, "logins": logins, "requests": requests,
        "api": nodes(requests * API_US_PER_REQUEST + msgs * c["api"], budget),
        "logic": nodes(msgs * c["logic"] + logins * LOGIN_CPU_US, budget),
        "task": nodes(deliveries * c["task"], budget),
        "connect": max(nodes(deliveries * c["connect"], budget), math.ceil(users / per_node["min"])),
        "Redis": redis_masters(msgs * c["Redis"]),
        "MariaDB": nodes(msgs * c["rows_per_msg"] * c["db_row"], DB_CORES * DB_UTILISATION * 1e6, 1),
    }


def conns_per_connect_node(connect_us, deliveries_per_user_s, rss):
    mem = MEM_PER_NODE_GIB * 2**30 * CONNECT_MEM_SHARE / rss
    cpu = CORES_PER_NODE * TARGET_UTILISATION * 1e6 / max(deliveries_per_user_s * connect_us, 1e-9)
    return {"memory": mem, "cpu": cpu, "min": min(mem, cpu, CONNECT_MAX_CONNS)}


def command(path, r):
    """The command that produced a report, reconstructed from the report."""
    if r.get("mode") == "connections":
        ws, n, procs = r.get("ws_urls") or [], r["connections"], r.get("procs") or 1
        asked = round(n, -3) if 0 <= n - round(n, -3) < procs else n  # ceil(n / procs) each
        api = re.sub(r"^ws://(.+):(\d+)/.*$", lambda m: f"http://{m[1]}:{int(m[2]) - 1}", ws[0])
        wss = f"--ws {ws[0]} … --ws {ws[-1]}" if len(ws) > 2 else " ".join(f"--ws {w}" for w in ws)
        pids = " … ".join(f"--server-pid <connect-{i}>" for i in sorted({1, len(ws)}))
        return (f"loadgen --api {api} --mode connections --connections {asked} --procs {procs} "
                f"--spread-ips {CONNECTIONS_SPREAD_IPS} {wss} {pids} --json {path}")
    rate = r.get("rate")
    mode = "closed" if not rate else f"open{int(rate) // 1000}k" if rate % 1000 == 0 else f"open{int(rate)}"
    urls = [s["url"] for s in r.get("redis_cpu") or []]
    env = f"IM_REDIS_CLUSTER_URLS={','.join(urls)} " if len(urls) > 1 else ""
    shards = len(r.get("persisted_rows_per_shard") or [])
    if shards > 1:  # the archive on the machine's MariaDB servers (scripts/services.sh)
        env = "DATABASE_SHARD_URLS=" + ",".join(
            f"mysql://root@127.0.0.1:{3306 + i}/test" for i in range(shards)) + " " + env
    return f"{env}scripts/bench-cluster.sh {mode} {path}"


def describe(r):
    loop = f"open loop {r['rate']:,.0f} msgs/s" if r.get("rate") else f"closed loop, window {r.get('window')}"
    lat = r.get("latency_ms") or {}
    return (f"{loop}, {r.get('users'):,} users, {r.get('mode')}: {r['delivered_per_sec']:,.0f} delivered/s, "
            f"send→deliver p50 {lat.get('p50', 0):,.0f} ms / p99 {lat.get('p99', 0):,.0f} ms, "
            f"lost {r.get('lost')}, rows {r.get('persisted_rows') or 0:,} of {r.get('sent') or 0:,} sent")


def us(v):
    return "n/a" if v is None else f"{v:.1f}"


def figure_rows(t, k):
    """(label, processes, sizing figure, ceiling figure, charged per): measured CPU per message."""
    def row(label, key, get, n, per):
        nk = n(k) if k else n(t)
        return (label, f"{n(t)}" if nk == n(t) else f"{n(t)} / {nk}", us(get(t, key)),
                us(get(k, key)) if k else "", per)
    rows = [row(role, role, lambda c, r: c[r], lambda c, r=role: c["procs"][r], per)
            for role, _, per in ROLES[:4]]
    servers = sorted(set(t["servers"]) | set(k["servers"] if k else ()))
    rows.append(row("Redis (sum over the servers)" if len(servers) > 1 else "Redis", "Redis",
                    lambda c, r: c[r], lambda c: len(c["servers"]), "message"))
    if len(servers) > 1:
        rows += [row(f"Redis {u}", u, lambda c, r: c["servers"].get(r), lambda c: 1, "message")
                 for u in servers]
    rows.append(row("MariaDB", "MariaDB", lambda c, r: c[r], lambda c: c["procs"]["MariaDB"], "row"))
    return rows


def render(args, t, k, conn):
    """Returns (docs/capacity.md text, docs/benchmarks.md block)."""
    tr, rss = t["report"], conn["rss_bytes_per_connection"]
    cols = ["sizing report" + (" (closed loop!)" if not tr.get("rate") else " (open loop)"),
            "ceiling report (closed loop)" if k else "ceiling report: none"]
    figs = figure_rows(t, k)
    reports = [("sizing", args.throughput, tr), ("ceiling", args.ceiling, k and k["report"]),
               ("connections", args.connections, conn)]
    out = ["<!-- generated by scripts/capacity.py: edit the script or its inputs, not this file -->",
           "# Capacity model (generated)", "",
           f"Regenerate with: `{args.regen}`", "",
           "Generated by `scripts/capacity.py` from our own loadgen reports; every assumption is a named "
           "constant at the top of the script. `python3 scripts/capacity.py --check` (run by `scripts/test`) "
           "fails when this file is out of date.", "",
           "**Where the numbers come from.** Every figure was measured on one 2-core shared machine "
           "(docs/benchmarks.md) where all processes — Redis, MariaDB, etcd, every im process and the load "
           "client — compete for the same cores, so the per-message costs include that contention. "
           "Extrapolation assumes linear scaling by partitions (Redis Cluster by hash slot, database shards "
           "by conversation partition, the im roles stateless or partitioned), which is what the design "
           "allows; nothing beyond the largest configuration below has been measured.", "",
           "## Measured here", "",
           "CPU µs per message, from the loadgen reports (loadgen divides by delivered messages; "
           + ("in 1:1 reports deliveries = messages)." if tr.get("mode") != "Group" else
              "per-message roles converted with the measured deliveries per message)."), ""]
    if not tr.get("rate"):
        out += ["> The sizing report is a closed-loop run: batches are large at saturation, so its per-message "
                "costs are lower than at a realistic open-loop rate. Size from an open-loop report "
                "(`scripts/bench-cluster.sh open10k docs/bench/capacity-open10k.json`).", ""]
    out += [f"| role | processes | {cols[0]} | {cols[1]} | memory per connection | charged per |",
            "|---|---|---|---|---|---|"]
    procs = {role: max(t["procs"][role], k["procs"][role] if k else 0) for role, _, _ in ROLES}
    nservers = max(len(t["servers"]), len(k["servers"]) if k else 0)
    out += [f"| {label} | {n} | {a} | {b} | {f'{rss:,.0f} B' if label == 'connect' else ''} | {per} |"
            for label, n, a, b, per in figs]
    out.append(f"| loadgen (the client, not sized) | 1 | {us(tr.get('loadgen_cpu_us_per_msg'))} | "
               f"{us(k['report'].get('loadgen_cpu_us_per_msg')) if k else ''} |  |  |")
    out += ["", "| report | what | command |", "|---|---|---|"]
    for what, path, r in reports:
        if r:
            d = describe(r) if what != "connections" else (
                f"{r['connections']:,} idle WebSockets on {len(r.get('ws_urls') or [])} connect "
                f"processes, {r['open_seconds']:.1f} s to open, {rss:,.0f} B RSS each")
            out.append(f"| `{path}` | {what}: {d} | `{command(path, r)}` |")
    peak = max((x["report"] for x in (t, k) if x), key=lambda r: r["delivered_per_sec"])
    out += ["", "**Largest configuration actually run here** (beyond it, everything is extrapolation):",
            "- processes per role: " + ", ".join(f"{role} {procs[role]}" for role, _, _ in ROLES[:4])
            + f"; connect {len(conn.get('ws_urls') or [])} in the connections run",
            f"- Redis servers: {nservers}" + (" (a Redis Cluster, one master each)" if nservers > 1 else ""),
            f"- database shards: {procs['MariaDB']} MariaDB",
            f"- peak connections: {conn['connections']:,}",
            f"- peak throughput: {peak['delivered_per_sec']:,.0f} delivered msgs/s "
            f"({'open' if peak.get('rate') else 'closed'} loop, {peak.get('users'):,} users)", ""]
    pn = conns_per_connect_node(t["connect"], size(SIZES[0], t, rss)["deliveries"] / SIZES[0], rss)
    out += ["## Assumptions", "", "Constants at the top of `scripts/capacity.py`:", "",
            f"- load: {MSGS_PER_USER_PEAK_HOUR} messages per user in the peak hour, × {PEAK_FACTOR:g} for the "
            f"busiest minute; {GROUP_SHARE:.0%} of messages to groups of {MEAN_GROUP_SIZE} with "
            f"{GROUP_ONLINE_SHARE:.0%} of members online → {fanout():.2f} deliveries per message",
            "- charged per delivery: task (push; its persist share too) and connect; per message: logic, "
            f"Redis, MariaDB (one row per message; the sizing report has {t['rows_per_msg']:.2f} per message)",
            f"- api: {API_REQUESTS_PER_USER_PER_HOUR} HTTP requests per user per peak hour × {PEAK_FACTOR:g}, "
            f"{API_US_PER_REQUEST} µs each (assumed, not measured); {LOGINS_PER_USER_PER_DAY} password login "
            f"per user per day, × {LOGIN_PEAK_FACTOR:g} at peak, {LOGIN_CPU_US / 1000:g} ms of argon2id "
            "each, in logic",
            f"- nodes: {CORES_PER_NODE} cores at ≤ {TARGET_UTILISATION:.0%} CPU, at least {MIN_NODES_PER_ROLE} "
            f"per role; connect nodes with {MEM_PER_NODE_GIB} GiB, {CONNECT_MEM_SHARE:.0%} of it for sockets",
            f"- connections per connect node = min(memory {pn['memory']:,.0f}, CPU {pn['cpu']:,.0f}, cap "
            f"{CONNECT_MAX_CONNS:,}) = {pn['min']:,.0f} (heartbeat CPU of idle sockets not measured)",
            f"- Redis master: ≤ {REDIS_MASTER_UTILISATION:.0%} of one core; a Redis Cluster has ≥ 3 masters",
            f"- database shard: {DB_CORES} cores at ≤ {DB_UTILISATION:.0%}: "
            f"{DB_CORES * DB_UTILISATION * 1e6 / t['db_row']:,.0f} rows/s at {t['db_row']:.1f} µs per row "
            "(conversation-list upserts per member make group rows dearer: not modelled)", "",
            "## Sized", "", "| | " + " | ".join(f"{u:,} users" for u in SIZES) + " |",
            "|---|" + "---|" * len(SIZES)]
    sized = [size(u, t, rss) for u in SIZES]
    for key, label in (("msgs", "messages/s at peak"), ("deliveries", "deliveries/s at peak"),
                       ("logins", "password logins/s at peak"), ("requests", "api requests/s at peak"),
                       ("api", "api nodes"), ("logic", "logic nodes"), ("task", "task nodes"),
                       ("connect", "connect nodes"), ("Redis", "Redis masters"),
                       ("MariaDB", "database shards (MariaDB primaries)")):
        out.append(f"| {label} | " + " | ".join(f"{s[key]:,.0f}" for s in sized) + " |")
    out.append("| im nodes in all | " + " | ".join(
        f"{sum(s[r] for r in ('api', 'logic', 'task', 'connect')):,}" for s in sized) + " |")
    u, s = SIZES[-1], sized[-1]
    rcpu = s["msgs"] * t["Redis"]
    pn = conns_per_connect_node(t["connect"], s["deliveries"] / u, rss)
    out += ["", "The arithmetic of two cells (replicas not counted):", "",
            f"- Redis masters at {u:,} users: {u:,} × {MSGS_PER_USER_PEAK_HOUR} ÷ 3,600 × {PEAK_FACTOR:g} = "
            f"{s['msgs']:,.0f} msgs/s × {t['Redis']:.1f} µs = {rcpu / 1e6:.2f} s of Redis CPU per second; "
            f"÷ {REDIS_MASTER_UTILISATION:g} core per master = "
            f"ceil({rcpu / (REDIS_MASTER_UTILISATION * 1e6):.2f}) → {s['Redis']}",
            f"- connect nodes at {u:,} users: max(CPU ceil({s['deliveries']:,.0f} deliveries/s × "
            f"{t['connect']:.1f} µs ÷ ({CORES_PER_NODE} × {TARGET_UTILISATION:g} × 10⁶ µs/s)) = "
            f"{math.ceil(s['deliveries'] * t['connect'] / (CORES_PER_NODE * TARGET_UTILISATION * 1e6))}, "
            f"connections ceil({u:,} ÷ {pn['min']:,.0f}) = {math.ceil(u / pn['min'])}) → {s['connect']}", ""]
    block = [BEGIN, "## Capacity inputs", "",
             "Generated by `scripts/capacity.py` (do not edit between the markers); "
             "[capacity.md](capacity.md) sizes the cluster from these figures: CPU µs per message "
             "(per delivery for task and connect).", ""]
    block += [f"- {what}: `{path}` (`{command(path, r)}`)" for what, path, r in reports if r]
    block += ["", f"| role | {cols[0]} | {cols[1]} |", "|---|---|---|"]
    block += [f"| {label} | {a} | {b} |" for label, _, a, b, _ in figs]
    block += [f"| connect memory per connection | {rss:,.0f} B |  |", END]
    return "\n".join(out), "\n".join(block), figs


def read(path, default=None):
    full = os.path.join(ROOT, path)
    return open(full, encoding="utf-8").read() if os.path.exists(full) else default


def load(path, required=True):
    text = read(path)
    if text is None and required:
        sys.exit(f"capacity.py: {path} not found (run its benchmark, see the defaults in "
                 "docs/capacity.md; or pass --throughput/--ceiling/--connections)")
    return None if text is None else json.loads(text)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in DEFAULTS:
        ap.add_argument(f"--{name}", help=f"report (default {DEFAULTS[name]})")
    ap.add_argument("--check", action="store_true", help="fail if the generated files are stale")
    ap.add_argument("--self-test", action="store_true", help="check the arithmetic, write nothing")
    args = ap.parse_args(argv)
    if args.check and all(getattr(args, n) is None for n in DEFAULTS):
        m = REGEN_RE.search(read(CAPACITY_MD, ""))  # the inputs docs/capacity.md was made from
        if m:
            again = ap.parse_args(shlex.split(m[1])[2:])
            for n in DEFAULTS:
                setattr(args, n, getattr(again, n))
    args.ceiling_required = args.ceiling not in (None, DEFAULTS["ceiling"])
    regen = ["python3", "scripts/capacity.py"]
    for n in DEFAULTS:
        if getattr(args, n) not in (None, DEFAULTS[n]):
            regen += [f"--{n}", getattr(args, n)]
        setattr(args, n, getattr(args, n) or DEFAULTS[n])
    args.regen = shlex.join(regen)
    return args


def generate(args):
    t = costs(args.throughput, load(args.throughput))
    missing = [r for r in ("api", "logic", "task", "connect", "Redis", "MariaDB") if t[r] is None]
    if missing:
        sys.exit(f"capacity.py: {args.throughput} has no CPU figure for {', '.join(missing)}")
    kr = load(args.ceiling, args.ceiling_required)
    k, args.ceiling = (costs(args.ceiling, kr), args.ceiling) if kr else (None, None)
    md, block, figs = render(args, t, k, load(args.connections))
    bench = read(BENCHMARKS_MD)
    if BEGIN in bench and END in bench:
        new_bench = bench[:bench.index(BEGIN)] + block + bench[bench.index(END) + len(END):]
    else:
        new_bench = bench.rstrip("\n") + "\n\n" + block + "\n"
    return {CAPACITY_MD: md + "\n", BENCHMARKS_MD: new_bench}, figs


def self_test():
    assert (nodes(9.6e6, 4.8e6), nodes(9.6e6 + 1, 4.8e6), nodes(1, 4.8e6), nodes(0, 4.8e6, 1)) == (2, 3, 2, 1)
    assert (redis_masters(0.7e6), redis_masters(0.7e6 + 1), redis_masters(0.7e6 * 7.5)) == (1, 3, 8)
    proc = lambda label, v, n=2: {"label": "full_cluster:" + label, "pids": list(range(n)), "cpu_us_per_msg": v}
    r = {"mode": "OneToOne", "rate": 10000.0, "sent": 100, "persisted_rows": 200,
         "measured": {"sent": 100, "delivered": 100},
         "proc_cpu": [proc("api", 0.0, 1), proc("logic", 10.0), proc("task", 20.0), proc("connect", 30.0),
                      {**proc("", 40.0, 1), "label": "mariadbd"}],
         "redis_cpu": [{"url": "redis://a:1", "cpu_us_per_msg": 5.0}, {"url": "redis://b:2", "cpu_us_per_msg": 7.0}]}
    c = costs("x.json", r)
    assert (c["Redis"], c["db_row"], c["rows_per_msg"], c["procs"]["logic"]) == (12.0, 20.0, 2.0, 2)
    assert command("x.json", r) == \
        "IM_REDIS_CLUSTER_URLS=redis://a:1,redis://b:2 scripts/bench-cluster.sh open10k x.json"
    assert command("x.json", {**r, "persisted_rows_per_shard": [90, 110]}).startswith(
        "DATABASE_SHARD_URLS=mysql://root@127.0.0.1:3306/test,mysql://root@127.0.0.1:3307/test "
        "IM_REDIS_CLUSTER_URLS=")
    r1 = {**r, "rate": None, "redis_cpu": r["redis_cpu"][:1]}
    assert command("y.json", r1) == "scripts/bench-cluster.sh closed y.json"
    g = costs("g.json", {**r, "mode": "Group", "measured": {"sent": 100, "delivered": 1000}})
    assert (g["logic"], g["task"], g["connect"], g["Redis"]) == (100.0, 20.0, 30.0, 120.0)
    conn = {"mode": "connections", "connections": 100002, "procs": 6,
            "ws_urls": [f"ws://h:{38081 + i}/ws" for i in range(6)]}
    assert "--api http://h:38080 --mode connections --connections 100000 --procs 6" in command("c.json", conn)
    users, s, budget = 3_600_000, size(3_600_000, c, 8000), CORES_PER_NODE * TARGET_UTILISATION * 1e6
    assert math.isclose(s["msgs"], 1000 * MSGS_PER_USER_PEAK_HOUR * PEAK_FACTOR)
    assert math.isclose(s["deliveries"], s["msgs"] * fanout())
    assert math.isclose(fanout(), 1 + GROUP_SHARE * ((MEAN_GROUP_SIZE - 1) * GROUP_ONLINE_SHARE - 1))
    assert s["task"] == max(MIN_NODES_PER_ROLE, math.ceil(s["deliveries"] * 20 / budget))
    logic = (s["msgs"] * 10 + s["logins"] * LOGIN_CPU_US) / budget
    assert s["logic"] == max(MIN_NODES_PER_ROLE, math.ceil(logic))
    assert s["MariaDB"] == max(1, math.ceil(s["msgs"] * 2 * 20 / (DB_CORES * DB_UTILISATION * 1e6)))
    per = conns_per_connect_node(30, s["deliveries"] / users, 8000)["min"]
    assert per <= CONNECT_MAX_CONNS and s["connect"] == max(
        MIN_NODES_PER_ROLE, math.ceil(s["deliveries"] * 30 / budget), math.ceil(users / per))
    print("capacity.py self-test: ok")


def main(argv):
    args = parse(argv)
    if args.self_test or args.check:
        self_test()
    if args.self_test:
        return 0
    files, figs = generate(args)
    if not args.check:
        for path, text in files.items():
            with open(os.path.join(ROOT, path), "w", encoding="utf-8") as f:
                f.write(text)
        print(f"wrote {CAPACITY_MD} and the capacity block of {BENCHMARKS_MD}")
        return 0
    failed = False
    for path, text in files.items():
        old = read(path, "")
        if old != text:
            failed = True
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), text.splitlines(True), f"{path} (on disk)", f"{path} (regenerated)"))
        if path == BENCHMARKS_MD:  # every measured CPU figure must be quoted there
            block = old[old.find(BEGIN):old.find(END)] if BEGIN in old else ""
            for label, _, a, b, _ in figs:
                row = next((ln for ln in block.splitlines() if ln.startswith(f"| {label} |")), "")
                if [c.strip() for c in row.split("|")[2:4]] != [a, b]:
                    failed = True
                    print(f"{BENCHMARKS_MD}: capacity inputs lack {label} = {a} / {b}")
    print("capacity model: " + ("STALE: run " + args.regen if failed else "current"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
