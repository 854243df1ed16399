#!/usr/bin/env bash
# Runs every cargo-fuzz target of the reliability suite for a bounded time.
#
#   tests/reliability/fuzz/run.sh [seconds-per-target]   (default 20)
#
# Installs cargo-fuzz when missing. Needs a nightly toolchain (`cargo +nightly`).
# Environment:
#   FUZZ_SANITIZER  none (default: the code under test forbids unsafe) or address
#   FUZZ_TARGETS    space-separated subset of targets (default: all)
#   FUZZ_JOBS       parallel fuzzing jobs per target (default 1)
# New inputs go to corpus/<target>/ (ignored by git; seeds/<target>/ are
# committed). A crash leaves its input in artifacts/<target>/ and makes the
# script exit 1 after the remaining targets ran; a build failure exits 2.
set -euo pipefail

secs="${1:-20}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
targets="${FUZZ_TARGETS:-client_frame http_bodies}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi

cd "$here/.."
# Build first, so a build failure is not mistaken for a crash.
for t in $targets; do
    if ! cargo +nightly fuzz build --fuzz-dir "$here" --sanitizer "$sanitizer" "$t"; then
        echo "FUZZ build of $t failed (see above): no target ran" >&2
        exit 2
    fi
done
status=0
summary=()
for t in $targets; do
    mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
    log="$(mktemp)"
    echo "== $t: ${secs}s (sanitizer $sanitizer)" >&2
    set +e
    cargo +nightly fuzz run --fuzz-dir "$here" --sanitizer "$sanitizer" --jobs "$jobs" "$t" \
        "$here/corpus/$t" "$here/seeds/$t" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$here/artifacts/$t/" -print_final_stats=1 2>&1 | tee "$log" >&2
    rc=${PIPESTATUS[0]}
    set -e
    runs="$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || true)"
    [ -n "$runs" ] || runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+$' || echo '?')"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo '?')"
    corpus="$(find "$here/corpus/$t" -type f | wc -l)"
    if [ "$rc" -ne 0 ]; then
        status=1
        crash="$(ls -t "$here/artifacts/$t" 2>/dev/null | head -1)"
        summary+=("FUZZ $t | ${secs}s | runs $runs | cov $cov | corpus $corpus | CRASH (exit $rc) ${crash:+artifacts/$t/$crash}")
    else
        summary+=("FUZZ $t | ${secs}s | runs $runs | cov $cov | corpus $corpus | no crash")
    fi
    rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit "$status"
