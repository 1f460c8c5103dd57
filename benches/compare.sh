#!/usr/bin/env bash
# Side-by-side benchmark: our release binary vs the same retention and cohorts tables
# computed by a hand-written DuckDB SQL script and by Python Polars (benches/reference.py), on the
# same generated files, in one run. Checks that all three agree before reporting any time, then
# prints wall time, CPU time and peak RSS for each, and the ratios, as a markdown table
# (benches/RESULTS.md keeps the current figures). Our run has `[predict]` off.
#
# Usage: benches/compare.sh [ROWS] [FORMATS]     e.g. benches/compare.sh 10000000 "parquet csv"
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
formats="${2:-parquet csv}"
source benches/common.sh
venv="$cache/venv"

if ! "$venv/bin/python" -c "import duckdb, polars, pyarrow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb polars pyarrow
fi
py="$venv/bin/python"
as_of=2025-12-31

results=()
for fmt in $formats; do
  input=$(bench_input "$rows" "$fmt")
  # Predictions off: the references compute no models (benches/predict.sh measures them).
  sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_$fmt\"#" \
    -e "s#^enabled = true#enabled = false#" config/default.toml > "$work/config_$fmt.toml"
  warm "$input"
  ours=$(measure "ours_$fmt" "$bin" run --config "$work/config_$fmt.toml" --as-of $as_of --no-progress)
  warm "$input"
  duck=$(measure "duckdb_$fmt" "$py" benches/reference.py duckdb "$input" $as_of "$work/duckdb_$fmt")
  warm "$input"
  pola=$(measure "polars_$fmt" "$py" benches/reference.py polars "$input" $as_of "$work/polars_$fmt")
  for ref in duckdb polars; do
    "$py" benches/reference.py compare "$work/out_$fmt" $as_of "$work/${ref}_$fmt" \
      || { echo "ours and $ref disagree on $fmt: no times reported"; exit 1; }
  done
  read -r ow oc orss <<< "$ours"; read -r dw dc drss <<< "$duck"; read -r pw pc prss <<< "$pola"
  line=$(printf "| %s | %s | %s s / %s s / %s MiB | %s s / %s s / %s MiB | %s s / %s s / %s MiB | %.2f | %.2f |" \
    "$rows" "$fmt" "$ow" "$oc" "$orss" "$dw" "$dc" "$drss" "$pw" "$pc" "$prss" \
    "$(echo "$ow / $dw" | bc -l)" "$(echo "$ow / $pw" | bc -l)")
  echo "$line"
  results+=("$line")
done

{
  echo
  echo "### Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo
  echo "Command: \`benches/compare.sh $rows \"$formats\"\` (as_of $as_of; all three agree on retention and cohorts)."
  echo
  echo "| rows | format | ours (wall / CPU / peak RSS) | DuckDB | Polars | ours/DuckDB wall | ours/Polars wall |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${results[@]}"
}
