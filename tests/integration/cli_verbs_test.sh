#!/usr/bin/env bash
# The operator's verbs and output of the real `ckpt` CLI against a real
# ckpt-server: --json errors (one line of JSON on stderr, a non-zero exit),
# an unknown verb, --version of both binaries.
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

# --- --version of both binaries.
version=$(sed -n 's/^project(ckpt VERSION \([0-9.]*\).*/\1/p' \
  "$(dirname "$0")/../../CMakeLists.txt")
[ -n "${version}" ] || fail "no project version found"
[ "$("${ckpt}" --version)" = "ckpt ${version}" ] || fail "ckpt --version: $("${ckpt}" --version)"
[ "$("${server_bin}" --version)" = "ckpt-server ${version}" ] \
  || fail "ckpt-server --version: $("${server_bin}" --version)"

echo "cli_verbs_test: ok"
