#!/usr/bin/env bash
# Makes sure the servers the test suite talks to are up on 127.0.0.1:
# Redis (REDIS_URL), MariaDB (DATABASE_URL) and etcd (ETCD_ENDPOINTS), plus
# protoc (etcd-client compiles etcd's protos at build time). Installs Debian
# packages when something is missing (needs root) and fails loudly, naming
# the server, when it cannot. Sourced by scripts/test; safe to run alone.
set -euo pipefail

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export DATABASE_URL="${DATABASE_URL:-mysql://root@127.0.0.1:3306/test}"
export ETCD_ENDPOINTS="${ETCD_ENDPOINTS:-http://127.0.0.1:2379}"

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
log "Redis, MariaDB and etcd are up"
