#!/usr/bin/env bash
# The operator's verbs and output of the real `ckpt` CLI against a real
# ckpt-server: --json errors (one line of JSON on stderr, a non-zero exit),
# an unknown verb, --version of both binaries; tag and untag (the TAGS
# column, ls --tag, tags in --json, tags_changed events, refusals); rm of
# a pinned checkpoint only with --force (its event records it), rm latest;
# abort (and rm of a pending checkpoint pointing to it), rm-job (--yes,
# --force, deltas before bases), the ls hint about --all;
# verify --read-data-subset as n/t, x% and a size, and its refusals; the
# bash completion (run in bash: verbs as --help lists them, options, values)
# and the man page (every verb, rendered by groff without warnings).
# Usage: cli_verbs_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"

# expect_json_error CODE FRAGMENT ARGS...: `ckpt ARGS` exits non-zero with
# nothing on stdout and exactly one line of JSON on stderr, {"code": CODE,
# "message": ...FRAGMENT...}.
expect_json_error() {
  local code=$1 fragment=$2
  shift 2
  local rc=0
  "${ckpt}" "$@" >"${work}/out" 2>"${work}/err" || rc=$?
  [ "${rc}" -ne 0 ] || fail "ckpt $* exited 0"
  [ ! -s "${work}/out" ] || fail "ckpt $* printed on stdout: $(cat "${work}/out")"
  "${py}" - "${work}/err" "${code}" "${fragment}" <<'PY' || fail "ckpt $*: $(cat "${work}/err")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
error = json.loads(lines[0])
assert error["code"] == sys.argv[2], error
assert sys.argv[3] in error["message"], error
assert set(error) <= {"code", "message", "hint"}, error
PY
}

job=cli/verbs
head -c 100 /dev/urandom >"${work}/w.bin"
"${ckpt}" put "${job}" 1 "${work}/w.bin" >/dev/null

# --- JSON errors, before or after the verb, from the server and the CLI.
expect_json_error NOT_FOUND "has no checkpoint 99" --json show "${job}" 99
expect_json_error NOT_FOUND "" show cli/absent 1 --json
expect_json_error INVALID_ARGUMENT "STEP must be a non-negative integer" rm "${job}" -5 --json
expect_json_error INVALID_ARGUMENT "" --json ls --no-such-flag
expect_json_error UNAVAILABLE "" --json --server 127.0.0.1:1 ls
# Without --json: the people's form, also non-zero.
rc=0; "${ckpt}" show "${job}" 99 2>"${work}/err" >/dev/null || rc=$?
[ "${rc}" -ne 0 ] || fail "show of an absent step exited 0"
grep -q "^ckpt: NOT_FOUND: " "${work}/err" || fail "plain error: $(cat "${work}/err")"

# --- An unknown verb names itself and lists the verbs.
rc=0; "${ckpt}" frobnicate "${job}" 2>"${work}/err" >/dev/null || rc=$?
[ "${rc}" -ne 0 ] || fail "an unknown verb exited 0"
grep -q "unknown command 'frobnicate'" "${work}/err" || fail "unknown verb: $(cat "${work}/err")"
for verb in put get ls rm pin prune gc verify events; do
  grep -q "\b${verb}\b" "${work}/err" || fail "the verbs list lacks ${verb}: $(cat "${work}/err")"
done
# Global options and their values before it are skipped.
rc=0; "${ckpt}" --server "${CKPT_SERVER}" --json lss 2>"${work}/err" >/dev/null || rc=$?
[ "${rc}" -ne 0 ] || fail "an unknown verb after options exited 0"
grep -q '"unknown command '"'"'lss'"'"'; the commands are: ' "${work}/err" \
  || fail "unknown verb in JSON: $(cat "${work}/err")"

# A missing verb lists the verbs (CLI11 alone says "A subcommand is
# required"); an unknown or missing policy sub-verb lists get and set.
rc=0; "${ckpt}" 2>"${work}/err" >/dev/null || rc=$?
[ "${rc}" -eq 106 ] || fail "no verb: exit ${rc}"
grep -q "^ckpt: INVALID_ARGUMENT: a command is required; the commands are: put, get, ls" \
  "${work}/err" || fail "no verb: $(cat "${work}/err")"
