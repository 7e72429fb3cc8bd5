#!/usr/bin/env bash
# Tenant isolation through every verb of the real `ckpt` CLI, the half of
# issue 13's probes that tests/integration/isolation_test.cc (10,000+ raw
# RPC probes, fast) does not cover. A real ckpt-server runs with a token
# file: A is admin of alice/, B is admin of bob/ (so no verb is refused for
# its role before the scope is checked), and B also has a writer and a
# reader token for the role cases. A saves real checkpoints (committed,
# pinned, one pending, with a policy); then B runs every verb `ckpt --help`
# lists (the test fails when a verb is added and not probed here), with and
# without --json, against A's real job names and steps, and again against
# names that do not exist, of the same length, in A's tenant and in a
# tenant nobody has. Each pair must give the same exit code and the same
# stdout and stderr, byte for byte once the name is swapped (so the same
# sizes), and every probe of A must be refused with PERMISSION_DENIED.
# Also: B's views that name no job (ls, stats, verify, gc) are identical
# before and after A's data exists and name nothing of A; B uploading A's
# exact bytes into bob/ looks the same as uploading random bytes (no dedup
# across tenants); A's state (listings, events, policies, manifests,
# verify) is unchanged afterwards; no output, error or server log ever
# contains a token, including a careless user's wrong, malformed or
# misplaced one. About 2,000 CLI probes in all (the count is printed), in
# about 60 s (600 and 170 s under ASan with CKPT_ISOLATION_QUICK).
# Usage: cli_isolation_test.sh BUILD_DIR
set -euo pipefail
export LC_ALL=C  # ${#var} counts bytes
build=$1
defer_start_server=1
source "$(dirname "$0")/cli_lib.sh"

new_token() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
token_line() {  # TOKEN PRINCIPAL ROLE SCOPE
  printf '%s %s %s %s\n' "$(printf %s "$1" | sha256sum | cut -d' ' -f1)" \
    "$2" "$3" "$4"
}
tok_a=$(new_token)
tok_b=$(new_token)
tok_bw=$(new_token)
tok_br=$(new_token)
tok_wrong=$(new_token)  # in no file
{
  token_line "${tok_a}" alice admin alice/
  token_line "${tok_b}" bob admin bob/
  token_line "${tok_bw}" bob-trainer writer bob/
  token_line "${tok_br}" bob-viewer reader bob/
} >"${work}/tokens"
printf '%s\n' "${tok_b}" >"${work}/b.token"
printf '%s\n' "${tok_br}" >"${work}/br.token"
server_extra=(--auth-tokens "${work}/tokens")
start_server

# The CLI as WHO (a, b, bw, br), the token by file or by environment.
run_as() {  # WHO ARGS...
  local who=$1
  shift
  case "${who}" in
    a) CKPT_TOKEN="${tok_a}" "${ckpt}" "$@" ;;
    b) "${ckpt}" --token-file "${work}/b.token" "$@" ;;
    bw) CKPT_TOKEN="${tok_bw}" "${ckpt}" "$@" ;;
    br) "${ckpt}" --token-file "${work}/br.token" "$@" ;;
    *) fail "unknown caller ${who}" ;;
  esac
}

# A token must never come back in anything the CLI or server prints.
no_token() {  # WHAT TEXT
  local t
  for t in "${tok_a}" "${tok_b}" "${tok_bw}" "${tok_br}" "${tok_wrong}"; do
    [[ "$2" != *"${t}"* ]] || fail "$1 contains a token: $2"
  done
}

# Runs the CLI as WHO and sets rc, out and err; out notes whether OUTDIR
# (`get`) was created, and is emptied for the next run.
probes=0
run() {  # WHO ARGS...
  rc=0
  run_as "$@" >"${work}/run.out" 2>"${work}/run.err" || rc=$?
  IFS= read -rd '' out <"${work}/run.out" || true
  IFS= read -rd '' err <"${work}/run.err" || true
  if [ -e "${work}/outdir" ]; then
    out+="[OUTDIR created]"
    rm -rf "${work}/outdir"
  fi
  probes=$((probes + 1))
  no_token "ckpt ${*:2}" "${out}${err}"
}

# A saves: alice/train 100..300 (200 pinned, a policy) and 400 pending (one
# rank of two); alice/exp1/run 100..300. Each file is distinct bytes.
mkdir -p "${work}/a" "${work}/in"
for i in 1 2 3 4 5 6 7; do head -c $((1000 * i)) /dev/urandom >"${work}/a/w$i.bin"; done
head -c 1000 /dev/urandom >"${work}/in/probe.bin"

# B has data of its own, so its views are not trivially empty.
run_as b put bob/own 1 "${work}/in/probe.bin" >/dev/null
run_as bw put bob/own 2 "${work}/in/probe.bin" >/dev/null
run_as b export bob/own 1 "${work}/bob_export" >/dev/null

