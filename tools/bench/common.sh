# Shared by the benchmark scripts in tools/bench (sourced, not run).
#   bench_build          configure (once) and build the junction binary in build-bench
#   bench_start_sim ARGS start the simulator on a loopback ephemeral port; sets SIM_URL
#                        and SIM_PID; stopped by bench_cleanup (installed as EXIT trap)
#   bench_json FILE KEY  print field KEY of the JSON object on the last line of FILE

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_BUILD_DIR="$BENCH_ROOT/build-bench"
JUNCTION_BIN="$BENCH_BUILD_DIR/junction"
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/junction-bench.XXXXXX")
SIM_PID=""

bench_cleanup() {
  if [[ -n "$SIM_PID" ]] && kill -0 "$SIM_PID" 2>/dev/null; then
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# Release build of the binary only (no tests: they are not what is measured).
# The incremental build is a no-op when nothing changed, so a stale binary is
# always rebuilt.
bench_build() {
  if [[ ! -f "$BENCH_BUILD_DIR/CMakeCache.txt" ]]; then
    cmake -S "$BENCH_ROOT" -B "$BENCH_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
      -DJUNCTION_TESTS=OFF >"$BENCH_TMP/configure.log" 2>&1 ||
      { cat "$BENCH_TMP/configure.log" >&2; return 1; }
  fi
  cmake --build "$BENCH_BUILD_DIR" -j"$(nproc 2>/dev/null || echo 2)" --target junction \
    >"$BENCH_TMP/build.log" 2>&1 || { cat "$BENCH_TMP/build.log" >&2; return 1; }
}

bench_start_sim() {
  node "$BENCH_ROOT/tools/simulator/server.js" --host 127.0.0.1 --port 0 "$@" \
    >"$BENCH_TMP/sim.out" 2>"$BENCH_TMP/sim.err" </dev/null &
  SIM_PID=$!
  local port="" i
  for ((i = 0; i < 300; i++)); do
    port=$(sed -n 's/^LISTENING \([0-9]*\)$/\1/p' "$BENCH_TMP/sim.out")
    [[ -n "$port" ]] && break
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z "$port" ]]; then
    echo "bench: the simulator did not start:" >&2
    cat "$BENCH_TMP/sim.err" >&2
    return 1
  fi
  SIM_URL="http://127.0.0.1:$port"
}

bench_json() {
  node -e '
    const fs = require("fs");
    const lines = fs.readFileSync(process.argv[1], "utf8").trim().split("\n");
    const v = JSON.parse(lines[lines.length - 1])[process.argv[2]];
    process.stdout.write(v === undefined ? "" : String(v));
  ' "$1" "$2"
}
