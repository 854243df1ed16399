#!/usr/bin/env bash
# Serves the quickstart (release build, like `cargo run --release -p quickstart`)
# on a free port and drives the web page with two browser contexts
# (tests/browser/chat.mjs; more screenshots land next to the first one).
# Installs Debian's chromium and the npm package playwright-core (under
# /var/tmp/im-browser) when missing.
# Usage: tests/browser/run.sh [screenshot path]
set -euo pipefail
cd "$(dirname "$0")/../.."
shot="${1:-test-artifacts/browser-chat.png}"
mkdir -p "$(dirname "$shot")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/im-target}"
if ! command -v chromium >/dev/null; then
  echo "[browser] installing chromium" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/im-chromium.log 2>&1 \
    || { echo "FATAL: cannot install chromium (see /tmp/im-chromium.log)" >&2; exit 1; }
fi
pw=/var/tmp/im-browser
if [ ! -d "$pw/node_modules/playwright-core" ]; then
  echo "[browser] installing playwright-core" >&2
  mkdir -p "$pw" && (cd "$pw" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install playwright-core@1 >/tmp/im-npm.log 2>&1) \
    || { echo "FATAL: cannot install playwright-core (see /tmp/im-npm.log)" >&2; exit 1; }
fi
cargo build -q --release -p quickstart
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CARGO_TARGET_DIR/release/quickstart" --listen "127.0.0.1:$port" --secret browser-test-secret-browser-test-secret >/tmp/im-browser-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
NODE_PATH="$pw/node_modules" node tests/browser/chat.mjs "http://127.0.0.1:$port" "$shot"
