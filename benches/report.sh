#!/usr/bin/env bash
# What the HTML report costs over a large run: one run over ROWS generated lines (ROWS/10
# customers, 36 months, a fit per channel and the holdout backtest, so every chart is drawn),
# then `customer-value report` REPEATS times on its published partition; prints the run's wall
# time, the report's median wall time and peak RSS, and the page's size.
#
# Usage: benches/report.sh [ROWS] [REPEATS]   (default 10000000 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
repeats="${2:-5}"
source benches/common.sh
input=$(bench_input "$rows" parquet)
as_of=2025-12-31
config="$work/config_report.toml"
sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_report\"#" \
  -e "s#^max_staleness_days = .*#max_staleness_days = 0#" -e "s#^fit_by = .*#fit_by = \"channel\"#" \
  -e "s#^holdout_days = .*#holdout_days = 90#" config/default.toml > "$config"
grep -q '^holdout_days = 90' "$config"
warm "$input"
read -r run_wall _ _ <<< "$(measure report_run "$bin" run --config "$config" --as-of "$as_of" --no-progress)"
: > "$work/report.wall"
for _ in $(seq "$repeats"); do
  read -r w _ rss <<< "$(measure report_page "$bin" report --config "$config" --as-of "$as_of" \
    --output "$work/report.html")"
  echo "$w $rss" >> "$work/report.wall"
done
median=$(awk '{print $1}' "$work/report.wall" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
rss=$(awk '{print $2}' "$work/report.wall" | sort -n | tail -1)
size=$(stat -c %s "$work/report.html")
customers=$(grep -o '"customers": [0-9]*' "$work/out_report/_manifests/as_of=$as_of.json" | head -1)
echo "| $rows lines ($customers) | wall |"
echo "|---|---|"
echo "| run (predictions per channel, holdout 90 days) | $run_wall s |"
echo "| report, median of $repeats | $median s (peak RSS $rss MiB) |"
echo "| page size | $size bytes |"