# B's views that name no job: recorded before A saves anything, compared
# after.
declare -A before_a
nojob_views=("ls" "ls --all" "stats" "verify" "verify --read-data"
  "gc --dry-run" "gc")
for who in b bw br; do
  for json in "" --json; do
    for view in "${nojob_views[@]}"; do
      run "${who}" ${json} ${view}
      before_a["${who} ${json} ${view}"]="${rc}|${out}|${err}"
    done
  done
done

run_as a put alice/train 100 "${work}/a/w1.bin" --metric loss=0.9 \
  --time 2026-01-01T01:00:00Z >/dev/null
run_as a put alice/train 200 "${work}/a/w2.bin" --metric loss=0.5 \
  --time 2026-01-01T02:00:00Z >/dev/null
run_as a put alice/train 300 "${work}/a/w3.bin" --metric loss=0.7 \
  --time 2026-01-01T03:00:00Z >/dev/null
run_as a pin alice/train 200 >/dev/null
run_as a policy set alice/train --max-to-keep 5 >/dev/null
run_as a put alice/train 400 "${work}/a/w4.bin" --world-size 2 >/dev/null
for step in 100 200 300; do
  run_as a put alice/exp1/run "${step}" "${work}/a/w$((4 + step / 100)).bin" \
    --row-bytes 100 >/dev/null
done

# A's state as A sees it.
a_state() {
  local job step
  run_as a --json ls
  run_as a --json stats
  for job in alice/train alice/exp1/run; do
    run_as a --json ls --all "${job}"
    run_as a --json events "${job}"
    run_as a --json policy get "${job}"
    run_as a --json stats "${job}"
    run_as a --json verify "${job}" --read-data
    for step in 100 200 300; do run_as a --json show "${job}" "${step}"; done
  done
}
a_state >"${work}/a_before.json"
grep -q '"state": "pending"' "${work}/a_before.json" \
  || fail "A's step 400 is not pending"

for who in b bw br; do
  for json in "" --json; do
    for view in "${nojob_views[@]}"; do
      run "${who}" ${json} ${view}
      [ "${before_a["${who} ${json} ${view}"]}" = "${rc}|${out}|${err}" ] \
        || fail "B's 'ckpt ${json} ${view}' (${who}) changed when A saved:" \
          "before ${before_a["${who} ${json} ${view}"]}, after ${rc}|${out}|${err}"
      [[ "${out}${err}" != *alice* && "${out}${err}" != *exp1* ]] \
        || fail "B's 'ckpt ${json} ${view}' shows A: ${out}${err}"
    done
  done
done

# Every verb and its arguments: @JOB@, @STEP@, @OUT@ (a directory `get`
# or `export` would create), @FILE@ (B's own file), @EXPORT@ (an export of
# B's own checkpoint) and @SRV@ (the server, both sides of a copy).
job_verbs=(
  "ls @JOB@" "ls --all @JOB@" "ls @JOB@ --tag release" "show @JOB@ latest" "get @JOB@ latest @OUT@"
  "prune @JOB@ --keep-last 1 --dry-run" "prune @JOB@ --keep-last 1"
  "prune @JOB@" "policy get @JOB@" "policy set @JOB@ --max-to-keep 1"
  "policy set @JOB@" "verify @JOB@" "verify @JOB@ latest --read-data"
  "stats @JOB@" "events @JOB@" "events @JOB@ --limit 1"
  "diff @JOB@ latest latest" "export @JOB@ latest @OUT@" "tag @JOB@ latest x" "rm @JOB@ latest"
  "rm-job @JOB@ --yes" "rm-job @JOB@ --yes --force"
  "copy @JOB@ --from @SRV@ --to @SRV@ --to-job bob/stolen"
  "copy bob/own --from @SRV@ --to @SRV@ --to-job @JOB@"
  "copy @JOB@ --from @SRV@ --to @SRV@ --to-job bob/stolen --dry-run")
step_verbs=(
  "show @JOB@ @STEP@" "get @JOB@ @STEP@ @OUT@ --rank 0"
  "put @JOB@ @STEP@ @FILE@"
  "put @JOB@ @STEP@ @FILE@ --world-size 2 --rank 1"  # completes A's pending 400
  "put @JOB@ @STEP@ @FILE@ --row-bytes 10 --delta-against 50"
  "rm @JOB@ @STEP@" "pin @JOB@ @STEP@" "unpin @JOB@ @STEP@"
  "rm @JOB@ @STEP@ --force" "abort @JOB@ @STEP@" "tag @JOB@ @STEP@ release" "tag @JOB@ @STEP@ run=a" "untag @JOB@ @STEP@ release"
  "verify @JOB@ @STEP@" "diff @JOB@ @STEP@ @STEP@" "diff @JOB@ 100 @STEP@"
  "export @JOB@ @STEP@ @OUT@ --rank 0 --world-size 1"
  "import @EXPORT@ @JOB@ @STEP@" "copy @JOB@ --from @SRV@ --to @SRV@ --steps @STEP@ --to-job bob/stolen")
