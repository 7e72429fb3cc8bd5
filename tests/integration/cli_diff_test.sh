#!/usr/bin/env bash
# Drives `ckpt diff` against a real ckpt-server: a row-delta save against
# step 1 (rows replaced per tensor, a zero-row delta the same, a tensor
# added and one removed), a full save with one of three chunks changed,
# metric, tag and writer-time differences, the bytes the newer step added
# over the older (asserted against the sizes the format gives), --all,
# `latest`, the table, and errors.
# Usage: cli_diff_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"

job=cli/diff
rows=1000
# w: 12 MiB, three 4 MiB chunks; emb: 1000 rows of 64 bytes; gone: 10 rows.
head -c $((12 << 20)) /dev/urandom >"${work}/w.bin"
head -c $((rows * 64)) /dev/urandom >"${work}/emb.bin"
head -c 640 /dev/urandom >"${work}/gone.bin"
"${ckpt}" put "${job}" 1 "${work}/w.bin" "${work}/emb.bin" "${work}/gone.bin" \
  --row-bytes 64 --metric loss=0.5 --metric lr=0.001 --tag git=abc \
  --time 2026-01-01T01:00:00Z >/dev/null

# Step 2, a delta against 1: rows 3, 500 and 999 of emb changed, w not at
# all, gone left out, new added.
"${py}" - "${work}/emb.bin" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    for row in (3, 500, 999):
        f.seek(row * 64)
        f.write(bytes(64))
PY
head -c 128 /dev/urandom >"${work}/new.bin"
"${ckpt}" put "${job}" 2 "${work}/w.bin" "${work}/emb.bin" "${work}/new.bin" \
  --row-bytes 64 --delta-against 1 --metric loss=0.25 --metric acc=0.9 \
  --metric lr=0.001 --tag git=def --time 2026-01-01T02:00:00Z >/dev/null

"${ckpt}" diff "${job}" 1 2 --json >"${work}/d12.json"
"${py}" - "${work}/d12.json" "${rows}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = int(sys.argv[2])
t = {(x["name"], x["rank"]): x for x in d["tensors"]}
# Only what differs, without --all.
assert sorted(t) == [("emb.bin", 0), ("gone.bin", 0), ("new.bin", 0)], sorted(t)
emb = t[("emb.bin", 0)]
assert emb["change"] == "changed", emb
assert emb["rows_changed"] == 3, emb
assert emb["b"]["kind"] == "delta" and emb["b"]["base_step"] == 1, emb
assert emb["b"]["delta_rows"] == 3 and emb["b"]["rows"] == rows, emb
assert emb["a"]["kind"] == "full" and emb["kind_changed"], emb
delta_bytes = 32 + 3 * (64 + 4)  # common/row_delta.h, version 1
# put --row-bytes stores row fingerprints (common/fingerprint_record.h):
# a sparse record of a delta's rows, 32 + 20 a row; dense, 32 + 16 a row.
def sparse(rows): return 32 + 20 * rows
def dense(rows): return 32 + 16 * rows
assert emb["b"]["stored_bytes"] == delta_bytes, emb
assert emb["new_bytes"] == delta_bytes + sparse(3), emb
assert t[("gone.bin", 0)]["change"] == "removed"
assert t[("gone.bin", 0)]["b"] is None
new = t[("new.bin", 0)]
assert new["change"] == "added" and new["a"] is None, new
assert new["new_bytes"] == 128 + dense(2), new
assert new["b"]["global_shape"] == [2, 64], new
assert d["summary"] == {"same": 1, "changed": 1, "added": 1, "removed": 1}, d
# w's delta of no rows is 32 bytes new (and its record of no rows 32), but
# the same tensor.
assert d["bytes_added"] == (delta_bytes + sparse(3) + 32 + sparse(0) + 128 +
                            dense(2)), d["bytes_added"]
assert d["chunks_added"] == 6, d
assert d["metrics"] == {"acc": {"a": None, "b": 0.9},
                        "loss": {"a": 0.5, "b": 0.25}}, d["metrics"]
assert d["tags"] == {"git": {"a": "abc", "b": "def"}}, d["tags"]
assert d["writer_time"] == {"a": "2026-01-01T01:00:00Z",
                            "b": "2026-01-01T02:00:00Z"}, d["writer_time"]
assert d["a"]["step"] == 1 and d["b"]["step"] == 2 and d["job"] == "cli/diff"
PY

