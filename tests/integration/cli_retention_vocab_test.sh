#!/usr/bin/env bash
# Drives restic's retention vocabulary through the real `ckpt` CLI against a
# real ckpt-server: durations (30m, 6h, 1d, 2w) and the old flag names as
# aliases, --keep-within, --keep-hourly/daily/weekly/monthly, --keep-tag
# (dry run and real prune, decisions and reasons in --json), a stored
# policy with every rule surviving a restart, the keep-best "no checkpoint
# has metric M" warning (prune dry and real, policy set), and hostile
# values refused by the server with INVALID_ARGUMENT naming the field and
# nothing stored, and a tenant's default (policy set TENANT/ --default)
# with the same rules.
# Usage: cli_retention_vocab_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"
job=cli/vocab

steps() {  # the job's committed steps, comma-separated
  "${ckpt}" ls "${job}" --json | "${py}" -c '
import json,sys; print(",".join(str(c["step"]) for c in json.load(sys.stdin)))'
}
kept() {  # prune ARGS... --json: the kept steps, comma-separated
  "${ckpt}" prune "${job}" "$@" --json | "${py}" -c '
import json,sys; r = json.load(sys.stdin)
print(",".join(str(d["step"]) for d in r["decisions"] if d["keep"]))'
}
events() {  # how many events the job has
  "${ckpt}" events "${job}" --json | "${py}" -c '
import json,sys; print(len(json.load(sys.stdin)))'
}

# 2026-01-05 and -06 are ISO week 2, 01-12 week 3, 02-02 and -03 week 6.
head -c 100 /dev/urandom >"${work}/w.bin"
put() { "${ckpt}" put "${job}" "$1" "${work}/w.bin" --time "$2" "${@:3}" >/dev/null; }
put 1 2026-01-05T10:00:00Z --tag release=v1
put 2 2026-01-05T11:30:00Z
put 3 2026-01-06T09:00:00Z
put 4 2026-01-12T08:00:00Z
put 5 2026-02-02T08:00:00Z
put 6 2026-02-02T08:40:00Z
put 7 2026-02-03T01:00:00Z
put 8 2026-02-03T01:30:00Z

# Each rule on its own, as a dry run (the newest, 8, is always kept).
# keep-within counts from the newest checkpoint, not the clock (months on).
[ "$(kept --dry-run --keep-within 1d)" = "5,6,7,8" ] || fail "keep-within 1d: $(kept --dry-run --keep-within 1d)"
[ "$(kept --dry-run --keep-hourly 3)" = "4,6,8" ] || fail "keep-hourly 3: $(kept --dry-run --keep-hourly 3)"
[ "$(kept --dry-run --keep-daily 2)" = "6,8" ] || fail "keep-daily 2: $(kept --dry-run --keep-daily 2)"
[ "$(kept --dry-run --keep-weekly 3)" = "3,4,8" ] || fail "keep-weekly 3: $(kept --dry-run --keep-weekly 3)"
[ "$(kept --dry-run --keep-monthly 2)" = "4,8" ] || fail "keep-monthly 2: $(kept --dry-run --keep-monthly 2)"
[ "$(kept --dry-run --keep-last 1 --keep-tag release)" = "1,8" ] || fail "keep-tag: $(kept --dry-run --keep-last 1 --keep-tag release)"
[ "$(steps)" = "1,2,3,4,5,6,7,8" ] || fail "a dry run deleted: $(steps)"
"${ckpt}" prune "${job}" --dry-run --keep-weekly 3 --keep-tag release --json >"${work}/dry.json"
"${py}" - "${work}/dry.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
why = {d["step"]: d["reasons"] for d in r["decisions"]}
assert why[3] == ["weekly: newest of 2026-W02"], why
assert why[1] == ["tagged release"], why
assert why[2] == ["weekly: a newer checkpoint is kept for 2026-W02",
                  "not tagged release"], why
assert why[5] == ["weekly: a newer checkpoint is kept for 2026-W06",
                  "not tagged release"], why
