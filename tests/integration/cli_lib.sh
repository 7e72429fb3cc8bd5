# Shared by the CLI end-to-end scripts: sourced after `build` is set (and
# optionally the array `server_extra` of further ckpt-server flags).
# Starts a real ckpt-server on a free loopback port, exports CKPT_SERVER and
# removes everything on exit; restart_server restarts it on the same data.
# A script that must first write files into ${work} for the server (a token
# file) sets defer_start_server=1 and calls start_server itself.
ckpt="${build}/client/ckpt"
server_bin="${build}/server/rpc/ckpt-server"
py=/usr/bin/python3

work=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-cli-XXXXXX")
server_pid=""
cleanup() {
  if [ -n "${server_pid}" ]; then
    kill "${server_pid}" 2>/dev/null || true
    wait "${server_pid}" 2>/dev/null || true
  fi
  rm -rf "${work}"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

start_server() {
  # Emptied here, not only by the redirect below: that runs in the child,
  # which may start after the loop has read a previous server's address.
  : >"${work}/server.out"
  "${server_bin}" --data-dir "${work}/db" --listen 127.0.0.1:0 \
    ${server_extra[@]+"${server_extra[@]}"} >"${work}/server.out" 2>"${work}/server.err" &
  server_pid=$!
  for _ in $(seq 1 300); do
    grep -q "listening on" "${work}/server.out" 2>/dev/null && break
    kill -0 "${server_pid}" 2>/dev/null || fail "server exited: $(cat "${work}/server.err")"
    sleep 0.1
  done
  export CKPT_SERVER=$(sed -n 's/.*listening on //p' "${work}/server.out")
  [ -n "${CKPT_SERVER}" ] || fail "server did not report its address"
}

# Stops the server cleanly (SIGTERM, as in production) and starts a new one
# on the same data directory (and a new port).
restart_server() {
  kill "${server_pid}"
  wait "${server_pid}" || fail "server exited with $? on SIGTERM"
  server_pid=""
  start_server
}

[ "${defer_start_server:-0}" = 1 ] || start_server
