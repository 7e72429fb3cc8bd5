#!/usr/bin/env bash
# Drives `ckpt get` and `ckpt ls --sort` against a real ckpt-server:
# nested tensor names written as nested paths (one rank, and --full with
# sharded tensors assembled, replicated ones once and per-rank ones under
# rank-N/), names that would leave OUTDIR or collide refused before
# anything is written, a link planted inside OUTDIR never followed, a
# failed get leaving neither a file nor a `restored` event, and the best
# checkpoint by a metric (get JOB best, ls --sort).
# Checkpoints `put` cannot make are planted through the raw gRPC API
# (cli_plant.py).
# Usage: cli_get_test.sh BUILD_DIR
set -euo pipefail
build=$1
source "$(dirname "$0")/cli_lib.sh"
plant="${py} $(dirname "$0")/cli_plant.py ${CKPT_SERVER}"

restored_events() {  # JOB: how many `restored` events the job has
  "${ckpt}" events "$1" --json | "${py}" -c '
import json, sys
print(sum(e["kind"] == "restored" for e in json.load(sys.stdin)))'
}

# ---------------------------------------------------------------- nested
job=cli/model
${plant} "${job}" 5 model "${work}/expected"
for rank in 0 1; do
  "${ckpt}" get "${job}" 5 "${work}/r${rank}" --rank "${rank}" >/dev/null
  for name in model/0.weight model/0.bias layer.0.attn config loader/state step; do
    cmp "${work}/expected/rank${rank}/${name}" "${work}/r${rank}/${name}" ||
      fail "rank ${rank}: ${name} differs"
  done
done
[ "$(restored_events "${job}")" = 2 ] || fail "two gets, not two restored events"

# --full: whole tensors; the per-rank loader state under rank-N/.
"${ckpt}" get "${job}" latest "${work}/full" --full --json >"${work}/full.json"
(cd "${work}/expected/full" && find . -type f | sort) >"${work}/want.txt"
(cd "${work}/full" && find . -type f | sort) >"${work}/got.txt"
diff "${work}/want.txt" "${work}/got.txt" || fail "--full wrote other files"
while read -r f; do
  cmp "${work}/expected/full/${f}" "${work}/full/${f}" || fail "--full: ${f} differs"
done <"${work}/want.txt"
"${py}" - "${work}/full.json" "${work}/full" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
assert out["full"] is True and out["rank"] is None and out["step"] == 5, out
assert out["best"] is None, out
files = {(f["name"], f["rank"]): f for f in out["files"]}
assert sorted(files) == sorted([
    ("model/0.weight", None), ("model/0.bias", None), ("layer.0.attn", None),
    ("config", None), ("step", None), ("loader/state", 0),
    ("loader/state", 1)]), sorted(files)
assert files[("model/0.weight", None)]["bytes"] == 6 * 4 * 4, files
assert files[("loader/state", 1)]["path"] == sys.argv[2] + "/rank-1/loader/state"
assert out["bytes"] == sum(f["bytes"] for f in out["files"]), out
PY
[ "$(restored_events "${job}")" = 3 ] || fail "--full recorded no restore"
"${ckpt}" get "${job}" 5 "${work}/table" --full >"${work}/full.txt"
grep -q "whole (2 rank(s)): 7 file(s)" "${work}/full.txt" ||
  fail "--full table: $(cat "${work}/full.txt")"
if "${ckpt}" get "${job}" 5 "${work}/both" --full --rank 1 2>"${work}/err"; then
  fail "--full with --rank accepted"
fi
"${ckpt}" get --help >"${work}/help.txt"
for text in "--full" "assembled from all ranks" "rank-N/NAME" "--metric" \
    "'best'" "nested"; do
  grep -q -e "${text}" "${work}/help.txt" || fail "get --help lacks ${text}"
done

# ------------------------------------------------ refused before writing
# Each name would leave OUTDIR, or two names meet on one path: nothing is
# written (OUTDIR is not even created) and no restore is recorded.
step=10
for names in "../evil" "/tmp/ckpt-abs-$$" "a//b" "a/./b" "a/.." "x y/../../z" \
    "a a/b"; do
  # shellcheck disable=SC2086  # "a a/b" is two names
  ${plant} cli/hostile "${step}" names ${names}
  if "${ckpt}" get cli/hostile "${step}" "${work}/hostile/out" 2>"${work}/err"; then
    fail "names '${names}' accepted"
  fi
  grep -q "INVALID_ARGUMENT" "${work}/err" || fail "${names}: $(cat "${work}/err")"
  [ ! -e "${work}/hostile" ] || fail "${names}: wrote $(find "${work}/hostile")"
  step=$((step + 1))
done
[ ! -e "${work}/evil" ] && [ ! -e "/tmp/ckpt-abs-$$" ] || fail "wrote outside OUTDIR"
grep -q "would be written to" "${work}/err" || fail "collision: $(cat "${work}/err")"
[ "$(restored_events cli/hostile)" = 0 ] || fail "a refused get recorded a restore"

