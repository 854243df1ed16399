# syntax=docker/dockerfile:1
#
# im: the reference cluster binary (`full_cluster api|logic|task|connect|all`)
# and the single-process `quickstart`, in one image.
#
#   docker build -t im:local .
#   docker run --rm im:local --help
#   docker run --rm -p 8080:8080 --entrypoint quickstart im:local
#
# Untested here: the development machine has no Docker engine. The file is
# linted by scripts/check-deploy.sh (hadolint, plus checks of its own: pinned
# base images, numeric non-root USER, ports and listen addresses matching the
# roles' defaults, docker-compose.yml and deploy/kubernetes/).

# The toolchain the project is built and tested with (Cargo.toml's
# rust-version is the minimum); bump it deliberately, not by a moving tag.
ARG RUST_VERSION=1.95

############################ builder ############################
FROM rust:${RUST_VERSION}-bookworm AS builder

# etcd-client (im-discovery's `etcd` feature) compiles etcd's protos with
# protoc at build time; our own protos use the pure-Rust protox.
# Unpinned apt packages on purpose (DL3008): Debian stable only ships
# security fixes, and exact versions vanish from the archive when it updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The cache mounts keep the registry and target/ between builds (BuildKit);
# the binaries are copied out of the cached target/ into /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p full_cluster -p quickstart \
 && mkdir -p /out \
 && cp target/release/full_cluster target/release/quickstart /out/

############################ runtime ############################
FROM debian:bookworm-slim

# ca-certificates for TLS endpoints; curl for container healthchecks
# (`curl -fsS http://127.0.0.1:<port>/readyz`). /var/lib/im is the working
# directory, writable by im (e.g. `quickstart --data sqlite://im.db`).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 im \
 && useradd --system --uid 10001 --gid im --no-create-home --shell /usr/sbin/nologin im \
 && mkdir -p /var/lib/im \
 && chown 10001:10001 /var/lib/im

COPY --from=builder /out/full_cluster /out/quickstart /usr/local/bin/

# Inside a container every role must listen on all interfaces (the built-in
# defaults are 127.0.0.1; the ports are the built-in ones of
# examples/full_cluster/src/config.rs). These are ordinary `IM_SECTION__KEY`
# variables: override them with `-e`/`environment:` or with flags. Peers reach
# the gRPC servers through `IM_LOGIC__ADVERTISE` / `IM_CONNECT__ADVERTISE`,
# and browsers reach a connect node through `IM_CONNECT__PUBLIC_WS_URL`; set
# those per container (docker-compose.yml, deploy/kubernetes/). The servers
# come from REDIS_URL or IM_REDIS_CLUSTER_URLS, DATABASE_URL (and
# DATABASE_SHARD_URLS for a sharded archive) and ETCD_ENDPOINTS.
# IM_LISTEN is the quickstart's.
ENV IM_API__LISTEN=0.0.0.0:8080 \
    IM_CONNECT__LISTEN=0.0.0.0:8081 \
    IM_CONNECT__GRPC_LISTEN=0.0.0.0:7101 \
    IM_LOGIC__GRPC_LISTEN=0.0.0.0:7001 \
    IM_LOGIC__OPS_LISTEN=0.0.0.0:9101 \
    IM_TASK__OPS_LISTEN=0.0.0.0:9201 \
    IM_LISTEN=0.0.0.0:8080 \
    IM_LOG_JSON=true

# 8080 api (HTTP API, web page, ops) · 8081 connect (/ws + ops) · 7101 connect gRPC
# 7001 logic gRPC · 9101 logic ops · 9201 task ops
EXPOSE 8080 8081 7001 7101 9101 9201

# Numeric, so Kubernetes' runAsNonRoot can verify it (user and group im).
USER 10001:10001
WORKDIR /var/lib/im
# SIGTERM starts the graceful shutdown of every role (exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["full_cluster"]
CMD ["--help"]
