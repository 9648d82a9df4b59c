#!/usr/bin/env bash
# The whole test suite: dependencies, release build, every CTest test (unit, end-to-end against
# python http.server and nginx on 127.0.0.1, bad-input, the fuzz seed corpus replayed), a bounded
# libFuzzer run of every fuzz target (scripts/fuzz.sh: about a minute; fails on any crash), then
# all of it again under ASan+UBSan (but four end-to-end files that add no new code paths).
# Usage: scripts/test.sh [--no-fuzz] [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz=1
asan=1
for arg in "$@"; do
  case "$arg" in
    --no-fuzz) fuzz=0 ;;
    --no-asan) asan=0 ;;
    *) echo "test.sh: unknown option $arg (usage: scripts/test.sh [--no-fuzz] [--no-asan])" >&2; exit 2 ;;
  esac
done
scripts/deps.sh
scripts/build.sh release
ctest --preset release -j 2
if [ "$fuzz" = 1 ]; then
  scripts/fuzz.sh
fi
if [ "$asan" = 1 ]; then
  scripts/build.sh asan
  # Under ASan+UBSan: every unit, bad-input, fault, kill and fuzz-replay test; the end-to-end
  # files that only repeat the release run's code paths over more packages (wheel formats,
  # wheel fixtures, the corpus, network faults, which mostly wait on timeouts) run in the
  # release pass alone, and the kill soak takes 8 kills instead of 40: CI stays in budget.
  MAT_KILL_SOAK=${MAT_KILL_SOAK:-8} ctest --preset asan -j 2 \
    -E '^e2e\.(test_wheels_formats|test_wheels_fixtures|test_corpus|test_network_faults)$'
fi
