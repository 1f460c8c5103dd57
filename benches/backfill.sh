#!/usr/bin/env bash
# Backfill benchmark (issue 5 target): one `run` as of the last date against a `backfill` of
# every month end over the generated input's 36 months, side by side in one invocation, on the
# same file; then the same backfill without the per-customer snapshots (`--tables` all but
# customers). Prints wall, CPU and peak RSS of each and the ratios to the run, and appends them
# to benches/RESULTS.md.
#
# Usage: benches/backfill.sh [ROWS] [FORMAT]     e.g. benches/backfill.sh 10000000 parquet
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
fmt="${2:-parquet}"
source benches/common.sh
input=$(bench_input "$rows" "$fmt")


for kind in run backfill lean; do
  rm -rf "$work/out_bf_$kind"
  sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_bf_$kind\"#" \
    config/default.toml > "$work/config_bf_$kind.toml"
done
one=$(measure bf_run "$bin" run --config "$work/config_bf_run.toml" --as-of 2025-12-31 --no-progress)
all=$(measure bf_backfill "$bin" backfill --config "$work/config_bf_backfill.toml" \
  --from 2023-01-01 --to 2025-12-31 --every month --no-progress)
# The same backfill writing every table but the per-customer snapshots (--tables).
lean=$(measure bf_lean "$bin" backfill --config "$work/config_bf_lean.toml" \
  --from 2023-01-01 --to 2025-12-31 --every month --no-progress \
  --tables retention,cohorts,ltv,rejects)
dates=$(ls "$work/out_bf_backfill/_manifests" | wc -l)
# The backfill's last date must hold the same tables as the single run (pyarrow compares them).
py="$cache/venv/bin/python"
"$py" -c "import pyarrow" 2>/dev/null || { python3 -m venv "$cache/venv"; "$cache/venv/bin/pip" install --quiet pyarrow; }
"$py" - "$work/out_bf_run" "$work/out_bf_backfill" "$work/out_bf_lean" <<'PY'
import json, sys
import pyarrow.parquet as pq
def tables(root):
    m = json.load(open(f"{root}/_manifests/as_of=2025-12-31.json"))
    return {t: pq.read_table(f"{root}/{e['files'][0]['path']}") if e["files"] else None
            for t, e in m["tables"].items()}
a, b, lean = tables(sys.argv[1]), tables(sys.argv[2]), tables(sys.argv[3])
assert a.keys() == b.keys()
assert sorted(lean) == ["cohorts", "ltv", "rejects", "retention"], sorted(lean)
for other, name in ((b, "backfill"), (lean, "backfill without customers")):
    for t in other:
        same = (a[t] is None and other[t] is None) or a[t].equals(other[t])
        assert same, f"table {t}: the {name}'s last date differs from the single run"
PY
read -r ow oc orss <<< "$one"; read -r bw bc brss <<< "$all"; read -r lw lc lrss <<< "$lean"
line=$(printf "| %s | %s | %s s / %s s / %s MiB | %s | %s s / %s s / %s MiB | %.2f | %s s / %s s / %s MiB | %.2f |" \
  "$rows" "$fmt" "$ow" "$oc" "$orss" "$dates" "$bw" "$bc" "$brss" "$(echo "$bw / $ow" | bc -l)" \
  "$lw" "$lc" "$lrss" "$(echo "$lw / $ow" | bc -l)")
echo "$line"
{
  echo
  echo "### Backfill run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo
  echo "Command: \`benches/backfill.sh $rows $fmt\` (run as of 2025-12-31 vs backfill --from 2023-01-01 --to 2025-12-31 --every month, with all tables and with \`--tables retention,cohorts,ltv,rejects\`)."
  echo
  echo "| rows | format | one run (wall / CPU / peak RSS) | dates | backfill, all tables (wall / CPU / peak RSS) | backfill / run wall | backfill without customers (wall / CPU / peak RSS) | that / run wall |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "$line"
} >> benches/RESULTS.md
