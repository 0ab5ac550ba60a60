#!/usr/bin/env bash
# Runs every libFuzzer target of a build dir (configured with IMGATE_FUZZ=ON, clang) for
# FUZZ_SECONDS each, starting from a throw-away copy of its committed seed corpus (the committed
# corpus never grows by itself). Fails when any target finds a crash, leak, timeout or OOM;
# the reproducer is kept in $FUZZ_OUT/<target>/ and printed.
#
#   tests/fuzz/run-fuzzers.sh build-fuzz            # all targets, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=20 FUZZ_TARGETS="jwt_verify query" tests/fuzz/run-fuzzers.sh build-fuzz
#
# Environment: FUZZ_SECONDS (60), FUZZ_TARGETS (all), FUZZ_OUT (a temp dir), FUZZ_JOBS (1:
# targets run one after another; 2 runs two at a time on a 2-core box).
set -uo pipefail

build=${1:-build-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
out=${FUZZ_OUT:-$(mktemp -d /tmp/imgate-fuzz.XXXXXX)}
bindir="$build/tests/fuzz"

# Largest input worth trying per target (bytes): frames need room for a few headers and bodies,
# tokens are bounded at 8 KiB by the verifier, YAML fleets are small documents.
max_len() {
    case $1 in
        frame_decoder) echo 4096 ;;
        message_bodies) echo 2048 ;;
        roundtrip) echo 4096 ;;
        jwt_verify) echo 2048 ;;
        query) echo 1024 ;;
        yaml_config | *config*) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

if [ -n "${FUZZ_TARGETS:-}" ]; then
    targets=$FUZZ_TARGETS
else
    targets=$(cd "$bindir" 2>/dev/null && ls fuzz_* 2>/dev/null | sed 's/^fuzz_//' | grep -v corpus_gen)
fi
if [ -z "$targets" ]; then
    echo "run-fuzzers: no fuzz targets in $bindir (configure with -DIMGATE_FUZZ=ON and clang)" >&2
    exit 2
fi

run_one() {
    local t=$1 bin="$bindir/fuzz_$1" seeds="$here/corpus/$1" dir="$out/$1"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    [ -d "$seeds" ] && cp -r "$seeds/." "$dir/corpus/"
    local dict=()
    [ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$bin" "$dir/corpus" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" "${dict[@]}" >"$dir/log" 2>&1
    local rc=$?
    local found
    found=$(ls "$dir/artifacts" 2>/dev/null | head -5)
    local execs
    execs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$')
    if [ $rc -ne 0 ] || [ -n "$found" ]; then
        echo "FAIL $t (exit $rc): $(grep -m1 -E 'ERROR|runtime error|invariant failed' "$dir/log")"
        for a in $found; do echo "     reproducer: $dir/artifacts/$a"; done
        echo "     log: $dir/log"
        return 1
    fi
    echo "ok   $t: ${execs:-?} runs in ${seconds}s, corpus $(ls "$dir/corpus" | wc -l) inputs"
}

echo "run-fuzzers: ${seconds}s per target, output in $out"
fail=0
pids=()
for t in $targets; do
    if [ "$jobs" -gt 1 ]; then
        run_one "$t" &
        pids+=($!)
        if [ ${#pids[@]} -ge "$jobs" ]; then
            wait "${pids[0]}" || fail=1
            pids=("${pids[@]:1}")
        fi
    else
        run_one "$t" || fail=1
    fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if [ $fail -ne 0 ]; then
    echo "run-fuzzers: FAILED (reproduce: $bindir/fuzz_<target> <reproducer>)"
    exit 1
fi
echo "run-fuzzers: all targets clean"
