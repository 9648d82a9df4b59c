#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan+UBSan) and runs them.
#
#   scripts/fuzz.sh                      CI run: every target, MAT_FUZZ_SECONDS (default 60) in all
#   scripts/fuzz.sh --long SECONDS [T..] each target T (default: all) for SECONDS
#   scripts/fuzz.sh --jobs N ...         N targets at a time (default 1; the machine is shared)
#   scripts/fuzz.sh --list               the targets (fuzz/targets.txt)
#
# Inputs of target T: tests/fuzz_corpus/T/ (committed: text seeds and every crash input ever
# found), build/fuzz/seeds/T/ (archives from scripts/fuzz_seeds.py, plus the shared corpus's
# small packages when it is there: ../shared/corpus or $MAT_CORPUS_DIR) and build/fuzz/corpus/T/,
# where libFuzzer keeps the inputs it finds (kept between runs, so long runs build on each
# other). Dictionaries: fuzz/targets.txt. Runs at nice 10.
#
# Fails (exit 1) if any target crashes, times out (-timeout, seconds per input) or runs out of
# memory (-rss_limit_mb); the input is saved as build/fuzz/artifacts/T/<kind>-<sha1>. To keep
# it: reproduce with `build/fuzz/fuzz/T_fuzz FILE` (or build/release/fuzz/mat_fuzz_replay T
# FILE), fix the code, then add FILE to tests/fuzz_corpus/T/ under a name saying what it broke:
# the fuzz_replay.T CTest test replays it in every build from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${MAT_FUZZ_SECONDS:-60}
per_target=""
jobs=1
selected=()
while [ $# -gt 0 ]; do
  case "$1" in
    --long) per_target="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --list) grep -v '^#' fuzz/targets.txt | awk 'NF {print $1}'; exit 0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see scripts/fuzz.sh --help)" >&2; exit 2 ;;
    *) selected+=("$1"); shift ;;
  esac
done

declare -A dicts
all=()
while read -r name rest; do
  case "$name" in ''|'#'*) continue ;; esac
  all+=("$name")
  dicts[$name]="$rest"
done < fuzz/targets.txt
if [ ${#selected[@]} -eq 0 ]; then selected=("${all[@]}"); fi
for t in "${selected[@]}"; do
  if [ -z "${dicts[$t]+x}" ]; then
    echo "fuzz.sh: unknown target $t (scripts/fuzz.sh --list)" >&2
    exit 2
  fi
done
if [ -z "$per_target" ]; then
  per_target=$(( total / ${#selected[@]} ))
  [ "$per_target" -ge 2 ] || per_target=2
fi
# Seconds one input may take before it counts as a hang. Real .conda members declare 128 MB zstd
# windows: under ASan one such 652-byte package takes 0.5 s of CPU (shadow memory of the window
# buffer), several seconds of wall time on a loaded machine.
timeout_s=30

scripts/deps.sh  # clang and libclang-rt-dev (libFuzzer); nothing when all is there
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"

out=build/fuzz
corpus_dir=${MAT_CORPUS_DIR:-../shared/corpus}
seed_args=(--out "$out/seeds")
[ -d "$corpus_dir/conda" ] && seed_args+=(--corpus "$corpus_dir")
/usr/bin/python3 scripts/fuzz_seeds.py "${seed_args[@]}"

shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$shm/mat-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export MAT_FUZZ_TMP="$scratch"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# run_one TARGET: one libFuzzer session; its log in $out/logs/TARGET.log.
run_one() {
  local t=$1
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t" "$out/logs" "$out/dicts" "tests/fuzz_corpus/$t"
  local dict="$out/dicts/$t.dict"
  : > "$dict"
  for d in ${dicts[$t]}; do cat "fuzz/dicts/$d.dict" >> "$dict"; done
  local args=(-max_total_time="$per_target" -timeout="$timeout_s" -rss_limit_mb=2560
              -artifact_prefix="$out/artifacts/$t/" -print_final_stats=1)
  [ -s "$dict" ] && args+=(-dict="$dict")
  local dirs=("$out/corpus/$t" "tests/fuzz_corpus/$t")
  [ -d "$out/seeds/$t" ] && dirs+=("$out/seeds/$t")
  local rc=0
  nice -n 10 "$out/fuzz/${t}_fuzz" "${args[@]}" "${dirs[@]}" > "$out/logs/$t.log" 2>&1 || rc=$?
  echo "$rc" > "$out/logs/$t.rc"
}

summary() {
  local t=$1 rc=$2 log="$out/logs/$1.log"
  local execs cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  printf '%-22s %-6s %10s execs %7s edges %8s features\n' "$t" \
    "$([ "$rc" -eq 0 ] && echo ok || echo FAIL)" "${execs:-?}" "${cov:-?}" "${ft:-?}"
}

echo "fuzz: ${#selected[@]} targets, ${per_target}s each, $jobs at a time (logs: $out/logs/)"
failed=()
running=0
for t in "${selected[@]}"; do
  rm -f "$out/logs/$t.rc"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
for t in "${selected[@]}"; do
  rc=$(cat "$out/logs/$t.rc" 2>/dev/null || echo 1)
  summary "$t" "$rc"
  if [ "$rc" -ne 0 ]; then failed+=("$t"); fi
done
if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    what=$(grep -m1 -E '^==[0-9]+==ERROR|ALARM|out-of-memory|deadly signal|fuzz check failed' \
             "$out/logs/$t.log" || echo 'see the log')
    echo "--- $t: $what"
    grep -E 'Test unit written to' "$out/logs/$t.log" | sed 's/^/    /'
    echo "    log: $out/logs/$t.log; reproduce: $out/fuzz/${t}_fuzz <input>"
  done
  echo "fuzz: FAILED: ${failed[*]} (keep each input in tests/fuzz_corpus/<target>/ once fixed)" >&2
  exit 1
fi
echo "fuzz: all ${#selected[@]} targets ran clean"
