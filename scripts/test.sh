#!/usr/bin/env bash
# The whole test suite: dependencies, release build, every CTest test (unit, end-to-end against
# python http.server and nginx on 127.0.0.1, bad-input), then all of it again under ASan+UBSan.
# Usage: scripts/test.sh [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
ctest --preset release -j 2
if [ "${1:-}" != "--no-asan" ]; then
  scripts/build.sh asan
  ctest --preset asan -j 2
fi
