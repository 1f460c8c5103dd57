#!/usr/bin/env bash
# Backfill benchmark (issue 5 target): one `run` as of the last date against a `backfill` of
# every month end over the generated input's 36 months, side by side in one invocation, on the
# same file; prints wall, CPU and peak RSS of both and the ratio, and appends them to
# benches/RESULTS.md.
#
# Usage: benches/backfill.sh [ROWS] [FORMAT]     e.g. benches/backfill.sh 10000000 parquet
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
fmt="${2:-parquet}"
source benches/common.sh
input=$(bench_input "$rows" "$fmt")


for kind in run backfill; do
  rm -rf "$work/out_bf_$kind"
  sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_bf_$kind\"#" \
    config/default.toml > "$work/config_bf_$kind.toml"
done
one=$(measure bf_run "$bin" run --config "$work/config_bf_run.toml" --as-of 2025-12-31 --no-progress)
all=$(measure bf_backfill "$bin" backfill --config "$work/config_bf_backfill.toml" \
  --from 2023-01-01 --to 2025-12-31 --every month --no-progress)
dates=$(ls "$work/out_bf_backfill/_manifests" | wc -l)
# The backfill's last date must hold the same tables as the single run (pyarrow compares them).
py="$cache/venv/bin/python"
"$py" -c "import pyarrow" 2>/dev/null || { python3 -m venv "$cache/venv"; "$cache/venv/bin/pip" install --quiet pyarrow; }
"$py" - "$work/out_bf_run" "$work/out_bf_backfill" <<'PY'
import json, sys
import pyarrow.parquet as pq
def tables(root):
    m = json.load(open(f"{root}/_manifests/as_of=2025-12-31.json"))
    return {t: pq.read_table(f"{root}/{e['files'][0]['path']}") if e["files"] else None
            for t, e in m["tables"].items()}
a, b = tables(sys.argv[1]), tables(sys.argv[2])
assert a.keys() == b.keys()
for t in a:
    same = (a[t] is None and b[t] is None) or a[t].equals(b[t])
    assert same, f"table {t}: backfill's last date differs from the single run"
PY
read -r ow oc orss <<< "$one"; read -r bw bc brss <<< "$all"
line=$(printf "| %s | %s | %s s / %s s / %s MiB | %s | %s s / %s s / %s MiB | %.2f |" \
  "$rows" "$fmt" "$ow" "$oc" "$orss" "$dates" "$bw" "$bc" "$brss" "$(echo "$bw / $ow" | bc -l)")
echo "$line"
{
  echo
  echo "### Backfill run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo
  echo "Command: \`benches/backfill.sh $rows $fmt\` (run as of 2025-12-31 vs backfill --from 2023-01-01 --to 2025-12-31 --every month)."
  echo
  echo "| rows | format | one run (wall / CPU / peak RSS) | dates | backfill (wall / CPU / peak RSS) | backfill / run wall |"
  echo "|---|---|---|---|---|---|"
  echo "$line"
} >> benches/RESULTS.md