assert r["policy"]["keep_weekly"] == 3 and r["policy"]["keep_tags"] == ["release"], r
assert r["warnings"] == [], r
PY
"${ckpt}" prune "${job}" --dry-run --keep-daily 2 | grep "daily: newest of 2026-02-02" >/dev/null \
  || fail "prune table lacks the daily reason"

# A real prune by the union of the rules.
"${ckpt}" prune "${job}" --keep-last 1 --keep-tag release --keep-weekly 3 --json >"${work}/real.json"
[ "$(steps)" = "1,3,4,8" ] || fail "after prune: $(steps)"

# Durations everywhere, and the old names are aliases of the new ones.
check_every() {  # policy set ARGS...: keep_every must be $1 seconds
  local want=$1; shift
  "${ckpt}" policy set "${job}" "$@" --json | "${py}" -c "
import json,sys; p = json.load(sys.stdin)['policy']
assert p['keep_every_seconds'] == ${want} and p['max_to_keep'] == 9, p"
}
check_every 21600 --max-to-keep 9 --keep-every-n-hours 6h
check_every 21600 --max-to-keep 9 --keep-every-n-hours 6
check_every 5400 --keep-last 9 --keep-every-n-hours 1.5
check_every 86400 --keep-last 9 --keep-every 1d
check_every 1209600 --max-to-keep 9 --keep-every 2w
check_every 1800 --keep-last 9 --keep-every 30m
"${ckpt}" policy get "${job}" | grep "max_to_keep=9 keep_every=30m" >/dev/null || fail "policy get text"

# Every rule stored, shown, and kept across a restart.
"${ckpt}" policy set "${job}" --keep-last 9 --keep-within 2w --keep-hourly 24 \
  --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-tag release \
  --keep-tag best --json >"${work}/set.json"
restart_server
"${ckpt}" policy get "${job}" --json >"${work}/get.json"
"${py}" - "${work}/set.json" "${work}/get.json" <<'PY'
import json, sys
set_, got = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
want = {"max_to_keep": 9, "keep_within": "2w", "keep_within_seconds": 14 * 86400,
        "keep_hourly": 24, "keep_daily": 7, "keep_weekly": 4,
        "keep_monthly": 12, "keep_tags": ["release", "best"]}
for key, value in want.items():
    assert set_["policy"][key] == value, (key, set_)
assert got["policy"] == set_["policy"], (got, set_)
assert set_["warnings"] == [], set_
PY
"${ckpt}" policy get "${job}" | grep "keep_within=2w keep_hourly=24 keep_daily=7 keep_weekly=4 keep_monthly=12 keep_tags=release,best" \
  >/dev/null || fail "policy get text: $("${ckpt}" policy get "${job}")"

# keep-best where no checkpoint has the metric: decides nothing, and says so.
no_metric="keep_best decides nothing: no checkpoint has metric val_loss"
"${ckpt}" prune "${job}" --keep-last 1 --keep-best 1 --metric val_loss --dry-run \
  >"${work}/out" 2>"${work}/err"
grep -qF "warning: ${no_metric}" "${work}/err" || fail "dry run warning: $(cat "${work}/err")"
grep -q "would delete 3 of 4" "${work}/out" || fail "keep-best cancelled keep-last: $(cat "${work}/out")"
"${ckpt}" prune "${job}" --keep-best 1 --metric val_loss --dry-run --json 2>/dev/null | "${py}" -c "
import json,sys; r = json.load(sys.stdin)
assert r['warnings'] == ['${no_metric}'], r
assert all(d['keep'] for d in r['decisions']), r"
"${ckpt}" policy set "${job}" --keep-last 3 --keep-best 1 --metric val_loss \
  >"${work}/out" 2>"${work}/err"
grep -qF "warning: ${no_metric}" "${work}/err" || fail "policy set warning: $(cat "${work}/err")"
"${ckpt}" policy set "${job}" --keep-last 3 --keep-best 1 --metric val_loss --json \
  | "${py}" -c "
import json,sys; assert json.load(sys.stdin)['warnings'] == ['${no_metric}']"
"${ckpt}" prune "${job}" --keep-last 1 --keep-best 1 --metric val_loss \
  >"${work}/out" 2>"${work}/err"