before=$(restored_events "${job}")
# A link inside OUTDIR pointing out of it is refused, not followed.
mkdir -p "${work}/elsewhere" "${work}/linked"
ln -s "${work}/elsewhere" "${work}/linked/model"
if "${ckpt}" get "${job}" 5 "${work}/linked" --rank 0 2>"${work}/err"; then
  fail "wrote through a link"
fi
grep -q "symbolic link" "${work}/err" || fail "link: $(cat "${work}/err")"
[ -z "$(ls -A "${work}/elsewhere")" ] || fail "wrote through the link"
[ "$(ls -A "${work}/linked")" = model ] || fail "left files: $(ls -A "${work}/linked")"

# A rank the checkpoint lacks: refused, nothing written or recorded.
if "${ckpt}" get "${job}" 5 "${work}/r7" --rank 7 2>"${work}/err"; then
  fail "--rank 7 of 2 accepted"
fi
grep -q "outside checkpoint 5" "${work}/err" || fail "rank 7: $(cat "${work}/err")"
[ ! -e "${work}/r7" ] || fail "a refused get created OUTDIR"
[ "$(restored_events "${job}")" = "${before}" ] ||
  fail "a refused get recorded a restore"

# ------------------------------------------------------------------ best
job=cli/best
head -c 1000 /dev/urandom >"${work}/w.bin"
for pair in 1:0.50:0.70 2:0.25:0.90 3:0.40:0.95 4:0.25:0.80; do
  IFS=: read -r s loss acc <<<"${pair}"
  "${ckpt}" put "${job}" "${s}" "${work}/w.bin" --metric "val_loss=${loss}" \
    --metric "val_acc=${acc}" >/dev/null
done
head -c 10 /dev/urandom >"${work}/nometric.bin"
"${ckpt}" put "${job}" 5 "${work}/nometric.bin" >/dev/null
"${ckpt}" get "${job}" best --metric val_loss "${work}/best" --json >"${work}/best.json"
"${py}" - "${work}/best.json" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
# Steps 2 and 4 tie: the older wins, as in keep-best retention.
assert out["step"] == 2, out
assert out["best"] == {"metric": "val_loss", "mode": "min", "value": 0.25}, out
PY
cmp "${work}/w.bin" "${work}/best/w.bin" || fail "best restored other bytes"
"${ckpt}" get "${job}" best --metric val_acc "${work}/best-acc" >"${work}/best.txt"
grep -q "step 3 rank 0, the best by val_acc (max)" "${work}/best.txt" ||
  fail "best by val_acc: $(cat "${work}/best.txt")"
"${ckpt}" get "${job}" best --metric val_loss --mode max "${work}/worst" --json >"${work}/worst.json"
"${py}" -c 'import json,sys; s = json.load(open(sys.argv[1]))["step"]; assert s == 1, s' "${work}/worst.json"
for bad in "best:" "best:--mode:max" "3:--metric:val_loss" "best:--metric:val_loss:--mode:up" \
    "best:--metric:other_loss"; do
  IFS=: read -r -a argv <<<"${bad}"
  if "${ckpt}" get "${job}" "${argv[@]}" "${work}/bad" 2>"${work}/err"; then
    fail "get ${bad} accepted"
  fi
  [ ! -e "${work}/bad" ] || fail "get ${bad} wrote files"
done
grep -q "NOT_FOUND" "${work}/err" || fail "unknown metric: $(cat "${work}/err")"
if "${ckpt}" get "${job}" best --metric weird "${work}/bad" 2>"${work}/err"; then
  fail "an unresolvable auto mode accepted"
fi
grep -q "INVALID_ARGUMENT" "${work}/err" || fail "auto mode: $(cat "${work}/err")"

"${ckpt}" ls "${job}" --sort val_loss --json >"${work}/sorted.json"
"${py}" -c '
import json, sys
steps = [c["step"] for c in json.load(open(sys.argv[1]))]
assert steps == [2, 4, 3, 1, 5], steps' "${work}/sorted.json"
"${ckpt}" ls "${job}" --sort val_acc --mode min >"${work}/sorted.txt"
awk 'NR > 1 { print $1 }' "${work}/sorted.txt" >"${work}/steps.txt"
[ "$(tr '\n' ' ' <"${work}/steps.txt")" = "1 4 2 3 5 " ] ||
  fail "ls --sort val_acc --mode min: $(cat "${work}/sorted.txt")"
if "${ckpt}" ls --sort val_loss 2>"${work}/err"; then fail "--sort without JOB accepted"; fi
if "${ckpt}" ls "${job}" --mode max 2>"${work}/err"; then fail "--mode without --sort accepted"; fi
"${ckpt}" ls --help >"${work}/help.txt"
grep -q -e "--sort" "${work}/help.txt" || fail "ls --help lacks --sort"
echo "cli_get_test: all checks passed"
