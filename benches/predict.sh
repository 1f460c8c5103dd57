#!/usr/bin/env bash
# What predictions cost: runs over the same generated input (ROWS lines, ROWS/10 customers, 36
# months) with `[predict]` on (a fit per channel, fit_by = "channel") and off, interleaved PAIRS
# times in one invocation; prints the median wall times and their ratio, the fit time of every
# group with its unique (x, t_x, T) triples, then one run with model = "pareto_nbd" and its fit
# times, and then `lifetimes` fitting the same customers (benches/reference.py lifetimes) with
# the ratio of its time to ours.
#
# Usage: benches/predict.sh [ROWS] [PAIRS]   (default 10000000 3)
# lifetimes runs from $LIFETIMES_PYTHON (default ~/.cache/customer-value/venv-bench/bin/python,
# created with `pip install lifetimes pyarrow` when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
pairs="${2:-3}"
source benches/common.sh
input=$(bench_input "$rows" parquet)
as_of=2025-12-31

config() { # name, enabled, fit_by, model
  sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_predict_$1\"#" \
    -e "s#^max_staleness_days = .*#max_staleness_days = 0#" -e "s#^enabled = true#enabled = $2#" \
    -e "s#^fit_by = .*#fit_by = \"$3\"#" -e "s#^model = .*#model = \"$4\"#" \
    config/default.toml > "$work/config_predict_$1.toml"
  grep -q "^enabled = $2" "$work/config_predict_$1.toml"
  grep -q "^model = \"$4\"" "$work/config_predict_$1.toml"
}
config on true channel bg_nbd
config off false all bg_nbd
config pareto true channel pareto_nbd

fits() { # log
  echo "| group | customers | unique triples | fit ms |"
  echo "|---|---|---|---|"
  grep 'Fitted a group' "$1" | sed -E \
    's/.*segment_by="?([^" ]+)"? segment="?([^" ]+)"? customers=([0-9]+) unique_triples=([0-9]+) ms=([0-9]+)(\.[0-9])?.*/| \1=\2 | \3 | \4 | \5\6 |/'
  grep 'Fitted the prediction models' "$1" | sed -E 's/.*groups/all groups:/'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
export CUSTOMER_VALUE_LOG="info,customer_value::metrics::predictions=debug"
: > "$work/predict_on.wall"; : > "$work/predict_off.wall"
for i in $(seq "$pairs"); do
  order=(on off); [ $((i % 2)) = 0 ] && order=(off on)
  for which in "${order[@]}"; do
    warm "$input"
    read -r w _ _ <<< "$(measure "predict_$which" "$bin" run --config "$work/config_predict_$which.toml" \
      --as-of "$as_of" --no-progress)"
    [[ "$w" =~ ^[0-9.]+$ ]] || { echo "predictions $which: the run failed"; tail -3 "$work/predict_$which.log"; exit 1; }
    echo "$w" >> "$work/predict_$which.wall"
  done
done
on=$(median < "$work/predict_on.wall"); off=$(median < "$work/predict_off.wall")
echo "| run over $rows lines (median of $pairs) | wall |"
echo "|---|---|"
echo "| predictions off | $off s |"
echo "| predictions on (fit per channel) | $on s |"
printf "| on / off | %.3f |\n" "$(echo "$on / $off" | bc -l)"
echo
echo "Fits of the last run with predictions on (debug log):"
fits "$work/predict_on.log"
warm "$input"
read -r w _ _ <<< "$(measure predict_pareto "$bin" run --config "$work/config_predict_pareto.toml" \
  --as-of "$as_of" --no-progress)"
[[ "$w" =~ ^[0-9.]+$ ]] || { echo "pareto_nbd: the run failed"; tail -3 "$work/predict_pareto.log"; exit 1; }
echo
echo "One run with model = \"pareto_nbd\": $w s. Its fits (Pareto/NBD + Gamma-Gamma):"
fits "$work/predict_pareto.log"
ours=$(grep 'Fitted a group' "$work/predict_on.log" | grep 'segment_by="\?all' | sed -E 's/.*ms=([0-9.]+).*/\1/')

py="${LIFETIMES_PYTHON:-$cache/venv-bench/bin/python}"
if ! "$py" -c "import lifetimes, pyarrow" 2>/dev/null; then
  python3 -m venv "$cache/venv-bench"
  "$cache/venv-bench/bin/pip" install --quiet lifetimes pyarrow
  py="$cache/venv-bench/bin/python"
fi
echo
echo "lifetimes on the same customers (all), as of $as_of:"
"$py" benches/reference.py lifetimes "$work/out_predict_on" "$as_of" | tee "$work/predict_lifetimes.log"
theirs=$(sed -nE 's/^lifetimes fit seconds: BG\/NBD ([0-9.]+).*/\1/p' "$work/predict_lifetimes.log")
printf "BG/NBD fit of all: ours %.1f ms, lifetimes %.1f s: lifetimes / ours = %.0f\n" \
  "$ours" "$theirs" "$(echo "$theirs * 1000 / $ours" | bc -l)"