grep -qF "warning: ${no_metric}" "${work}/err" || fail "real prune warning: $(cat "${work}/err")"
[ "$(steps)" = "8" ] || fail "after the no-metric prune: $(steps)"

# Hostile values: INVALID_ARGUMENT naming the field, nothing stored.
"${ckpt}" policy get "${job}" --json >"${work}/before.json"
before_events=$(events)
refused() {  # FIELD ARGS...: policy set and prune refuse naming FIELD
  local field=$1; shift
  for verb in "policy set" "prune"; do
    if "${ckpt}" ${verb} "${job}" "$@" 2>"${work}/err" >/dev/null; then
      fail "${verb} $* accepted"
    fi
    grep -q "INVALID_ARGUMENT" "${work}/err" || fail "${verb} $*: $(cat "${work}/err")"
    grep -q -e "${field}" "${work}/err" || fail "${verb} $* does not name ${field}: $(cat "${work}/err")"
  done
}
refused keep_tags --keep-tag ""
refused keep_tags --keep-tag "$(head -c 300 /dev/zero | tr '\0' a)"
refused keep_tags --keep-tag "$(printf 'a\tb')"
refused keep_tags --keep-tag a --keep-tag a
refused keep_within --keep-within 20000w
refused keep_daily --keep-daily 2000000
refused --keep-hourly --keep-hourly=-1
refused --keep-within --keep-within=-1d
refused --keep-every --keep-last 1 --keep-every soon
refused --keep-weekly --keep-weekly 1.5
"${ckpt}" policy get "${job}" --json | cmp - "${work}/before.json" || fail "a refused policy was stored"
[ "$(events)" = "${before_events}" ] || fail "a refusal left an event"
[ "$(steps)" = "8" ] || fail "a refusal deleted: $(steps)"

# A checkpoint dated in the future does not push the others out of
# --keep-within: the window ends at the server's clock.
for step in 1 2; do "${ckpt}" put cli/future "${step}" "${work}/w.bin" >/dev/null; done
"${ckpt}" put cli/future 3 "${work}/w.bin" --time 2099-01-01T00:00:00Z >/dev/null
"${ckpt}" prune cli/future --keep-within 1h --json | "${py}" -c '
import json,sys; r = json.load(sys.stdin)
assert r["deleted_steps"] == [], r'

# A tenant's default takes the same rules, stored and shown whole; a tag
# name follows common/tags.h (no '='), refused naming keep_tags.
"${ckpt}" policy set cli/ --default --keep-last 2 --keep-daily 7 --keep-tag release --json \
  | "${py}" -c '
import json,sys; r = json.load(sys.stdin)
assert r["tenant"] == "cli" and r["default_policy"]["keep_daily"] == 7, r
assert r["default_policy"]["keep_tags"] == ["release"], r'
"${ckpt}" policy get cli/ | grep "max_to_keep=2 keep_daily=7 keep_tags=release" >/dev/null \
  || fail "tenant default text: $("${ckpt}" policy get cli/)"
"${ckpt}" policy get cli/future --json | "${py}" -c '
import json,sys; r = json.load(sys.stdin)
assert r["policy"]["keep_daily"] == 7, r
assert r["origin"]["source"] == "tenant_default", r'
if "${ckpt}" policy set cli/ --default --keep-tag best=yes 2>"${work}/err" >/dev/null; then
  fail "a keep-tag with '=' was accepted"
fi
grep -q "keep_tags: a tag name must not hold '='" "${work}/err" || fail "keep-tag '=': $(cat "${work}/err")"
"${ckpt}" policy get cli/ | grep "keep_daily=7" >/dev/null || fail "a refused default was stored"
"${ckpt}" policy set cli/ --default --clear >/dev/null

for flag in --keep-last --max-to-keep --keep-every --keep-every-n-hours \
    --keep-within --keep-hourly --keep-daily --keep-weekly --keep-monthly \
    --keep-tag --keep-best; do
  for verb in "policy set" "prune"; do
    "${ckpt}" ${verb} --help | grep -q -e "${flag}" || fail "${verb} --help lacks ${flag}"
  done
done
echo "cli_retention_vocab_test: all checks passed"
