#!/usr/bin/env bash
# Drives the retention verbs of the real `ckpt` CLI against a real
# ckpt-server: policy set/get, pin/unpin, ls's pinned column, prune --dry-run
# then prune (their decisions must agree), with --json checked by Python's
# json module, and error exits.
# Usage: cli_retention_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"

steps() {  # the job's committed steps, comma-separated
  "${ckpt}" ls cli/ret --json | "${py}" -c '
import json,sys; print(",".join(str(c["step"]) for c in json.load(sys.stdin)))'
}

head -c 100 /dev/urandom >"${work}/w.bin"
for step in 1 2 3 4 5; do
  "${ckpt}" put cli/ret "${step}" "${work}/w.bin" \
    --time "2026-01-01T0${step}:00:00Z" >/dev/null
done

"${ckpt}" policy get cli/ret --json | "${py}" -c '
import json,sys; p = json.load(sys.stdin); assert p["policy"] is None, p'

# Setting a policy applies it at once.
"${ckpt}" policy set cli/ret --max-to-keep 3 --json >"${work}/set.json"
"${py}" - "${work}/set.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["job"] == "cli/ret", r
assert r["policy"]["max_to_keep"] == 3, r
assert r["policy"]["keep_best"] is None, r
assert r["deleted_steps"] == [1, 2], r
PY
[ "$(steps)" = "3,4,5" ] || fail "after policy set: $(steps)"
"${ckpt}" policy get cli/ret --json | "${py}" -c '
import json,sys; p = json.load(sys.stdin)["policy"]
assert p["max_to_keep"] == 3 and p["keep_every"] is None, p'
"${ckpt}" policy get cli/ret | grep "max_to_keep=3" >/dev/null || fail "policy get (table)"

# A pin survives the policy at the next commit.
"${ckpt}" pin cli/ret 3 --json | "${py}" -c '
import json,sys; r = json.load(sys.stdin); assert r["pinned"] is True and r["step"] == 3, r'
"${ckpt}" put cli/ret 6 "${work}/w.bin" --time 2026-01-01T06:00:00Z >/dev/null
[ "$(steps)" = "3,4,5,6" ] || fail "pinned 3 not kept at commit: $(steps)"
"${ckpt}" ls cli/ret --json | "${py}" -c '
import json,sys
pins = {c["step"]: c["pinned"] for c in json.load(sys.stdin)}
assert pins == {3: True, 4: False, 5: False, 6: False}, pins'
"${ckpt}" ls cli/ret | sed -n 1p | grep "PINNED" >/dev/null || fail "ls table lacks PINNED"

# Dry run: every checkpoint with keep/delete and reasons; deletes nothing.
"${ckpt}" prune cli/ret --keep-last 1 --dry-run --json >"${work}/dry.json"
[ "$(steps)" = "3,4,5,6" ] || fail "dry run deleted: $(steps)"
"${ckpt}" prune cli/ret --keep-last 1 --dry-run | grep "delete" >/dev/null \
  || fail "prune --dry-run table lacks delete"
"${ckpt}" prune cli/ret --keep-last 1 --json >"${work}/real.json"
"${py}" - "${work}/dry.json" "${work}/real.json" <<'PY'
import json, sys
dry = json.load(open(sys.argv[1]))
real = json.load(open(sys.argv[2]))
assert dry["dry_run"] is True and real["dry_run"] is False, (dry, real)
acts = {d["step"]: d["action"] for d in dry["decisions"]}
assert acts == {3: "keep", 4: "delete", 5: "delete", 6: "keep"}, acts
for d in dry["decisions"]:
    assert d["reasons"], d
    assert d["keep"] == (d["action"] == "keep"), d
assert any("pinned" in r for d in dry["decisions"] if d["step"] == 3
           for r in d["reasons"]), dry
assert dry["deleted_steps"] == [4, 5], dry
assert real["deleted_steps"] == dry["deleted_steps"], (dry, real)
assert real["decisions"] == dry["decisions"], (dry, real)
PY
[ "$(steps)" = "3,6" ] || fail "after prune: $(steps)"

# No flags: the stored policy (max_to_keep 3) keeps both.
"${ckpt}" unpin cli/ret 3 --json | "${py}" -c '
import json,sys; assert json.load(sys.stdin)["pinned"] is False'
"${ckpt}" prune cli/ret --json | "${py}" -c '
import json,sys; r = json.load(sys.stdin)
assert r["policy"] == "stored" and r["deleted_steps"] == [], r'
"${ckpt}" prune cli/ret --keep-last 1 >/dev/null
[ "$(steps)" = "6" ] || fail "unpinned 3 survived prune: $(steps)"

# keep-best and keep-every policies round-trip.
"${ckpt}" policy set cli/ret --max-to-keep 2 --keep-every-n-hours 6 \
  --keep-best 1 --metric val_loss --mode min --json | "${py}" -c '
import json,sys; p = json.load(sys.stdin)["policy"]
assert p["max_to_keep"] == 2 and p["keep_every_seconds"] == 6 * 3600, p
assert p["keep_best"] == {"k": 1, "metric": "val_loss", "mode": "min"}, p'

# Errors: non-zero exit with the status on stderr; nothing changed.
if "${ckpt}" policy set cli/ret --max-to-keep 0 2>"${work}/err"; then fail "max-to-keep 0 accepted"; fi
grep -q "INVALID_ARGUMENT" "${work}/err" || fail "max-to-keep 0: $(cat "${work}/err")"
if "${ckpt}" policy set cli/ret --keep-best 1 --metric throughput 2>"${work}/err"; then fail "unresolvable auto mode accepted"; fi
grep -q "INVALID_ARGUMENT" "${work}/err" || fail "auto mode: $(cat "${work}/err")"
if "${ckpt}" prune cli/ret --keep-every 6h 2>"${work}/err"; then fail "keep-every without keep-last accepted"; fi
grep -q "INVALID_ARGUMENT" "${work}/err" || fail "keep-every: $(cat "${work}/err")"
"${ckpt}" policy get cli/ret --json | "${py}" -c '
import json,sys; assert json.load(sys.stdin)["policy"]["max_to_keep"] == 2'
if "${ckpt}" pin cli/ret 99 2>"${work}/err"; then fail "pin of a missing step succeeded"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "pin missing: $(cat "${work}/err")"
if "${ckpt}" policy get no/such 2>"${work}/err"; then fail "policy of unknown job"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "unknown job: $(cat "${work}/err")"

"${ckpt}" --help | grep "prune" >/dev/null || fail "--help lacks prune"
"${ckpt}" policy set --help | grep -e "--keep-every-n-hours" >/dev/null || fail "policy set --help"
"${ckpt}" policy get --help | grep "JOB" >/dev/null || fail "policy get --help"
"${ckpt}" prune --help | grep -e "--dry-run" >/dev/null || fail "prune --help"
"${ckpt}" pin --help | grep "STEP" >/dev/null || fail "pin --help"
"${ckpt}" unpin --help | grep "STEP" >/dev/null || fail "unpin --help"
echo "cli_retention_test: all checks passed"
