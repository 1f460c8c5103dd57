#!/usr/bin/env bash
# Backfill benchmark: one `run` as of the last date against a `backfill` of
# every month end over the generated input's 36 months, side by side in one invocation, on the
# same file; then the same backfill without the per-customer snapshots (`--tables` all but
# customers), and the full backfill with the lines spilled to disk in 4 customer partitions (as
# for an input larger than memory). Then, as a floor under the full backfill, the time the job's
# Parquet writer takes to write the backfill's customers snapshots again from memory, with nothing
# else to do (examples/encode_floor.rs), and the same with pyarrow as the writer. Prints wall, CPU and peak RSS of each and the ratios to
# the run, and prints them as a markdown table (benches/RESULTS.md keeps the current figures).
#
# Usage: benches/backfill.sh [ROWS] [FORMAT]     e.g. benches/backfill.sh 10000000 parquet
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
fmt="${2:-parquet}"
source benches/common.sh
input=$(bench_input "$rows" "$fmt")


for kind in run backfill lean spilled; do
  rm -rf "$work/out_bf_$kind"
  parts=0; [ "$kind" = spilled ] && parts=4
  sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_bf_$kind\"#" \
    -e "s#^partitions = 0#partitions = $parts#" config/default.toml > "$work/config_bf_$kind.toml"
done
warm "$input"
one=$(measure bf_run "$bin" run --config "$work/config_bf_run.toml" --as-of 2025-12-31 --no-progress)
warm "$input"
all=$(measure bf_backfill "$bin" backfill --config "$work/config_bf_backfill.toml" \
  --from 2023-01-01 --to 2025-12-31 --every month --no-progress)
# The same backfill writing every table but the per-customer snapshots (--tables).
warm "$input"
lean=$(measure bf_lean "$bin" backfill --config "$work/config_bf_lean.toml" \
  --from 2023-01-01 --to 2025-12-31 --every month --no-progress \
  --tables retention,cohorts,ltv,rejects)
warm "$input"
spilled=$(measure bf_spilled "$bin" backfill --config "$work/config_bf_spilled.toml" \
  --from 2023-01-01 --to 2025-12-31 --every month --no-progress)
dates=$(ls "$work/out_bf_backfill/_manifests" | wc -l)
CARGO_TARGET_DIR="$target" cargo build --release --quiet --example encode_floor
# The backfill's last date must hold the same tables as the single run (pyarrow compares them;
# a spilled customers partition is one file per customer partition, so rows are sorted first).
py="$cache/venv/bin/python"
"$py" -c "import pyarrow" 2>/dev/null || { python3 -m venv "$cache/venv"; "$cache/venv/bin/pip" install --quiet pyarrow; }
"$py" - "$work/out_bf_run" "$work/out_bf_backfill" "$work/out_bf_lean" "$work/out_bf_spilled" <<'PY'
import json, sys
import pyarrow as pa
import pyarrow.parquet as pq
def tables(root):
    m = json.load(open(f"{root}/_manifests/as_of=2025-12-31.json"))
    out = {}
    for t, e in m["tables"].items():
        parts = [pq.read_table(f"{root}/{f['path']}") for f in e["files"]]
        table = pa.concat_tables(parts) if parts else None
        if t == "customers" and table is not None:
            table = table.sort_by("customer_id")
        out[t] = table
    return out
a, b, lean, spilled = (tables(r) for r in sys.argv[1:5])
assert a.keys() == b.keys() == spilled.keys()
assert sorted(lean) == ["cohorts", "ltv", "rejects", "retention"], sorted(lean)
for other, name in ((b, "backfill"), (lean, "backfill without customers"), (spilled, "spilled backfill")):
    for t in other:
        same = (a[t] is None and other[t] is None) or a[t].equals(other[t])
        assert same, f"table {t}: the {name}'s last date differs from the single run"
PY
# The floor: the backfill's customers snapshots written again, from memory, with the job's writer.
read -r fw fc _ <<< "$("$target/release/examples/encode_floor" "$work" "$work"/out_bf_backfill/customers/*/*.parquet)"
# The same floor with pyarrow (Arrow C++) as the writer, with the job's settings: zstd level 1,
# dictionaries but for floats, timestamps and customer_id, page statistics and index.
read -r pw pc <<< "$("$py" - "$work/floor_pyarrow.parquet" "$work"/out_bf_backfill/customers/*/*.parquet <<'PY'
import os, resource, sys, time
import pyarrow as pa
import pyarrow.parquet as pq
out, files = sys.argv[1], sys.argv[2:]
tables = [pq.read_table(f) for f in files]
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
plain = lambda f: pa.types.is_floating(f.type) or pa.types.is_timestamp(f.type) or f.name == "customer_id"
start, cpu0 = time.time(), cpu()
for t in tables:
    pq.write_table(t, out, compression="zstd", compression_level=1, row_group_size=1 << 20,
                   use_dictionary=[f.name for f in t.schema if not plain(f)],
                   write_statistics=True, write_page_index=True)
    with open(out, "rb") as f:
        os.fsync(f.fileno())
print(f"{time.time() - start:.2f} {cpu() - cpu0:.2f}")
os.remove(out)
PY
)"
read -r ow oc orss <<< "$one"; read -r bw bc brss <<< "$all"; read -r lw lc lrss <<< "$lean"
read -r sw sc srss <<< "$spilled"
line=$(printf "| %s | %s | %s s / %s s / %s MiB | %s | %s s / %s s / %s MiB | %.2f | %s s / %s s | %.2f | %s s / %s s | %s s / %s s / %s MiB | %.2f | %s s / %s s / %s MiB | %.2f |" \
  "$rows" "$fmt" "$ow" "$oc" "$orss" "$dates" "$bw" "$bc" "$brss" "$(echo "$bw / $ow" | bc -l)" \
  "$fw" "$fc" "$(echo "$fw / $ow" | bc -l)" "$pw" "$pc" \
  "$lw" "$lc" "$lrss" "$(echo "$lw / $ow" | bc -l)" "$sw" "$sc" "$srss" "$(echo "$sw / $ow" | bc -l)")
echo "$line"
{
  echo
  echo "### Backfill run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo
  echo "Command: \`benches/backfill.sh $rows $fmt\` (run as of 2025-12-31 vs backfill --from 2023-01-01 --to 2025-12-31 --every month, with all tables, with \`--tables retention,cohorts,ltv,rejects\`, and with all tables spilled to 4 partitions; the floor is examples/encode_floor.rs writing the full backfill's customers files again from memory, and pyarrow doing the same)."
  echo
  echo "| rows | format | one run (wall / CPU / peak RSS) | dates | backfill, all tables (wall / CPU / peak RSS) | backfill / run wall | floor: its customers files written alone (wall / CPU) | floor / run wall | the same floor with pyarrow (wall / CPU) | backfill without customers (wall / CPU / peak RSS) | that / run wall | spilled backfill, 4 partitions (wall / CPU / peak RSS) | that / run wall |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  echo "$line"
}
