#!/usr/bin/env bash
# Installs dependencies, builds ckpt twice (optimized, and with
# AddressSanitizer + UBSan) and runs every test in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh

jobs=$(nproc)
for preset in dev asan; do
  echo "=== ${preset}: configure and build"
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j"${jobs}"
  echo "=== ${preset}: tests"
  ctest --preset "${preset}" -j"${jobs}"
done
echo "=== all tests passed in the dev and asan builds"
