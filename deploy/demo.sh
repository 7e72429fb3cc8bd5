#!/usr/bin/env bash
# The main job: installs dependencies, builds ckpt, starts ckpt-server on its
# embedded RocksDB default, and runs a PyTorch training job
# (deploy/demo_train.py, through the Python package `ckpt`) that checkpoints
# through it, crashes partway, resumes from the latest checkpoint and checks
# that it ends bit-identical to an uninterrupted run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" \
  --target ckpt-server ckpt _ckpt

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

# Debian's python3 has torch and numpy; the package is assembled in the
# build tree (README, "Python").
export PYTHONPATH="${PWD}/${bin}/python"
job="demo/mlp"
train=(/usr/bin/python3 deploy/demo_train.py --server "${address}"
       --job "${job}" --steps 60 --save-every 5)
echo "== run 1: train from scratch, checkpoint every 5 steps, crash after step 23"
if "${train[@]}" --crash-at 23; then
  echo "run 1 was expected to crash" >&2
  exit 1
fi
echo "== run 2: restart, resume from the latest checkpoint, finish, verify"
"${train[@]}" --verify
echo "== ckpt ls ${job}"
"${bin}/client/ckpt" ls "${job}"
echo "== ckpt events ${job}"
"${bin}/client/ckpt" events "${job}"
