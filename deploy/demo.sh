#!/usr/bin/env bash
# The main job: installs dependencies, builds ckpt, starts ckpt-server on its
# embedded RocksDB default, and runs a 2-rank training job that checkpoints
# through it, is interrupted, and resumes from the latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" \
  --target ckpt-server ckpt ckpt-demo-trainer

bin=build/release
data_dir=$(mktemp -d /tmp/ckpt-demo-XXXXXX)
server_pid=""
cleanup() {
  if [ -n "${server_pid}" ] && kill -0 "${server_pid}" 2>/dev/null; then
    kill "${server_pid}"
    wait "${server_pid}" || true
  fi
  rm -rf "${data_dir}"
}
trap cleanup EXIT

port_file="${data_dir}/server.out"
"${bin}/server/rpc/ckpt-server" --data-dir "${data_dir}/db" \
  --listen 127.0.0.1:0 >"${port_file}" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "${port_file}" 2>/dev/null && break
  sleep 0.1
done
address=$(sed -n 's/.*listening on //p' "${port_file}")
[ -n "${address}" ] || { echo "ckpt-server did not start" >&2; exit 1; }
export CKPT_SERVER="${address}"
echo "== ckpt-server (pid ${server_pid}) on ${address}, data in ${data_dir}/db"

trainer="${bin}/client/demo/ckpt-demo-trainer"
job="demo/mlp"
echo "== run 1: train from scratch, save every 5 steps, crash at step 23"
"${trainer}" --job "${job}" --steps 40 --save-every 5 --crash-at 23 || true
echo "== run 2: restart, resume from the latest committed checkpoint"
"${trainer}" --job "${job}" --steps 40 --save-every 5 --verify
echo "== ckpt ls ${job}"
"${bin}/client/ckpt" ls "${job}"
echo "== ckpt stats"
"${bin}/client/ckpt" stats
