#!/usr/bin/env bash
# The reliability campaign at soak size (tests/reliability/README.md, "Soak"):
# builds the dev preset (failpoints on) and the fuzz preset, then runs the
# campaign's programs in turns, each at its soak size with a fresh seed,
# until the given hours have passed (a turn that has started finishes).
# Every run's output goes to a log, its one-line JSON summary to
# summary.jsonl, and the end prints the totals; a run that fails is kept
# (its seed, command and log printed) and the soak carries on, then exits 1.
#
#   bash tests/reliability/soak.sh --hours N [--seed S] [--out DIR]
#                                  [--fuzz-seconds N] [--no-build]
#     --hours N         how long to keep starting turns (fractions allowed)
#     --seed S          first seed; each run takes the next (default: time)
#     --out DIR         logs and summary.jsonl (default build/soak/<time>)
#     --fuzz-seconds N  fuzzing per target per turn (default 600)
#     --no-build        use build/dev and build/fuzz as they are
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HOURS=""
SEED="$(date +%s)"
OUT=""
FUZZ_SECONDS=600
BUILD=1
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --hours) HOURS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --fuzz-seconds) FUZZ_SECONDS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$HOURS" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "soak.sh: --hours N is required (a number of hours, e.g. 8 or 0.5)" >&2
  exit 2
fi
if ! [[ "$SEED" =~ ^[0-9]+$ && "$FUZZ_SECONDS" =~ ^[0-9]+$ ]]; then
  echo "soak.sh: --seed and --fuzz-seconds take whole numbers" >&2
  exit 2
fi
OUT="${OUT:-$ROOT/build/soak/$(date -u +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.jsonl"
: > "$SUMMARY"

cd "$ROOT"
export CCACHE_BASEDIR="$ROOT"
if [ "$BUILD" = 1 ]; then
  cmake --preset dev >/dev/null
  cmake --build --preset dev
fi
DEV="$ROOT/build/dev"
REL="$DEV/tests/reliability"
export CKPT_BUILD_DIR="$DEV"

deadline=$(( $(date +%s) + $(awk -v h="$HOURS" 'BEGIN { printf "%d", h * 3600 }') ))
failures=0
run_no=0

# run NAME CMD...: one run with the next seed (in $seed and CKPT_SEED); its
# summary line (a line starting with '{' or RELIABILITY_SUMMARY) is
# appended to summary.jsonl with the name, seed and exit status.
run() {
  local name="$1"; shift
  run_no=$((run_no + 1))
  local log="$OUT/$(printf '%04d' "$run_no")-$name.log"
  local status=0
  echo "=== $(date -u +%T) $name seed=$seed"
  CKPT_SEED="$seed" "$@" > "$log" 2>&1 || status=$?
  local line
  line="$(grep -E '^(RELIABILITY_SUMMARY )?\{' "$log" | tail -n 1 |
          sed 's/^RELIABILITY_SUMMARY //')" || true
  [ -n "$line" ] || line="null"
  printf '{"run":"%s","seed":%s,"exit":%d,"summary":%s}\n' \
    "$name" "$seed" "$status" "$line" >> "$SUMMARY"
  if [ "$status" != 0 ]; then
    failures=$((failures + 1))
    echo "!!! $name failed (exit $status, seed $seed): $* ; log $log"
  fi
  seed=$((seed + 1))
}

seed="$SEED"
turn=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  turn=$((turn + 1))
  echo "=== turn $turn"
  if [ -x "$REL/ckpt-crash-test" ]; then
    run kill9 "$REL/ckpt-crash-test" --seed "$seed" --cycles 200 \
      --history-dir "$OUT"
    # Until every failpoint fired 50 times (~900 cycles, ~27 min), in the CI
    # test's shape (reliability_failpoints).
    run failpoints "$REL/ckpt-crash-test" --mode failpoint --seed "$seed" \
      --fires 50 --min-fires 50 --jobs 2 --ranks 2 --min-shard-kib 64 \
      --max-shard-kib 256 --history-dir "$OUT"
    # T24: kills, failpoints and clean stops mixed, half the kill/stop cycles
    # against a server with a quota or limit set low; histories kept in $OUT.
    run chaos "$REL/ckpt-crash-test" --mode chaos --seed "$seed" \
      --cycles 200 --jobs 2 --ranks 2 --min-shard-kib 64 \
      --max-shard-kib 256 --keep-history --history-dir "$OUT"
  fi
  CKPT_FIRES=20 run failpoint_each "$REL/failpoint_crash_test"
  run power_loss "$REL/reliability_power_loss" --seed="$seed" --cycles=500
  run bit_rot "$REL/reliability_bit_rot" --seed="$seed" --trials=200
  run torn_wal "$REL/reliability_torn_wal" --seed="$seed" --trials=2000
  CKPT_TRIALS=500 run multi_rank_failure "$REL/multi_rank_failure_test"
  CKPT_ROUNDS=10000 run shared_chunk_gc "$REL/shared_chunk_gc_test"
  CKPT_ROUNDS=100 run disk_full "$REL/disk_full_saves_test"
  CKPT_STREAMS=1000 run limits bash -c 'ulimit -n 65536 2>/dev/null || true
    exec "$0"' "$REL/limits_test"
  CKPT_TRIALS=1000 run cancellation "$REL/cancellation_test"
  if [ "$turn" = 1 ] && [ "$BUILD" = 1 ]; then
    run fuzz bash tests/reliability/fuzz.sh --seconds "$FUZZ_SECONDS" \
      --seed "$seed" --work "$OUT/fuzz-work"
  else
    run fuzz bash tests/reliability/fuzz.sh --no-build \
      --seconds "$FUZZ_SECONDS" --seed "$seed" --work "$OUT/fuzz-work"
  fi
done

echo "=== soak done: $run_no runs in $turn turns, $failures failed"
echo "summary lines: $SUMMARY"
/usr/bin/python3 - "$SUMMARY" <<'EOF'
import json, sys
totals = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    entry = totals.setdefault(row["run"], {"runs": 0, "failed": 0})
    entry["runs"] += 1
    entry["failed"] += row["exit"] != 0
    summary = row["summary"]
    if isinstance(summary, dict):
        # Nested counts (failpoint fires per point) are summed per key too.
        for key, value in summary.items():
            if isinstance(value, dict):
                inner = entry.setdefault(key, {})
                for name, count in value.items():
                    if isinstance(count, (int, float)):
                        inner[name] = inner.get(name, 0) + count
            elif isinstance(value, (int, float)) \
                    and not isinstance(value, bool) and key != "seed":
                entry[key] = entry.get(key, 0) + value
print(json.dumps(totals, indent=1, sort_keys=True))
EOF
[ "$failures" = 0 ]
