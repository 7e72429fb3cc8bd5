#!/usr/bin/env bash
# T23: builds the fuzz preset (clang-14, libFuzzer + ASan + UBSan) and
# fuzzes each harness of tests/fuzz for N seconds, starting from its
# checked-in corpus (tests/fuzz/corpus/<target>, copied: the run never
# writes there unless --merge). Prints per target the executions, the
# corpus it ended with (inputs, bytes), the crashes (0 expected) and the
# peak RSS, then one JSON line with the same figures. Exits non-zero when a
# target crashed (a sanitizer report, an oracle violation, a leak, a
# timeout or an out-of-memory), keeping the crashing input, whose path it
# prints; reproduce with `build/fuzz/tests/fuzz/fuzz_<target> FILE`, or
# replay it in any build with `build/dev/tests/fuzz/fuzz_<target> FILE`.
#
#   tests/reliability/fuzz.sh [--seconds N] [--target T]... [--seed S]
#                             [--jobs J] [--no-build] [--merge] [--work DIR]
#     --seconds N  fuzzing time per target (default 60)
#     --target T   only this target (repeatable): rpc sequence manifest
#                  row_delta fingerprint_record safetensors import_json;
#                  `decoders` stands for the five after sequence (the
#                  cheap ones, which tests/run_all.sh fuzzes in CI)
#     --seed S     libFuzzer's -seed (default: a random one, printed)
#     --jobs J     fuzz J targets at a time (default 1)
#     --no-build   use the fuzz build as it is (else only the targets run
#                  are built)
#     --merge      afterwards, minimize (libFuzzer -merge=1) the checked-in
#                  corpus together with what the run found, and replace the
#                  checked-in corpus with the result (regress-* entries are
#                  kept as they are)
#     --work DIR   where the run's corpora, logs and crashes go (default
#                  build/fuzz/fuzz-work; emptied per target first)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DECODERS=(manifest row_delta fingerprint_record safetensors import_json
          chunk_answer)
ALL_TARGETS=(rpc sequence "${DECODERS[@]}")
SECONDS_PER_TARGET=60
TARGETS=()
SEED=""
JOBS=1
BUILD=1
MERGE=0
WORK="$ROOT/build/fuzz/fuzz-work"

while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET="$2"; shift 2 ;;
    --target)
      if [ "$2" = decoders ]; then TARGETS+=("${DECODERS[@]}"); else TARGETS+=("$2"); fi
      shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --merge) MERGE=1; shift ;;
    --work) WORK="$2"; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=("${ALL_TARGETS[@]}"); fi
given=("${TARGETS[@]}")
TARGETS=()
for t in "${given[@]}"; do
  case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *) echo "fuzz.sh: unknown target $t (one of: ${ALL_TARGETS[*]} decoders)" >&2
       exit 2 ;;
  esac
  case " ${TARGETS[*]-} " in
    *" $t "*) ;;  # each once: runs share nothing but their directory
    *) TARGETS+=("$t") ;;
  esac
done
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ] ||
   ! [[ "$JOBS" =~ ^[0-9]+$ ]] || [ "$JOBS" -lt 1 ]; then
  echo "fuzz.sh: --seconds and --jobs need positive integers" >&2
  exit 2
fi
if [ -z "$SEED" ]; then SEED=$(( (RANDOM << 15 | RANDOM) + 1 )); fi
if ! [[ "$SEED" =~ ^[0-9]+$ ]] || [ "$SEED" -lt 1 ]; then
  echo "fuzz.sh: --seed needs a positive integer (0 is libFuzzer's 'random')" >&2
  exit 2
fi

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
  export CCACHE_BASEDIR="$ROOT"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --target "${TARGETS[@]/#/fuzz_}"
fi

# The harnesses' RocksDB stores go here (fuzz_store.h), removed at the end
# even when a harness crashed before removing its own.
STORE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ckpt-fuzz-stores-XXXXXX")"
if [ -d /dev/shm ]; then
  rm -rf "$STORE_DIR"
  STORE_DIR="$(mktemp -d /dev/shm/ckpt-fuzz-stores-XXXXXX)"