rc=0; "${ckpt}" policy bogus "${job}" 2>"${work}/err" >/dev/null || rc=$?
[ "${rc}" -eq 1 ] || fail "policy bogus: exit ${rc}"
grep -q "unknown command 'policy bogus'; the commands are: policy get, policy set" \
  "${work}/err" || fail "policy bogus: $(cat "${work}/err")"
rc=0; "${ckpt}" --json policy 2>"${work}/err" >/dev/null || rc=$?
[ "${rc}" -eq 106 ] || fail "policy without a sub-verb: exit ${rc}"
grep -q '"message":"a command is required; the commands are: get, set' \
  "${work}/err" || fail "policy without a sub-verb: $(cat "${work}/err")"
# A command line that does not parse, without --json, is reported as every
# other error is, with CLI11's exit code and a hint naming the verb's help.
rc=0; "${ckpt}" rm --bogus "${job}" 1 2>"${work}/err" >/dev/null || rc=$?
[ "${rc}" -eq 109 ] || fail "rm --bogus: exit ${rc}"
[ "$(sed -n 1p "${work}/err")" = "ckpt: INVALID_ARGUMENT: The following argument was not expected: --bogus" ] \
  || fail "rm --bogus: $(cat "${work}/err")"
[ "$(sed -n 2p "${work}/err")" = "ckpt: run 'ckpt rm --help'" ] || fail "rm --bogus hint: $(cat "${work}/err")"

# --- --version of both binaries.
version=$(sed -n 's/^project(ckpt VERSION \([0-9.]*\).*/\1/p' \
  "$(dirname "$0")/../../CMakeLists.txt")
[ -n "${version}" ] || fail "no project version found"
[ "$("${ckpt}" --version)" = "ckpt ${version}" ] || fail "ckpt --version: $("${ckpt}" --version)"
[ "$("${server_bin}" --version)" = "ckpt-server ${version}" ] \
  || fail "ckpt-server --version: $("${server_bin}" --version)"


