#!/usr/bin/env bash
# Drives `ckpt stats JOB` and `ckpt gc`'s explanations and --hold-seconds
# through the real CLI against a real ckpt-server with its default chunk
# hold (1800 s):
# - two jobs of one tenant sharing a chunk: each job's stored bytes are the
#   distinct chunks its committed checkpoints reference, with the shared
#   part apart (exact byte counts), and a dedup ratio over them; a job alone
#   in its tenant shares nothing though another tenant stores the same
#   bytes;
# - gc explains what it keeps: a pending checkpoint's chunks until its
#   lease ends, a deleted checkpoint's chunks held for saves in flight until
#   the hold window ends;
# - `gc --hold-seconds 0` collects what the default holds, and the kept
#   checkpoints restore byte-identical;
# - hostile --hold-seconds values are refused with nothing deleted;
# - after a restart, a tenant with a checkpoint begun before it is skipped,
#   and its garbage is explained as held until that checkpoint's lease ends.
# Usage: cli_stats_gc_test.sh BUILD_DIR
set -euo pipefail
build=$1
server_extra=(--gc-interval 0)
source "$(dirname "$0")/cli_lib.sh"

json_field() {  # FILE EXPRESSION (Python, over `r`)
  "${py}" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

head -c 100000 /dev/urandom >"${work}/x.bin"
head -c 50000 /dev/urandom >"${work}/y.bin"
head -c 70000 /dev/urandom >"${work}/z.bin"
head -c 30000 /dev/urandom >"${work}/p.bin"
# t/a: x and y, twice (dedup within the job); t/b: x (shared) and z.
"${ckpt}" put t/a 1 "${work}/x.bin" "${work}/y.bin" >/dev/null
"${ckpt}" put t/a 2 "${work}/x.bin" "${work}/y.bin" >/dev/null
"${ckpt}" put t/b 1 "${work}/x.bin" "${work}/z.bin" >/dev/null
# Another tenant stores x as well: chunks are deduplicated per tenant.
"${ckpt}" put t2/solo 1 "${work}/x.bin" >/dev/null

"${ckpt}" stats t/a --json >"${work}/a.json"
"${ckpt}" stats t/b --json >"${work}/b.json"
"${ckpt}" stats t2/solo --json >"${work}/solo.json"
"${ckpt}" stats --json >"${work}/server.json"
"${py}" - "${work}" <<'PY'
import json, sys
d = sys.argv[1]
a, b, solo, server = (json.load(open(f"{d}/{n}.json"))
                      for n in ("a", "b", "solo", "server"))
def expect(r, **want):
    for k, v in want.items():
        assert r[k] == v, (k, r[k], v, r)
expect(a, job="t/a", stored_bytes_of="job", logical_bytes=300000,
       stored_bytes=150000, chunk_count=2, own_bytes=50000,
       shared_bytes=100000, own_chunk_count=1, shared_chunk_count=1,
       dedup_ratio=2.0, checkpoint_count=2)
expect(b, logical_bytes=170000, stored_bytes=170000, own_bytes=70000,
       shared_bytes=100000, shared_chunk_count=1, dedup_ratio=1.0)
expect(solo, stored_bytes=100000, own_bytes=100000, shared_bytes=0,
       shared_chunk_count=0, dedup_ratio=1.0)
# The tenant rows still say what each tenant stores in all.
assert [t["stored_bytes"] for t in a["tenants"]] == [220000], a["tenants"]
assert [t["stored_bytes"] for t in solo["tenants"]] == [100000], solo
# Without a job: the server's figures, no per-job split.
expect(server, stored_bytes=320000, chunk_count=4, logical_bytes=570000)
assert "own_bytes" not in server and "shared_bytes" not in server, server
PY
"${ckpt}" stats t/a >"${work}/a.txt"
grep -E "^  stored bytes +146.5 KiB \(150000\)$" "${work}/a.txt" >/dev/null || fail "stats text: stored $(cat "${work}/a.txt")"
grep -E "^    own +48.8 KiB \(50000\), only this job's checkpoints$" "${work}/a.txt" >/dev/null || fail "stats text: own $(cat "${work}/a.txt")"
grep -E "^    shared +97.7 KiB \(100000\), also referenced by other jobs" "${work}/a.txt" >/dev/null || fail "stats text: shared $(cat "${work}/a.txt")"
grep -E "^  chunks +2 \(1 shared\)$" "${work}/a.txt" >/dev/null || fail "stats text: chunks $(cat "${work}/a.txt")"
grep -E "^  dedup ratio +2.00x$" "${work}/a.txt" >/dev/null || fail "stats text: ratio $(cat "${work}/a.txt")"
"${ckpt}" stats --help | grep -q "shared with" || fail "stats --help does not explain shared bytes"

# gc: rank 0 of a 2-rank checkpoint (pending, the default 30-minute lease),
# and t/b's step 1 deleted: z is garbage, held for saves in flight.
"${ckpt}" put t/p 5 "${work}/p.bin" --world-size 2 --rank 0 >/dev/null
"${ckpt}" rm t/b 1 >/dev/null
now=$(date +%s)
"${ckpt}" gc --json >"${work}/gc.json"
"${py}" - "${work}/gc.json" "${now}" <<'PY'
import calendar, json, sys, time
r = json.load(open(sys.argv[1]))
now = int(sys.argv[2])
assert r["hold_seconds"] == 1800, r
assert r["chunks_deleted"] == 0 and r["chunks_held"] == 1, r
assert r["bytes_held"] == 70000, r
assert r["held_group_count"] == 2, r
by_reason = {g["reason"]: g for g in r["held"]}
def until(g):
    return calendar.timegm(time.strptime(g["until"], "%Y-%m-%dT%H:%M:%SZ"))
flight = by_reason["save_in_flight"]
assert (flight["tenant"], flight["chunk_count"], flight["bytes"]) == \
    ("t", 1, 70000), flight
assert flight["job"] is None and flight["step"] is None, flight
assert abs(until(flight) - (now + 1800)) < 120, (flight, now)
pending = by_reason["pending_checkpoint"]
assert (pending["tenant"], pending["job"], pending["step"],
        pending["chunk_count"], pending["bytes"]) == ("t", "t/p", 5, 1,
                                                      30000), pending
assert abs(until(pending) - (now + 1800)) < 120, (pending, now)
PY
"${ckpt}" gc --dry-run >"${work}/gc.txt"
grep -E "^hold window for saves in flight: 1800 s \(the server's\)$" "${work}/gc.txt" >/dev/null || fail "gc text: hold $(cat "${work}/gc.txt")"
grep -E "^pending checkpoint +t +t/p@5 +1 +29.3 KiB +20[0-9-]+T[0-9:]+Z$" "${work}/gc.txt" >/dev/null || fail "gc text: pending row $(cat "${work}/gc.txt")"
grep -E "^save in flight +t +- +1 +68.4 KiB +20[0-9-]+T[0-9:]+Z$" "${work}/gc.txt" >/dev/null || fail "gc text: in-flight row $(cat "${work}/gc.txt")"
grep -q -- "--hold-seconds N shortens it" "${work}/gc.txt" || fail "gc text: no hint"

# Hostile hold values: refused, nothing deleted.
for bad in -1 1801 9223372036854775807 -9223372036854775808; do
  if "${ckpt}" gc --hold-seconds="${bad}" >"${work}/out" 2>"${work}/err"; then
    fail "gc --hold-seconds ${bad} was accepted"
  fi
  grep -q "hold_seconds must be from 0 to 1800 (the server's --chunk-hold-seconds), got ${bad}" "${work}/err" \
    || fail "gc --hold-seconds ${bad}: $(cat "${work}/err")"
done
for bad in abc 1.5 99999999999999999999 " 5" ""; do
  if "${ckpt}" gc --hold-seconds="${bad}" >"${work}/out" 2>"${work}/err"; then
    fail "gc --hold-seconds '${bad}' was accepted"
  fi
  if [ -n "${bad}" ]; then
    grep -q -- "--hold-seconds: '${bad}' is not a whole number of seconds" "${work}/err"
  else
    grep -q -- "--hold-seconds: 1 required TEXT missing" "${work}/err"
  fi || fail "gc --hold-seconds '${bad}': $(cat "${work}/err")"
done
"${ckpt}" stats --json >"${work}/after_refusals.json"
[ "$(json_field "${work}/after_refusals.json" 'r["chunk_count"]')" = 5 ] || fail "a refused gc deleted chunks"

# --hold-seconds 0 collects what the default held; the pending checkpoint's
# chunk stays (referenced), and what is kept restores.
"${ckpt}" gc --hold-seconds 0 --dry-run --json >"${work}/dry0.json"
[ "$(json_field "${work}/dry0.json" '(r["hold_seconds"], r["chunks_deleted"], r["bytes_deleted"], r["chunks_held"])')" = "(0, 1, 70000, 0)" ] \
  || fail "gc --hold-seconds 0 --dry-run: $(cat "${work}/dry0.json")"
"${ckpt}" gc --hold-seconds 0 >"${work}/gc0.txt"
grep -q "^deleted 1 chunk(s) (68.4 KiB)$" "${work}/gc0.txt" || fail "gc --hold-seconds 0: $(cat "${work}/gc0.txt")"
grep -q "^hold window for saves in flight: 0 s (--hold-seconds)$" "${work}/gc0.txt" || fail "gc --hold-seconds 0 text: $(cat "${work}/gc0.txt")"
"${ckpt}" stats --json >"${work}/after.json"
[ "$(json_field "${work}/after.json" 'r["chunk_count"]')" = 4 ] || fail "expected 4 chunks after gc"
"${ckpt}" stats t/a --json >"${work}/a2.json"
[ "$(json_field "${work}/a2.json" '(r["own_bytes"], r["shared_bytes"])')" = "(150000, 0)" ] \
  || fail "t/a after t/b's deletion: $(cat "${work}/a2.json")"
"${ckpt}" get t/a 2 "${work}/out_a" >/dev/null
cmp "${work}/x.bin" "${work}/out_a/x.bin" || fail "t/a@2 x differs after gc"
cmp "${work}/y.bin" "${work}/out_a/y.bin" || fail "t/a@2 y differs after gc"
# The pending checkpoint can still complete.
"${ckpt}" put t/p 5 "${work}/z.bin" --world-size 2 --rank 1 >/dev/null
"${ckpt}" ls t/p --json | "${py}" -c 'import json,sys; c=json.load(sys.stdin); assert [x["step"] for x in c] == [5], c'

# After a restart, a tenant with a checkpoint begun before it is skipped:
# its garbage is kept, even with --hold-seconds 0, until that lease ends.
"${ckpt}" put t/q 1 "${work}/p.bin" --world-size 2 --rank 0 >/dev/null
head -c 40000 /dev/urandom >"${work}/w.bin"
"${ckpt}" put t/gone 1 "${work}/w.bin" >/dev/null
"${ckpt}" rm t/gone 1 >/dev/null
restart_server
now=$(date +%s)
"${ckpt}" gc --hold-seconds 0 --json >"${work}/skipped.json"
"${py}" - "${work}/skipped.json" "${now}" <<'PY'
import calendar, json, sys, time
r = json.load(open(sys.argv[1]))
now = int(sys.argv[2])
assert [s["tenant"] for s in r["skipped_tenants"]] == ["t"], r
assert "t/q@1" in r["skipped_tenants"][0]["reason"], r
assert r["chunks_deleted"] == 0 and r["chunks_held"] == 1, r
[group] = r["held"]
assert (group["reason"], group["tenant"], group["job"], group["step"],
        group["chunk_count"], group["bytes"]) == \
    ("tenant_skipped", "t", "t/q", 1, 1, 40000), group
until = calendar.timegm(time.strptime(group["until"], "%Y-%m-%dT%H:%M:%SZ"))
assert abs(until - (now + 1800)) < 120, (group, now)
PY

"${ckpt}" gc --help >"${work}/help.txt"
grep -q -- "--hold-seconds" "${work}/help.txt" || fail "gc --help lacks --hold-seconds"
grep -q "fails its commit" "${work}/help.txt" || fail "gc --help does not state the risk"
echo "cli_stats_gc_test: OK"
