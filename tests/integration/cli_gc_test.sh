#!/usr/bin/env bash
# Drives `ckpt gc` of the real CLI against a real ckpt-server with no chunk
# hold (so just-uploaded garbage is collectable at once): a dry run
# predicts and deletes nothing, the real run deletes exactly the deleted
# checkpoint's chunks, the kept checkpoint restores byte-identical, and
# --json is checked by Python's json module.
# Usage: cli_gc_test.sh BUILD_DIR
set -euo pipefail
build=$1
server_extra=(--chunk-hold-seconds 0 --gc-interval 0)
source "$(dirname "$0")/cli_lib.sh"

chunks() {
  "${ckpt}" stats --json | "${py}" -c 'import json,sys; print(json.load(sys.stdin)["chunk_count"])'
}

head -c 300000 /dev/urandom >"${work}/a.bin"
head -c 200000 /dev/urandom >"${work}/b.bin"
"${ckpt}" put cli/gc 1 "${work}/a.bin" >/dev/null
"${ckpt}" put cli/gc 2 "${work}/b.bin" >/dev/null
"${ckpt}" rm cli/gc 1 >/dev/null
[ "$(chunks)" = "2" ] || fail "expected 2 stored chunks before gc, got $(chunks)"

"${ckpt}" gc --dry-run --json >"${work}/dry.json"
[ "$(chunks)" = "2" ] || fail "gc --dry-run deleted chunks"
"${ckpt}" gc --dry-run | grep "would delete 1 chunk" >/dev/null || fail "dry-run table"
"${ckpt}" gc --json >"${work}/real.json"
"${py}" - "${work}/dry.json" "${work}/real.json" <<'PY'
import json, sys
dry = json.load(open(sys.argv[1]))
real = json.load(open(sys.argv[2]))
assert dry["dry_run"] is True and real["dry_run"] is False, (dry, real)
for r in (dry, real):
    assert r["chunks_scanned"] == 2, r
    assert r["chunks_referenced"] == 1, r
    assert r["chunks_deleted"] == 1, r
    assert r["bytes_deleted"] == 300000, r
    assert r["damaged"] == [] and r["skipped_tenants"] == [], r
assert real["disk_bytes_before"] >= real["disk_bytes_after"], real
PY
[ "$(chunks)" = "1" ] || fail "expected 1 stored chunk after gc, got $(chunks)"
"${ckpt}" gc | grep "deleted 0 chunk" >/dev/null || fail "second gc should find nothing"

"${ckpt}" get cli/gc 2 "${work}/out" >/dev/null
cmp "${work}/b.bin" "${work}/out/$(ls "${work}/out")" || fail "step 2 differs after gc"
"${ckpt}" gc --help | grep -e "--dry-run" >/dev/null || fail "gc --help lacks --dry-run"
echo "cli_gc_test: OK"
