# Shared by the benchmark scripts (sourced after `cd` to the repository root): where things go,
# the release build, the generated input, and the timing helper.
cache="${CUSTOMER_VALUE_CACHE:-$HOME/.cache/customer-value}"
target="${CARGO_TARGET_DIR:-$cache/target}"  # the same build cache as .ci/run: no second polars build
work="${CUSTOMER_VALUE_BENCH_DIR:-benches/work}"
mkdir -p "$work"
# CUSTOMER_VALUE_BENCH_BIN: a release binary built already (skips the build, e.g. while the
# tree's dependencies are mid-change); default: build this tree in release.
if [ -n "${CUSTOMER_VALUE_BENCH_BIN:-}" ]; then
  bin="$CUSTOMER_VALUE_BENCH_BIN"
else
  CARGO_TARGET_DIR="$target" cargo build --release --quiet
  bin="$target/release/customer-value"
fi

# The benchmark input of ROWS rows in FORMAT (ROWS/10 customers, 36 months from 2023-01, seed
# 1), generated once into $work; prints its path.
bench_input() { # rows, format
  local input="$work/tx_$1.$2"
  [ -f "$input" ] || "$bin" generate --output "$input" --customers $(($1 / 10)) --rows "$1" \
    --seed 1 --start 2023-01-01 --months 36 > /dev/null
  echo "$input"
}

# Reads a file through the page cache before a timed command. Without it the first command of a
# script could read its input from disk (after a larger run had evicted it) and the next ones
# from memory: compare.sh measured ours first, and twice lost about a second to that
# (6.41 s wall against 8.46 s of CPU on 2 cores).
warm() { cat "$1" > /dev/null; }

measure() { # name, command... → "wall_s cpu_s rss_mib"
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/$name.time" "$@" > "$work/$name.log" 2>&1 || {
    echo "$name failed:"; tail -5 "$work/$name.log"; exit 1; }
  awk '{printf "%.2f %.2f %.0f\n", $1, $2 + $3, $4 / 1024}' "$work/$name.time"
}
