#!/usr/bin/env bash
# Installs every Debian package ckpt needs to build, test and run.
# This is the one list of apt package names; idempotent and quick when
# everything is already present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler librocksdb-dev libabsl-dev libssl-dev
  libgtest-dev libgmock-dev libxxhash-dev libzstd-dev
  libcli11-dev nlohmann-json3-dev prometheus-cpp-dev
  clang-format clang-tidy ccache procps
  pybind11-dev python3-pybind11 python3-dev python3-numpy python3-torch
  python3-pytest python3-grpcio python3-grpc-tools openssl
)

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
