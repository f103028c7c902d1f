#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time (FUZZ_SECONDS each, default 30) with
# ASan+UBSan, starting from the committed corpus. New inputs go to a scratch copy, so the
# repository is not modified; a crash leaves its reproducer in build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
SECS=${FUZZ_SECONDS:-30}
mkdir -p "$BUILD/artifacts"
# quiet when it works; on a failed configure or build, say so and show why
if ! { cmake -S . -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER=clang -DSB_FUZZ=ON -DBUILD_TESTING=OFF &&
       cmake --build "$BUILD" --target fuzz_eio fuzz_records fuzz_jwt fuzz_config; } \
     >"$BUILD/artifacts/build.log" 2>&1; then
  echo "fuzz: building the fuzz targets failed:" >&2
  grep -E 'error|Error' "$BUILD/artifacts/build.log" | head -20 >&2
  exit 1
fi
status=0
for t in eio records jwt config; do
  scratch=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$t/." "$scratch/"
  if UBSAN_OPTIONS=halt_on_error=1 "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECS" \
       -artifact_prefix="$BUILD/artifacts/$t-" -print_final_stats=1 "$scratch" \
       >"$BUILD/artifacts/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$BUILD/artifacts/$t.log" | grep -o '[0-9]*$')
    echo "fuzz_$t: ${runs:-?} runs in ${SECS}s, no crash"
  else
    echo "fuzz_$t: FAILED (see $BUILD/artifacts/$t.log)"; tail -20 "$BUILD/artifacts/$t.log"
    status=1
  fi
  rm -rf "$scratch"
done
exit $status
