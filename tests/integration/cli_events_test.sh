#!/usr/bin/env bash
# Drives `ckpt events` against a real ckpt-server: saves, a pin, a dry-run
# prune (no events) and a real one (pruned, with reasons), a restore through
# `ckpt get` (restored, with the rank) but not `ckpt show`, `ckpt rm` and a
# policy change must show in order in `ckpt events --json`; the history
# survives a server restart and its numbering continues; --limit, the table
# and error exits; a planted copy shows its source (`show`) and its
# `copied` and `pinned` events.
# Usage: cli_events_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"

job=cli/events
head -c 100 /dev/urandom >"${work}/w.bin"
for step in 1 2 3 4; do
  "${ckpt}" put "${job}" "${step}" "${work}/w.bin" \
    --time "2026-01-01T0${step}:00:00Z" >/dev/null
done
"${ckpt}" pin "${job}" 2 >/dev/null
"${ckpt}" prune "${job}" --keep-last 1 --dry-run >/dev/null
"${ckpt}" prune "${job}" --keep-last 1 >/dev/null  # deletes 1 and 3
"${ckpt}" show "${job}" latest >/dev/null           # a read, not a restore
"${ckpt}" get "${job}" latest "${work}/restored" --rank 0 >/dev/null
cmp "${work}/w.bin" "${work}/restored/w.bin" || fail "restored bytes differ"
"${ckpt}" rm "${job}" 2 --force >/dev/null  # pinned
"${ckpt}" policy set "${job}" --max-to-keep 5 >/dev/null

# The expected history, oldest first: kind@step, and a detail fragment.
expected='[
  ["committed@1", "1 rank"], ["committed@2", ""], ["committed@3", ""],
  ["committed@4", ""], ["pinned@2", ""],
  ["pruned@1", "prune with a one-off policy (max_to_keep=1): not among the 1 most recent"],
  ["pruned@3", "not among the 1 most recent"],
  ["restored@4", "rank 0"], ["deleted@2", "was committed and pinned; the pin was overridden"],
  ["policy_set", "max_to_keep=5"]]'
check_history() {  # FILE [EXTRA_JSON]: the history is `expected` (+ extra)
  "${py}" - "$1" "${expected}" "${2:-[]}" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))
want = json.loads(sys.argv[2]) + json.loads(sys.argv[3])
got = ["%s@%s" % (e["kind"], e["step"]) if e["step"] is not None else e["kind"]
       for e in events]
assert got == [w[0] for w in want], got
for e, (_, fragment) in zip(events, want):
    assert fragment in e["detail"], (e, fragment)
    assert sorted(e) == ["detail", "kind", "principal", "sequence", "step",
                         "time"], e
    # A server without tokens serves local callers as "anonymous".
    assert e["principal"] == "anonymous", e
    assert e["time"].endswith("Z"), e
assert [e["sequence"] for e in events] == list(range(1, len(events) + 1)), events
PY
}

"${ckpt}" events "${job}" --json >"${work}/events.json"
check_history "${work}/events.json" || fail "history before restart"

# The history is on disk: a restarted server shows the same, and numbering
# goes on after it.
restart_server
"${ckpt}" events "${job}" --json >"${work}/after.json"
cmp "${work}/events.json" "${work}/after.json" \
  || fail "history changed across a restart"
"${ckpt}" put "${job}" 5 "${work}/w.bin" --time 2026-01-01T05:00:00Z >/dev/null
"${ckpt}" events "${job}" --json >"${work}/more.json"
check_history "${work}/more.json" '[["committed@5", "1 rank"]]' \
  || fail "history after restart"

"${ckpt}" events "${job}" --limit 2 --json | "${py}" -c '
import json, sys
events = json.load(sys.stdin)
assert [(e["sequence"], e["kind"]) for e in events] == [
    (10, "policy_set"), (11, "committed")], events
assert events[0]["step"] is None, events'

"${ckpt}" events "${job}" >"${work}/table.txt"
head -1 "${work}/table.txt" | grep "TIME *STEP *KIND *BY *DETAIL" >/dev/null \
  || fail "events table header: $(head -1 "${work}/table.txt")"
grep -q "pruned *anonymous *.*not among the 1 most recent" "${work}/table.txt" \
  || fail "events table lacks the prune reason"
[ "$(wc -l <"${work}/table.txt")" -eq 12 ] || fail "events table rows"

# Errors exit non-zero with the status code and say what was wrong.
if "${ckpt}" events cli/none 2>"${work}/err"; then fail "unknown job"; fi
grep -q "NOT_FOUND" "${work}/err" || fail "unknown job: $(cat "${work}/err")"
if "${ckpt}" events "${job}" --limit -1 2>"${work}/err"; then
  fail "negative limit accepted"
fi
grep -q -- "--limit" "${work}/err" || fail "negative limit: $(cat "${work}/err")"
"${ckpt}" events --help | grep -e "--limit" >/dev/null || fail "events --help"
"${ckpt}" events --help | grep -e "copied" >/dev/null \
  || fail "events --help does not list copied"

# A copy between servers (planted as `ckpt copy` begins one): `show` says
# where it came from, `events` has the copy and the pin with its commit.
"${py}" "$(dirname "$0")/cli_plant.py" "${CKPT_SERVER}" cli/copied 7 copy \
  "a.example:7000" cli/source 70
"${ckpt}" show cli/copied 7 >"${work}/show.txt"
grep -q "^copied from a.example:7000 cli/source@70$" "${work}/show.txt" \
  || fail "show lacks the source: $(cat "${work}/show.txt")"
grep -q "pinned" "${work}/show.txt" || fail "show lacks the pin"
"${ckpt}" show cli/copied 7 --json | "${py}" -c '
import json, sys
record = json.load(sys.stdin)
assert record["copied_from"] == {"server": "a.example:7000",
                                 "job": "cli/source", "step": 70}, record
assert record["pinned"] is True, record'
"${ckpt}" show "${job}" 5 --json | "${py}" -c '
import json, sys
assert json.load(sys.stdin)["copied_from"] is None'
"${ckpt}" events cli/copied --json | "${py}" -c '
import json, sys
events = json.load(sys.stdin)
assert [(e["kind"], e["detail"]) for e in events][1:] == [
    ("copied", "from a.example:7000 cli/source@70"),
    ("pinned", "at commit")], events'

echo "cli_events_test: OK"
