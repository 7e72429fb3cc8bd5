#!/usr/bin/env bash
# Drives the real `ckpt` CLI against a real ckpt-server on a free loopback
# port: put (2 ranks), ls, show, get, stats, rm, with --json checked by
# Python's json module, and error exits.
# Usage: cli_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"

mkdir -p "${work}/in0" "${work}/in1"
head -c 9000000 /dev/urandom >"${work}/in0/model.bin"
head -c 1234 /dev/urandom >"${work}/in0/optim.bin"
head -c 777 /dev/urandom >"${work}/in1/model.bin"
printf 'shared bytes\n' >"${work}/in0/config.txt"
cp "${work}/in0/config.txt" "${work}/in1/config.txt"

# Two ranks of step 10; the checkpoint is invisible until both commit.
"${ckpt}" put cli/job 10 "${work}/in0/model.bin" "${work}/in0/optim.bin" \
  "${work}/in0/config.txt" --rank 0 --world-size 2 --metric val_loss=0.25 \
  --time 2026-01-02T03:04:05Z
n=$("${ckpt}" ls cli/job --json | "${py}" -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "${n}" = 0 ] || fail "pending checkpoint listed before rank 1 committed"
"${ckpt}" put cli/job 10 "${work}/in1/model.bin" "${work}/in1/config.txt" \
  --rank 1 --world-size 2

"${ckpt}" ls cli/job --json >"${work}/ls.json"
"${py}" - "${work}/ls.json" <<'PY'
import json, sys
cps = json.load(open(sys.argv[1]))
assert len(cps) == 1, cps
cp = cps[0]
for key in ("step", "time", "world_size", "logical_bytes", "metrics"):
    assert key in cp, (key, cp)
assert cp["step"] == 10 and cp["world_size"] == 2, cp
assert cp["logical_bytes"] == 9000000 + 1234 + 13 + 777 + 13, cp
assert abs(cp["metrics"]["val_loss"] - 0.25) < 1e-12, cp
assert cp["time"].startswith("2026-01-02T03:04:05"), cp
# A full save; the replicated config.txt was stored new by one rank only.
assert cp["kind"] == "full" and cp["base_step"] is None, cp
assert cp["base_steps"] == [], cp
assert cp["bytes_added"] == 9000000 + 1234 + 13 + 777, cp
PY

"${ckpt}" ls --json | "${py}" -c '
import json,sys
jobs = json.load(sys.stdin)
assert any(j.get("name", j.get("job")) == "cli/job" for j in jobs), jobs'

"${ckpt}" show cli/job 10 --json | "${py}" -c '
import json,sys
m = json.load(sys.stdin)
text = json.dumps(m)
for name in ("model.bin", "optim.bin", "config.txt"):
    assert name in text, name
assert m["kind"] == "full" and m["bytes_added"] == 9000000 + 1234 + 13 + 777, m
for shard in m["shards"]:
    for t in shard["tensors"]:
        assert t["delta"] is False and t["base_step"] is None, t
        assert t["stored_bytes"] == t["bytes"], t'
"${ckpt}" show cli/job latest >"${work}/show.txt"
grep -q "model.bin" "${work}/show.txt" || fail "show (table) lacks model.bin"
grep -q "^kind full, " "${work}/show.txt" || fail "show lacks the kind: $(cat "${work}/show.txt")"
"${ckpt}" ls cli/job >"${work}/ls.txt"
grep -q "KIND.*BASE.*SIZE.*ADDED" "${work}/ls.txt" || fail "ls lacks KIND, BASE, ADDED: $(cat "${work}/ls.txt")"
grep -q " full  *- " "${work}/ls.txt" || fail "ls row lacks kind full and no base: $(cat "${work}/ls.txt")"

for rank in 0 1; do
  "${ckpt}" get cli/job latest "${work}/out${rank}" --rank "${rank}"
  for f in "${work}/in${rank}"/*; do
    cmp "${f}" "${work}/out${rank}/$(basename "${f}")" || fail "rank ${rank}: $(basename "${f}") differs"
  done
done

# The replicated config.txt is stored once.
"${ckpt}" stats --json >"${work}/stats.json"
"${py}" - "${work}/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["logical_bytes"] == 9000000 + 1234 + 13 + 777 + 13, s
assert s["stored_bytes"] == 9000000 + 1234 + 13 + 777, s
PY

# Errors: non-zero exit, the status on stderr, nothing printed on stdout.
if "${ckpt}" get cli/job 99 "${work}/nope" 2>"${work}/err"; then fail "get of a missing step succeeded"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "missing step: stderr lacks NOT_FOUND: $(cat "${work}/err")"
if "${ckpt}" put badjobname 1 "${work}/in0/optim.bin" 2>"${work}/err"; then fail "bad job name accepted"; fi
grep -q "INVALID_ARGUMENT" "${work}/err" || fail "bad job: $(cat "${work}/err")"
if "${ckpt}" put cli/job 11 "${work}/in0/optim.bin" --rank 2 --world-size 2 2>"${work}/err"; then fail "rank outside world size accepted"; fi
"${ckpt}" --help | grep "put" >/dev/null || fail "--help lacks the verbs"
"${ckpt}" put --help | grep -e "--world-size" >/dev/null || fail "put --help lacks --world-size"

"${ckpt}" rm cli/job 10
n=$("${ckpt}" ls cli/job --json | "${py}" -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "${n}" = 0 ] || fail "rm left the checkpoint listed"
echo "cli_test: all checks passed"
