#!/usr/bin/env bash
# Installs every Debian package ckpt needs to build, test and run.
# This is the one list of apt package names; idempotent and quick when
# everything is already present.
#   install-deps.sh            everything, to build and test
#   install-deps.sh --runtime  only what the built ckpt-server needs to run
#                              (deploy/Dockerfile's final image)
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler librocksdb-dev libabsl-dev libssl-dev
  libgtest-dev libgmock-dev libxxhash-dev libzstd-dev
  libcli11-dev nlohmann-json3-dev libyaml-cpp-dev prometheus-cpp-dev
  clang-format clang-tidy ccache procps
  clang-14 libclang-rt-14-dev
  pybind11-dev python3-pybind11 python3-dev python3-numpy python3-torch
  python3-pytest python3-grpcio python3-grpc-tools openssl
  librados-dev libradospp-dev ceph-mon ceph-osd ceph-common
)

# The shared libraries ckpt-server links (Debian 12 names); their own
# dependencies come with them.
RUNTIME_PACKAGES=(
  libgrpc++1.51 libgrpc29 libprotobuf32 librocksdb7.8 libabsl20220623
  libssl3 libxxhash0 libzstd1 libyaml-cpp0.7 libprometheus-cpp-core1.0
  libprometheus-cpp-pull1.0 librados2
)

if [ "${1:-}" = "--runtime" ]; then
  PACKAGES=("${RUNTIME_PACKAGES[@]}")
elif [ $# -gt 0 ]; then
  echo "usage: install-deps.sh [--runtime]" >&2
  exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
