#!/usr/bin/env bash
# Drives `ckpt ls`, `ckpt stats` and `ckpt verify` (the real binaries) on
# checkpoints that share chunks, checking --json with Python: unique bytes
# per checkpoint, per-job and per-tenant stats, and intact verifies.
# (Damage on disk is tests/integration/verify_test.cc.)
# Usage: cli_verify_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"

mkdir -p "${work}/in"
head -c 5000000 /dev/urandom >"${work}/in/shared.bin"   # 2 chunks (4 MiB + rest)
head -c 3000 /dev/urandom >"${work}/in/own1.bin"
head -c 7000 /dev/urandom >"${work}/in/own2.bin"

"${ckpt}" put acme/train 1 "${work}/in/shared.bin" "${work}/in/own1.bin" >/dev/null
"${ckpt}" put acme/train 2 "${work}/in/shared.bin" "${work}/in/own2.bin" >/dev/null
"${ckpt}" put acme/eval 1 "${work}/in/own2.bin" >/dev/null
"${ckpt}" put other/job 1 "${work}/in/own1.bin" >/dev/null
"${ckpt}" policy set acme/train --max-to-keep 5 >/dev/null

# Step 1's own1.bin is its alone (other/job is another tenant); step 2's
# own2.bin is shared with acme/eval, a job of the same tenant.
"${ckpt}" ls acme/train --json >"${work}/ls.json"
"${py}" - "${work}/ls.json" <<'PY'
import json, sys
cps = {c["step"]: c for c in json.load(open(sys.argv[1]))}
assert cps[1]["unique_bytes"] == 3000, cps[1]
assert cps[2]["unique_bytes"] == 0, cps[2]
PY
"${ckpt}" ls acme/train | grep "UNIQUE" >/dev/null || fail "ls JOB table lacks UNIQUE"

"${ckpt}" ls --json >"${work}/jobs.json"
"${py}" - "${work}/jobs.json" <<'PY'
import json, sys
jobs = {j["name"]: j for j in json.load(open(sys.argv[1]))}
train = jobs["acme/train"]
assert train["checkpoint_count"] == 2, train
assert train["logical_bytes"] == 2 * 5000000 + 3000 + 7000, train
assert train["policy"]["max_to_keep"] == 5, train
assert jobs["acme/eval"]["policy"] is None, jobs["acme/eval"]
PY
"${ckpt}" ls | grep "max_to_keep=5" >/dev/null || fail "ls table lacks the policy"

"${ckpt}" stats --json >"${work}/stats.json"
"${py}" - "${work}/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
jobs = {j["job"]: j for j in s["jobs"]}
assert sorted(jobs) == ["acme/eval", "acme/train", "other/job"], jobs
assert jobs["acme/train"] == {"job": "acme/train", "checkpoint_count": 2,
                              "logical_bytes": 2 * 5000000 + 10000}, jobs
tenants = {t["tenant"]: t for t in s["tenants"]}
acme = tenants["acme"]
assert acme["job_count"] == 2 and acme["checkpoint_count"] == 3, acme
assert acme["logical_bytes"] == 2 * 5000000 + 10000 + 7000, acme
assert acme["stored_bytes"] == 5000000 + 10000, acme
assert abs(acme["dedup_ratio"] - acme["logical_bytes"] / acme["stored_bytes"]) < 1e-9, acme
assert tenants["other"]["stored_bytes"] == 3000, tenants
assert s["stored_bytes"] == 5000000 + 10000 + 3000, s
PY
"${ckpt}" stats | grep "^TENANT" >/dev/null || fail "stats lacks the tenant table"

# Verify: presence everywhere, data of one job, a subset, one step.
"${ckpt}" verify --json >"${work}/v_all.json"
"${ckpt}" verify acme/train --read-data --json >"${work}/v_data.json"
"${ckpt}" verify acme/train latest --read-data-subset 1/2 --json >"${work}/v_sub1.json"
"${ckpt}" verify acme/train latest --read-data-subset 2/2 --json >"${work}/v_sub2.json"
"${py}" - "${work}" <<'PY'
import json, sys
d = sys.argv[1]
load = lambda name: json.load(open(f"{d}/{name}"))
v = load("v_all.json")
assert v["ok"] and v["checkpoints_checked"] == 4 and not v["read_data"], v
assert v["chunks_checked"] == 4 + 1, v  # acme: shared x2, own1, own2; other: own1
assert v["chunks_read"] == 0 and v["damaged_chunks"] == [], v
v = load("v_data.json")
assert v["ok"] and v["job"] == "acme/train" and v["chunks_read"] == 4, v
assert v["bytes_read"] == 5000000 + 10000, v
a, b = load("v_sub1.json"), load("v_sub2.json")
assert a["step"] == 2 and a["read_data_subset"] == "1/2", a
# The two parts split step 2's chunks between them.
assert a["chunks_read"] + b["chunks_read"] == a["chunks_checked"] == 3, (a, b)
assert a["bytes_read"] + b["bytes_read"] == 5000000 + 7000, (a, b)
PY
"${ckpt}" verify acme/train --read-data | grep "no damage found" >/dev/null || fail "verify table"

# Errors: the status on stderr, exit 1.
if "${ckpt}" verify acme/train --read-data-subset 3/2 2>"${work}/err"; then fail "bad subset accepted"; fi
grep -q "INVALID_ARGUMENT" "${work}/err" || fail "bad subset: $(cat "${work}/err")"
if "${ckpt}" verify acme/nope 2>"${work}/err"; then fail "unknown job accepted"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "unknown job: $(cat "${work}/err")"
if "${ckpt}" verify acme/train 99 2>"${work}/err"; then fail "unknown step accepted"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "unknown step: $(cat "${work}/err")"
help=$("${ckpt}" verify --help)
for flag in --read-data --read-data-subset JOB STEP; do
  grep -q -- "${flag}" <<<"${help}" || fail "verify --help lacks ${flag}"
done
echo "cli_verify_test: all checks passed"
