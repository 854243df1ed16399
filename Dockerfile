# syntax=docker/dockerfile:1
#
# im: the reference cluster binary (`full_cluster api|logic|task|connect|all`)
# and the single-process `quickstart`, in one image.
#
#   docker build -t im:local .
#   docker run --rm im:local --help
#   docker run --rm -p 8080:8080 --entrypoint quickstart im:local
#
# Untested here: the development machine has no Docker engine.

############################ builder ############################
FROM rust:1-bookworm AS builder

# etcd-client (im-discovery's `etcd` feature) compiles etcd's protos with
# protoc at build time; our own protos use the pure-Rust protox.
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
# (`curl -fsS http://127.0.0.1:<port>/readyz`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 im \
 && useradd --system --uid 10001 --gid im --no-create-home --shell /usr/sbin/nologin im

COPY --from=builder /out/full_cluster /out/quickstart /usr/local/bin/

# Inside a container every role must listen on all interfaces (the built-in
# defaults are 127.0.0.1). These are ordinary `IM_SECTION__KEY` variables:
# override them with `-e`/`environment:` or with flags. Peers reach the gRPC
# servers through `IM_LOGIC__ADVERTISE` / `IM_CONNECT__ADVERTISE`, and
# browsers reach a connect node through `IM_CONNECT__PUBLIC_WS_URL`; set those
# per container (see docker-compose.yml). IM_LISTEN is the quickstart's.
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

USER im:im
# SIGTERM starts the graceful shutdown of every role (exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["full_cluster"]
CMD ["--help"]
