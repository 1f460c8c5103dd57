#!/usr/bin/env bash
# A/B benchmark of two builds of the job, side by side in one invocation: the commands that
# benches/compare.sh and benches/backfill.sh time (a run of 10M lines from Parquet and from CSV;
# backfills of 36 month ends with every table, without the customers snapshots, and spilled to 4
# partitions), each run PAIRS times with the baseline and the current build interleaved (the
# order alternates), on the same generated input. Prints the medians and the ratio
# current / baseline per command.
#
# Usage: benches/ab.sh BASELINE_BINARY [ROWS] [PAIRS]
#   e.g. git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release)
#        benches/ab.sh /tmp/base/target/release/customer-value 10000000 3
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(realpath "$1")
rows="${2:-10000000}"
pairs="${3:-3}"
source benches/common.sh
csv=$(bench_input "$rows" csv)
parquet=$(bench_input "$rows" parquet)

config() { # name, input, partitions
  sed -e "s#^paths = .*#paths = [\"$2\"]#" -e "s#^path = \"out\"#path = \"$work/out_ab_$1\"#" \
    -e "s#^partitions = 0#partitions = $3#" -e "s#^max_staleness_days = .*#max_staleness_days = 0#" \
    config/default.toml > "$work/config_ab_$1.toml"
}
config run_parquet "$parquet" 0
config run_csv "$csv" 0
config backfill "$parquet" 0
config spilled "$parquet" 4
bf=(--from 2023-01-01 --to 2025-12-31 --every month --no-progress)
declare -A args=(
  [run_parquet]="run --config $work/config_ab_run_parquet.toml --as-of 2025-12-31 --no-progress"
  [run_csv]="run --config $work/config_ab_run_csv.toml --as-of 2025-12-31 --no-progress"
  [backfill]="backfill --config $work/config_ab_backfill.toml ${bf[*]}"
  [lean]="backfill --config $work/config_ab_backfill.toml ${bf[*]} --tables retention,cohorts,ltv,rejects"
  [spilled]="backfill --config $work/config_ab_spilled.toml ${bf[*]}"
)
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "| command | baseline wall (median of $pairs) | current wall | current / baseline |"
echo "|---|---|---|---|"
for name in run_parquet run_csv backfill lean spilled; do
  : > "$work/ab_$name.base"; : > "$work/ab_$name.new"
  for i in $(seq "$pairs"); do
    order=(base new); [ $((i % 2)) = 0 ] && order=(new base)
    for which in "${order[@]}"; do
      b=$bin; [ "$which" = base ] && b=$base
      warm "$parquet"; warm "$csv"
      # shellcheck disable=SC2086
      read -r w _ _ <<< "$(measure "ab_$name" "$b" ${args[$name]})"
      echo "$w" >> "$work/ab_$name.$which"
    done
  done
  mb=$(median < "$work/ab_$name.base"); mn=$(median < "$work/ab_$name.new")
  printf "| %s | %s s | %s s | %.2f |\n" "$name" "$mb" "$mn" "$(echo "$mn / $mb" | bc -l)"
done