# --all lists the same ones too: w, a delta of no rows.
"${ckpt}" diff "${job}" 1 2 --all --json | "${py}" -c '
import json, sys
d = json.load(sys.stdin)
w = [x for x in d["tensors"] if x["name"] == "w.bin"]
assert len(d["tensors"]) == 4, d["tensors"]
assert w[0]["change"] == "same" and w[0]["rows_changed"] == 0, w
assert w[0]["b"]["kind"] == "delta" and not w[0]["kind_changed"], w'

# Step 3, in full: one byte of w's middle chunk, emb as step 2 left it.
"${py}" - "${work}/w.bin" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(6 << 20)
    b = f.read(1)
    f.seek(6 << 20)
    f.write(bytes([b[0] ^ 0xff]))
PY
"${ckpt}" put "${job}" 3 "${work}/w.bin" "${work}/emb.bin" "${work}/gone.bin" \
  --row-bytes 64 --metric loss=0.5 --metric lr=0.001 --tag git=abc \
  --time 2026-01-01T01:00:00Z >/dev/null
"${ckpt}" diff "${job}" 1 latest --json | "${py}" -c '
import json, sys
d = json.load(sys.stdin)
t = {x["name"]: x for x in d["tensors"]}
assert sorted(t) == ["emb.bin", "w.bin"], sorted(t)
w = t["w.bin"]
assert w["change"] == "changed" and w["chunks_differing"] == 1, w
assert w["b"]["chunk_count"] == 3 and w["rows_changed"] is None, w
# And the row fingerprints stored with each (dense: 32 + 16 a row), new
# since one row of each changed.
w_record = 32 + 16 * ((12 << 20) // 64)
assert w["new_bytes"] == (4 << 20) + w_record, w
assert t["emb.bin"]["chunks_differing"] == 1, t["emb.bin"]
assert d["bytes_added"] == ((4 << 20) + w_record + 1000 * 64 +
                            32 + 16 * 1000), d["bytes_added"]
assert d["metrics"] == {} and d["tags"] == {} and d["writer_time"] is None, d
assert d["b"]["step"] == 3, d["b"]'

# The table: a header, one row per difference, then metrics, tags, times,
# the bytes added and the counts.
"${ckpt}" diff "${job}" 1 2 >"${work}/table.txt"
grep -q "^job cli/diff: step 1 (2026-01-01T01:00:00Z) -> step 2 (2026-01-01T02:00:00Z)$" \
  "${work}/table.txt" || fail "diff header: $(head -1 "${work}/table.txt")"
grep -q "^CHANGE *TENSOR *RANK *DTYPE *SHAPE *BOX *KIND *CHUNKS *ROWS *NEW" \
  "${work}/table.txt" || fail "diff table header"
grep -q "^changed *emb.bin *0 *uint8 *\[1000, 64\] .* full -> delta on 1 *1/1 *3/1000 " \
  "${work}/table.txt" || fail "diff emb row: $(cat "${work}/table.txt")"
grep -q "^removed *gone.bin" "${work}/table.txt" || fail "diff gone row"
grep -q "^added *new.bin *0 *uint8 *\[2, 64\]" "${work}/table.txt" \
  || fail "diff new row"
grep -q " w.bin " "${work}/table.txt" && fail "a same tensor listed without --all"
grep -q "^loss *0.5 *0.25$" "${work}/table.txt" || fail "diff metric row"
grep -q "^acc *- *0.9$" "${work}/table.txt" || fail "diff added metric row"
grep -q "^git *abc *def$" "${work}/table.txt" || fail "diff tag row"
grep -q "^writer time: 2026-01-01T01:00:00Z -> 2026-01-01T02:00:00Z$" \
  "${work}/table.txt" || fail "diff writer time"
grep -q "^added by step 2: 584 B in 6 chunks that step 1 does not reference$" \
  "${work}/table.txt" || fail "diff bytes added"
grep -q "^1 changed, 1 added, 1 removed, 1 same$" "${work}/table.txt" \
  || fail "diff counts"
"${ckpt}" diff "${job}" 3 3 | grep -q "^0 changed, 0 added, 0 removed, 3 same$" \
  || fail "a checkpoint against itself"

# Errors exit non-zero with the status and what was wrong.
if "${ckpt}" diff "${job}" 1 9 2>"${work}/err"; then fail "absent step"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "absent step: $(cat "${work}/err")"
if "${ckpt}" diff "${job}" 1 x 2>"${work}/err"; then fail "bad step"; fi
grep -q "INVALID_ARGUMENT" "${work}/err" || fail "bad step: $(cat "${work}/err")"
if "${ckpt}" diff cli/none 1 2 2>"${work}/err"; then fail "unknown job"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "unknown job: $(cat "${work}/err")"
"${ckpt}" diff --help | grep -e "--all" >/dev/null || fail "diff --help"

echo "cli_diff_test: OK"