# --- Tags: tag, untag, the TAGS column, ls --tag, --json, the event.
"${ckpt}" put "${job}" 2 "${work}/w.bin" --tag run=a >/dev/null
"${ckpt}" put "${job}" 3 "${work}/w.bin" >/dev/null
out=$("${ckpt}" tag "${job}" 1 release best=yes)
[ "${out}" = "${job} step 1 tags best=yes release" ] || fail "tag output: ${out}"
"${ckpt}" tag "${job}" latest release --json | "${py}" -c '
import json, sys
value = json.load(sys.stdin)
assert value == {"job": "cli/verbs", "step": 3, "tags": {"release": ""}}, value'
"${ckpt}" ls "${job}" >"${work}/ls.txt"
head -1 "${work}/ls.txt" | grep -q "PINNED *TAGS *METRICS" || fail "no TAGS column: $(head -1 "${work}/ls.txt")"
grep -q "^2 .*run=a" "${work}/ls.txt" || fail "tags of step 2 not shown: $(cat "${work}/ls.txt")"
ls_steps() { "${ckpt}" ls "${job}" --json "$@" | "${py}" -c '
import json, sys
print(" ".join(str(c["step"]) for c in json.load(sys.stdin)))'; }
[ "$(ls_steps --tag release)" = "1 3" ] || fail "ls --tag release: $(ls_steps --tag release)"
[ "$(ls_steps --tag release --tag best)" = "1" ] || fail "ls --tag release --tag best"
[ "$(ls_steps --tag best=yes)" = "1" ] || fail "ls --tag best=yes"
[ "$(ls_steps --tag best=no)" = "" ] || fail "ls --tag best=no"
[ "$(ls_steps --tag run)" = "2" ] || fail "ls --tag run"
"${ckpt}" ls "${job}" --json | "${py}" -c '
import json, sys
tags = {c["step"]: c["tags"] for c in json.load(sys.stdin)}
assert tags == {1: {"best": "yes", "release": ""}, 2: {"run": "a"},
                3: {"release": ""}}, tags'
"${ckpt}" untag "${job}" 1 best absent >/dev/null
[ "$(ls_steps --tag best)" = "" ] || fail "untag left best"
"${ckpt}" events "${job}" --json | "${py}" -c '
import json, sys
changes = [(e["step"], e["detail"]) for e in json.load(sys.stdin)
           if e["kind"] == "tags_changed"]
assert changes == [(1, "+best=yes +release"), (3, "+release"),
                   (1, "-best")], changes'
# Refusals, before anything is sent or by the server; nothing changes.
expect_json_error INVALID_ARGUMENT "tag name must be 1-256 bytes" tag "${job}" 1 "=x" --json
expect_json_error INVALID_ARGUMENT "control" tag "${job}" 1 "$(printf 'a\tb')" --json
expect_json_error INVALID_ARGUMENT "tag name" untag "${job}" 1 "k=v" --json
expect_json_error INVALID_ARGUMENT "tag name" ls "${job}" --tag "" --json
expect_json_error NOT_FOUND "no committed checkpoint" tag "${job}" 99 x --json
expect_json_error NOT_FOUND "" tag cli/absent latest x --json
"${ckpt}" events "${job}" --json | "${py}" -c '
import json, sys
assert sum(e["kind"] == "tags_changed" for e in json.load(sys.stdin)) == 3'

# --- What writers named reaches a terminal escaped: a metric name and a
# tensor name (a file's base name) holding escape sequences print as \x1b
# in ls and show, never as the raw byte; a tag value holding one is
# refused by the server.
esc=$(printf '\033')
ejob=cli/escapes
cp "${work}/w.bin" "${work}/t${esc}[2J.bin"
"${ckpt}" put "${ejob}" 1 "${work}/t${esc}[2J.bin" --metric "m${esc}]0;x=0.5" >/dev/null 2>&1 \
  || fail "put with escapes in names failed"
for view in "ls ${ejob}" "show ${ejob} 1"; do
  shown=$("${ckpt}" ${view})
  [[ "${shown}" != *"${esc}"* ]] || fail "ckpt ${view} printed a raw ESC"
  [[ "${shown}" == *'\x1b'* ]] || fail "ckpt ${view} lost the escaped name: ${shown}"
done
expect_json_error INVALID_ARGUMENT "without control characters" \
  tag "${ejob}" 1 "note=a${esc}[2Jb" --json

# --- pin and unpin take latest, as rm and tag do.
"${ckpt}" pin "${job}" latest --json | "${py}" -c '
import json, sys
assert json.load(sys.stdin) == {"job": "cli/verbs", "step": 3, "pinned": True}'
"${ckpt}" unpin "${job}" latest --json | "${py}" -c '
import json, sys
assert json.load(sys.stdin) == {"job": "cli/verbs", "step": 3, "pinned": False}'
expect_json_error INVALID_ARGUMENT "" pin "${job}" newest --json

# --- rm of a pinned checkpoint needs --force, recorded; rm latest.
"${ckpt}" pin "${job}" 2 >/dev/null
expect_json_error FAILED_PRECONDITION "is pinned" rm "${job}" 2 --json
[ "$(ls_steps)" = "1 2 3" ] || fail "a refused rm deleted: $(ls_steps)"
"${ckpt}" rm "${job}" 2 --force >/dev/null
"${ckpt}" events "${job}" --json | "${py}" -c '
import json, sys
deleted = [e for e in json.load(sys.stdin) if e["kind"] == "deleted"]
assert [(e["step"], e["detail"]) for e in deleted] == [
    (2, "was committed and pinned; the pin was overridden (force)")], deleted'
"${ckpt}" rm "${job}" latest --json | "${py}" -c '
import json, sys
assert json.load(sys.stdin) == {"job": "cli/verbs", "step": 3, "deleted": True}'
[ "$(ls_steps)" = "1" ] || fail "after rm latest: $(ls_steps)"
expect_json_error NOT_FOUND "unknown job" rm cli/absent latest --json

# --- abort; rm of a pending checkpoint points to it; rm-job; the ls hint.
pjob=cli/pending
"${ckpt}" put "${pjob}" 5 "${work}/w.bin" --world-size 2 >/dev/null  # pending
"${ckpt}" ls "${pjob}" >"${work}/ls.out" 2>"${work}/ls.err"
grep -q "has no committed checkpoint yet, but 1 pending and 0 aborted; \`ckpt ls ${pjob} --all\` lists them" \
  "${work}/ls.err" || fail "no --all hint: $(cat "${work}/ls.err")"
"${ckpt}" ls "${pjob}" --json 2>"${work}/ls.err" | "${py}" -c '
import json, sys
assert json.load(sys.stdin) == []'
expect_json_error FAILED_PRECONDITION "ckpt abort ${pjob} 5" rm "${pjob}" 5 --json
"${ckpt}" abort "${pjob}" 5 --reason "operator gave up" --json | "${py}" -c '
import json, sys
assert json.load(sys.stdin) == {"job": "cli/pending", "step": 5, "aborted": True}'
"${ckpt}" ls "${pjob}" --all --json | "${py}" -c '
import json, sys
[c] = json.load(sys.stdin)
assert c["state"] == "aborted" and c["abort_reason"] == "operator gave up", c'
"${ckpt}" ls "${pjob}" 2>"${work}/ls.err" >/dev/null
grep -q "0 pending and 1 aborted" "${work}/ls.err" || fail "hint after abort: $(cat "${work}/ls.err")"
expect_json_error FAILED_PRECONDITION "" abort "${job}" 1 --json  # committed
# A job with nothing uncommitted gets no hint.
"${ckpt}" ls "${job}" --tag nothing-has-this 2>"${work}/ls.err" >/dev/null
[ ! -s "${work}/ls.err" ] || fail "a hint for a filtered listing: $(cat "${work}/ls.err")"

rjob=cli/rmjob
"${ckpt}" put "${rjob}" 1 "${work}/w.bin" --row-bytes 10 >/dev/null
"${ckpt}" put "${rjob}" 2 "${work}/w.bin" --row-bytes 10 --delta-against 1 >/dev/null
"${ckpt}" put "${rjob}" 3 "${work}/w.bin" >/dev/null
"${ckpt}" put "${rjob}" 4 "${work}/w.bin" --world-size 2 >/dev/null  # pending
"${ckpt}" pin "${rjob}" 3 >/dev/null
expect_json_error INVALID_ARGUMENT "pass --yes" rm-job "${rjob}" --json
expect_json_error FAILED_PRECONDITION "pinned checkpoints (steps 3)" rm-job "${rjob}" --yes --json
"${ckpt}" ls "${rjob}" --all --json | "${py}" -c '
import json, sys
assert [(c["step"], c["state"]) for c in json.load(sys.stdin)] == [
    (1, "committed"), (2, "committed"), (3, "committed"), (4, "pending")]'
"${ckpt}" rm-job "${rjob}" --yes --force --json | "${py}" -c '
import json, sys
assert json.load(sys.stdin) == {"job": "cli/rmjob", "aborted_steps": [4],
                                "deleted_steps": [1, 2, 3, 4],
                                "remaining_steps": []}'
"${ckpt}" ls "${rjob}" --all --json | "${py}" -c '
import json, sys
assert json.load(sys.stdin) == []'

# --- verify --read-data-subset: n/t, x% and a size; nonsense refused.
subset_of() { "${ckpt}" verify "${job}" --read-data-subset "$1" --json | "${py}" -c '
import json, sys
print(json.load(sys.stdin)["read_data_subset"])'; }
[ "$(subset_of 2/3)" = "2/3" ] || fail "subset 2/3: $(subset_of 2/3)"
[ "$(subset_of 100%)" = "1/1" ] || fail "subset 100%"
part=$(subset_of 25%)
[[ "${part}" =~ ^[1-4]/4$ ]] || fail "subset 25%: ${part}"
part=$(subset_of 30%)
[[ "${part}" =~ ^[1-3]/3$ ]] || fail "subset 30%: ${part}"
[ "$(subset_of 1G)" = "1/1" ] || fail "a size above what is stored reads everything"
# A size is measured against the job's own stored bytes, not its tenant's:
# with a bigger job beside it, the job's size still reads it whole.
head -c 2000000 /dev/urandom >"${work}/big.bin"
"${ckpt}" put cli/big 1 "${work}/big.bin" >/dev/null 2>&1
job_bytes=$("${ckpt}" stats "${job}" --json | "${py}" -c '
import json, sys
stats = json.load(sys.stdin)
assert stats["stored_bytes_of"] == "job", stats
print(stats["stored_bytes"])')
[ "$(subset_of "${job_bytes}")" = "1/1" ] || fail "subset of the job's own size: $(subset_of "${job_bytes}")"
part=$(subset_of 1)  # one byte: a part per stored byte
[[ "${part}" =~ ^[0-9]+/[0-9]+$ ]] && [ "${part#*/}" -gt 1 ] || fail "subset 1 byte: ${part}"
for bad in 0% 150% -5% abc% nan% 0 5X 0/3 4/3 1.5G; do
  expect_json_error INVALID_ARGUMENT "--read-data-subset" verify "${job}" --read-data-subset "${bad}" --json
done

# --- bash completion and the man page, from the CLI definition.
verbs_of_help() { "${ckpt}" "$@" --help | awk '/^Subcommands:/ {on = 1; next} on && NF {print $1}'; }
"${ckpt}" completion bash >"${work}/ckpt.bash"
complete_words() {  # WORDS...: what completing the last word offers
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ckpt; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "${work}/ckpt.bash" "$@"
}
offered=$(complete_words ckpt "" | sort | tr '\n' ' ')
expected=$(verbs_of_help | sort | tr '\n' ' ')
[ "${offered}" = "${expected}" ] || fail "verbs completed: ${offered} vs --help: ${expected}"
complete_words ckpt --server h:1 r | grep -x rm-job >/dev/null || fail "rm-job not completed after --server VALUE"
complete_words ckpt rm JOB 1 --f | grep -x -- --force >/dev/null || fail "rm --force not completed"
complete_words ckpt ls --t | grep -x -- --tag >/dev/null || fail "ls --tag not completed"
[ "$(complete_words ckpt policy "" | sort | tr '\n' ' ')" = "get set " ] || fail "policy sub-verbs"
complete_words ckpt policy set J --max | grep -x -- --max-to-keep >/dev/null || fail "policy set flags"
complete_words ckpt export J 1 D --format t | grep -x torch >/dev/null || fail "--format values"
complete_words ckpt completion "" | grep -x bash >/dev/null || fail "completion shells"
rc=0; "${ckpt}" completion zsh >/dev/null 2>&1 || rc=$?
[ "${rc}" -ne 0 ] || fail "completion zsh accepted"

"${ckpt}" man >"${work}/ckpt.1"
head -2 "${work}/ckpt.1" | grep -q "^.TH CKPT 1 \"\" \"ckpt ${version}\"" || fail "man header: $(head -2 "${work}/ckpt.1")"
for verb in $(verbs_of_help); do
  if [ "${verb}" = policy ]; then
    for sub in $(verbs_of_help policy); do
      grep -q "^\.SS \"ckpt policy ${sub}" "${work}/ckpt.1" || fail "man lacks policy ${sub}"
    done
  else
    escaped=$(printf '%s' "${verb}" | sed 's/-/\\\\-/g')  # roff's \-
    grep -q "^\.SS \"ckpt ${escaped}\( \|\"\)" "${work}/ckpt.1" || fail "man lacks ${verb}"
  fi
done
grep -q '^\.B \\-\\-force$' "${work}/ckpt.1" || fail "man lacks --force"
grep -q "^\.SH EXIT STATUS" "${work}/ckpt.1" || fail "man lacks EXIT STATUS"
if command -v groff >/dev/null; then
  groff -man -Tascii -P-cbou -ww "${work}/ckpt.1" >"${work}/ckpt.txt" 2>"${work}/groff.err"
  [ ! -s "${work}/groff.err" ] || fail "groff warns: $(cat "${work}/groff.err")"
  grep -q "^ *ckpt rm-job JOB$" "${work}/ckpt.txt" || fail "rendered man page lacks rm-job"
fi

echo "cli_verbs_test: ok"
