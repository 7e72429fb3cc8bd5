#!/usr/bin/env bash
# Runs the C++ example client (client/demo/demo_trainer.cc) against a real
# ckpt-server: a 2-rank job crashes after step 12, a second run resumes from
# the latest committed checkpoint, and --verify checks that its final state
# is bit-identical to an uninterrupted run.
# Usage: demo_trainer_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"

trainer="${build}/client/demo/ckpt-demo-trainer"
job=demo/cpp
if "${trainer}" --job "${job}" --steps 30 --crash-at 12 >"${work}/run1" 2>&1; then
  fail "the first run was expected to crash: $(cat "${work}/run1")"
fi
latest=$("${ckpt}" ls "${job}" --json | "${py}" -c \
  'import json, sys; print(json.load(sys.stdin)[-1]["step"])')
[ "${latest}" = 10 ] || fail "latest checkpoint after the crash is ${latest}, not 10"
"${trainer}" --job "${job}" --steps 30 --verify >"${work}/run2" 2>&1 ||
  fail "the resumed run failed: $(cat "${work}/run2")"
grep -q "restored step 10 from checkpoint ${job}@10" "${work}/run2" ||
  fail "the second run did not resume from step 10: $(cat "${work}/run2")"
grep -q "final state identical to an uninterrupted run" "${work}/run2" ||
  fail "no bit-identity: $(cat "${work}/run2")"
echo "demo_trainer_test: OK"