fi
trap 'rm -rf "$STORE_DIR"' EXIT
export CKPT_FUZZ_DIR="$STORE_DIR"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$ROOT/tests/asan/lsan_suppressions.txt:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# One target's run, in its own directory; its exit status goes to a file.
fuzz_one() {
  local t="$1" dir="$WORK/$1" status=0
  "$ROOT/build/fuzz/tests/fuzz/fuzz_$t" -seed="$SEED" \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
    -rss_limit_mb=2048 -timeout=60 -max_len=65536 \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1 ||
    status=$?
  echo "$status" >"$dir/status"
}

echo "fuzz.sh: seed $SEED, $SECONDS_PER_TARGET s per target, $JOBS at a time"
for t in "${TARGETS[@]}"; do
  dir="$WORK/$t"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp "$ROOT/tests/fuzz/corpus/$t"/* "$dir/corpus/" 2>/dev/null || true
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait

failed=0
total_execs=0
total_crashes=0
json_targets=()
printf '%-20s %12s %9s %12s %8s %10s\n' target executions inputs corpus_bytes crashes peak_rss_mb
for t in "${TARGETS[@]}"; do
  binary="$ROOT/build/fuzz/tests/fuzz/fuzz_$t"
  seeds="$ROOT/tests/fuzz/corpus/$t"
  dir="$WORK/$t"
  status=$(cat "$dir/status" 2>/dev/null || echo 255)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$dir/log" | tail -1)
  inputs=$(find "$dir/corpus" -type f | wc -l)
  bytes=$(find "$dir/corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  crashes=$(find "$dir/artifacts" -type f | wc -l)
  if [ "$status" != 0 ] && [ "$crashes" = 0 ]; then crashes=1; fi
  total_execs=$((total_execs + ${execs:-0}))
  total_crashes=$((total_crashes + crashes))
  printf '%-20s %12s %9s %12s %8s %10s\n' "$t" "${execs:-?}" "$inputs" "$bytes" \
    "$crashes" "${rss:-?}"
  if [ "$crashes" != 0 ]; then
    failed=1
    echo "fuzz.sh: $t crashed (exit $status, seed $SEED); log $dir/log" >&2
    find "$dir/artifacts" -type f -printf 'fuzz.sh: kept input %p\n' >&2
    grep -m 5 -E 'ERROR|oracle violated|runtime error' "$dir/log" >&2 || true
  elif [ "$MERGE" = 1 ]; then
    merged="$dir/merged"
    mkdir -p "$merged"
    "$binary" -merge=1 -max_len=65536 "$merged" "$seeds" "$dir/corpus" \
      >"$dir/merge.log" 2>&1
    # Regression entries (regress-*) stay whether or not they add coverage.
    mkdir -p "$dir/regress"
    cp "$seeds"/regress-* "$dir/regress/" 2>/dev/null || true
    rm -rf "$seeds"
    mkdir -p "$seeds"
    for f in "$merged"/*; do cp "$f" "$seeds/$(basename "$f")"; done
    cp "$dir/regress"/* "$seeds/" 2>/dev/null || true
    echo "fuzz.sh: $t corpus merged: $(ls "$seeds" | wc -l) inputs," \
      "$(du -sb "$seeds" | cut -f1) bytes" >&2
  fi
  json_targets+=("\"$t\":{\"executions\":${execs:-0},\"corpus_inputs\":$inputs,\"corpus_bytes\":$bytes,\"crashes\":$crashes,\"peak_rss_mb\":${rss:-0}}")
done
# Totals at the top as well, which soak.sh adds up over its turns.
(IFS=,; echo "{\"test\":\"T23\",\"seed\":$SEED,\"seconds_per_target\":$SECONDS_PER_TARGET,\"executions\":$total_execs,\"crashes\":$total_crashes,\"targets\":{${json_targets[*]}}}")
exit "$failed"