steps=(100 400 700)  # committed in both jobs, pending in alice/train, none

# The test fails when `ckpt --help` lists a verb no probe here runs.
subcommands() { "${ckpt}" "$@" --help | awk '/^Subcommands:/ {on = 1; next} on && NF {print $1}'; }
# completion and man contact no server: nothing to probe.
covered=" put completion man "  # put: also the dedup probes below
for verb in "${job_verbs[@]}" "${step_verbs[@]}" "${nojob_views[@]}"; do
  read -r first second _ <<<"${verb}"
  [ "${first}" = policy ] && first="policy ${second}"
  covered+="${first} "
done
verbs=0
for verb in $(subcommands); do
  if [ "${verb}" = policy ]; then
    for sub in $(subcommands policy); do
      verbs=$((verbs + 1))
      [[ "${covered}" == *" policy ${sub} "* ]] || fail "'ckpt policy ${sub}' is not probed"
    done
  else
    verbs=$((verbs + 1))
    [[ "${covered}" == *" ${verb} "* ]] || fail "'ckpt ${verb}' is not probed"
  fi
done
[ "${verbs}" -ge 14 ] || fail "only ${verbs} verbs found in ckpt --help"

# A name no tenant uses, of the same length and shape as NAME: each letter
# or digit replaced by a random letter; the tenant kept when KEEP_TENANT=1.
fake_name() {  # NAME KEEP_TENANT
  local name=$1 fake="" i c letters=abcdefghijklmnopqrstuvwxyz start=0
  if [ "$2" = 1 ]; then
    fake=${name%%/*}/
    start=${#fake}
  fi
  for ((i = start; i < ${#name}; i++)); do
    c=${name:i:1}
    [ "${c}" = / ] || c=${letters:RANDOM%26:1}
    fake+=${c}
  done
  if [ "${fake}" = "${name}" ] || { [ "$2" = 0 ] && [[ "${fake}" == alice/* || "${fake}" == bob/* ]]; }; then
    fake_name "$@"
  else
    echo "${fake}"
  fi
}

# Runs VERB (a template) as WHO on A's JOB and on two names that do not
# exist, and compares the answers.
pairs=0
probe() {  # WHO JSON JOB STEP VERB
  local who=$1 json=$2 job=$3 step=$4 fake words=() real_rc real_out real_err
  set -f
  words=($5)
  set +f
  words=("${words[@]//@STEP@/${step}}")
  words=("${words[@]//@OUT@/${work}/outdir}")
  words=("${words[@]//@FILE@/${work}/in/probe.bin}")
  words=("${words[@]//@EXPORT@/${work}/bob_export}")
  words=("${words[@]//@SRV@/${CKPT_SERVER}}")
  run "${who}" ${json} "${words[@]//@JOB@/${job}}"
  real_rc=${rc} real_out=${out} real_err=${err}
  [ "${rc}" -ne 0 ] && [[ "${err}" == *PERMISSION_DENIED* ]] \
    || fail "B (${who}) was not refused 'ckpt ${json} ${words[*]//@JOB@/${job}}': exit ${rc}: ${out}${err}"
  local fakes=("${fake_same_tenant[${job}]}" "${fake_other_tenant[${job}]}")
  # Quick: one of the two names, in turn.
  [ "${CKPT_ISOLATION_QUICK:-0}" = 1 ] && fakes=("${fakes[probes % 2]}")
  for fake in "${fakes[@]}"; do
    run "${who}" ${json} "${words[@]//@JOB@/${fake}}"
    pairs=$((pairs + 1))
    local what="B (${who}) 'ckpt ${json} ${words[*]//@JOB@/${job}}' vs ${fake}"
    [ "${real_rc}" = "${rc}" ] || fail "${what}: exit ${real_rc} vs ${rc}"
    [ "${#real_out}" = "${#out}" ] && [ "${#real_err}" = "${#err}" ] \
      || fail "${what}: output sizes ${#real_out}+${#real_err} vs ${#out}+${#err}"
    [ "${real_out//"${job}"/"${fake}"}" = "${out}" ] \
      || fail "${what}: stdout differs: '${real_out}' vs '${out}'"
    [ "${real_err//"${job}"/"${fake}"}" = "${err}" ] \
      || fail "${what}: stderr differs: '${real_err}' vs '${err}'"
  done
}

declare -A fake_same_tenant fake_other_tenant
for job in alice/train alice/exp1/run; do
  fake_same_tenant[${job}]=$(fake_name "${job}" 1)
  fake_other_tenant[${job}]=$(fake_name "${job}" 0)
done

# B's admin on both of A's jobs; B's writer and reader (the role cases) on
# one. CKPT_ISOLATION_QUICK=1 (the sanitizer builds, where every CLI
# process costs ~5x) probes each target in one output mode, alternating,
# at the committed and the pending step only, against one of the two
# absent names in turn: every verb and role still runs, a third as often.
json_modes=("" --json)
[ "${CKPT_ISOLATION_QUICK:-0}" = 1 ] && steps=(100 400)
target_index=0
for target in "b alice/train" "b alice/exp1/run" "bw alice/train" \
  "br alice/train"; do
  read -r who job <<<"${target}"
  if [ "${CKPT_ISOLATION_QUICK:-0}" = 1 ]; then
    [ $((target_index % 2)) = 0 ] && json_modes=("") || json_modes=(--json)
  fi
  target_index=$((target_index + 1))
  for json in "${json_modes[@]}"; do
    for verb in "${job_verbs[@]}"; do probe "${who}" "${json}" "${job}" 0 "${verb}"; done
    for step in "${steps[@]}"; do
      for verb in "${step_verbs[@]}"; do
        probe "${who}" "${json}" "${job}" "${step}" "${verb}"
      done
    done
  done
done

# Dedup across tenants: B uploading a copy of one of A's files into bob/
# (as the admin or the writer) looks exactly like uploading random bytes
# of the same size: every chunk is sent in full.
for i in 1 2 3 4 5 6 7; do
  who=b
  json=""
  [ $((i % 2)) = 0 ] && who=bw
  [ $((i % 3)) = 0 ] && json=--json
  cp "${work}/a/w$i.bin" "${work}/in/copy.bin"
  run "${who}" ${json} put "bob/seen$i" 1 "${work}/in/copy.bin"
  real_rc=${rc} real_out=${out} real_err=${err}
  [ "${rc}" = 0 ] || fail "B could not put its copy of A's bytes: ${err}"
  head -c $((1000 * i)) /dev/urandom >"${work}/in/copy.bin"
  run "${who}" ${json} put "bob/none$i" 1 "${work}/in/copy.bin"
  pairs=$((pairs + 1))
  [ "${real_rc}|${real_out//seen/none}|${real_err//seen/none}" = "${rc}|${out}|${err}" ] \
    || fail "B's upload of A's bytes differs from random bytes: '${real_out}' vs '${out}'"
done

# Nothing of A's reached B through a refused copy.
rc=0
run_as b ls bob/stolen >/dev/null 2>&1 || rc=$?
[ "${rc}" -ne 0 ] || fail "a refused copy created bob/stolen"

a_state >"${work}/a_after.json"
cmp -s "${work}/a_before.json" "${work}/a_after.json" \
  || fail "A's state changed: $(diff "${work}/a_before.json" "${work}/a_after.json")"

# A careless user's token is not echoed either: unknown, with a space or
# a line break inside (also from a token file of two lines), or sent in
# clear to another host; and a directory given as the token file is an
# error, not a crash.
careless() {  # EXPECTED_FRAGMENT CKPT_TOKEN ARGS...
  local expected=$1 token=$2
  shift 2
  rc=0
  CKPT_TOKEN="${token}" "${ckpt}" "$@" >"${work}/run.out" 2>"${work}/run.err" || rc=$?
  IFS= read -rd '' out <"${work}/run.out" || true
  IFS= read -rd '' err <"${work}/run.err" || true
  probes=$((probes + 1))
  [ "${rc}" -ne 0 ] && [[ "${err}" == *"${expected}"* ]] \
    || fail "careless 'ckpt $*': exit ${rc}, wanted '${expected}': ${out}${err}"
  no_token "careless 'ckpt $*'" "${out}${err}"
}
careless UNAUTHENTICATED "${tok_wrong}" ls
careless UNAUTHENTICATED "${tok_wrong}" --json show alice/train 100
careless "not printable" "${tok_b} ${tok_wrong}" ls
careless "not printable" "${tok_b}"$'\n'"${tok_wrong}" ls
careless "in clear" "${tok_b}" --server 192.0.2.1:7070 ls
printf '%s\n%s\n' "${tok_b}" "${tok_wrong}" >"${work}/two.token"
careless "not printable" "" --token-file "${work}/two.token" ls
# A directory where the token file belongs is an error, not an abort.
careless "--token-file: cannot read '${work}/in': is a directory" "" \
  --token-file "${work}/in" ls

IFS= read -rd '' log <"${work}/server.err" || true
IFS= read -rd '' log_out <"${work}/server.out" || true
no_token "the server's log" "${log}${log_out}"

echo "cli_isolation_test: ${probes} CLI probes by tenant B (${pairs} pairs" \
  "of A's real objects against ones that do not exist), ${verbs} verbs"
