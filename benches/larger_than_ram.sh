#!/usr/bin/env bash
# Larger-than-memory benchmark: one `run` over a generated input whose CSV form is
# larger than the machine's memory, with engine.memory_limit_mib = 8192, so the job spills its
# lines to disk by customer partition. Records wall, CPU and peak RSS, the spill size, and
# checks the output: rows_read equals the file's data lines, read = used + rejected + after
# as_of, one customers row per distinct customer_id across the partition's files, and the
# retention identity E = S − churned + reactivated + N on every row (pyarrow reads the files).
# With COMPARE_IN_MEMORY=1 it also runs the same input with every line in memory
# (engine.partitions = 1) and checks that all five tables hold the same rows (only for inputs
# that fit in memory). Prints the figures as a markdown table.
#
# Usage: benches/larger_than_ram.sh [ROWS] [FORMAT] [LIMIT_MIB]
#        e.g. benches/larger_than_ram.sh 450000000 csv 8192   (28 GB of CSV, ~40 GB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-450000000}"
fmt="${2:-csv}"
limit="${3:-8192}"
source benches/common.sh
spill="${CUSTOMER_VALUE_SPILL_DIR:-$work}"
py="$cache/venv/bin/python"
"$py" -c "import pyarrow" 2>/dev/null || { python3 -m venv "$cache/venv"; "$cache/venv/bin/pip" install --quiet pyarrow; }
input=$(bench_input "$rows" "$fmt")
as_of=2025-12-31

config() { # name, [engine] lines → config path
  sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_$1\"#" \
    -e "s#^memory_limit_mib = .*#memory_limit_mib = $limit#" -e "s#^partitions = .*#$2#" \
    -e "s#^spill_dir = .*#spill_dir = \"$spill\"#" config/default.toml > "$work/config_$1.toml"
  rm -rf "$work/out_$1"
  echo "$work/config_$1.toml"
}

big=$(measure ltr_spilled "$bin" run --config "$(config ltr_spilled "partitions = 0")" \
  --as-of $as_of --no-progress --log-format json)
partitions=$(grep -o '"partitions":[0-9]*' "$work/ltr_spilled.log" | head -1 | cut -d: -f2)
spill_mib=$(grep -o '"mib":[0-9]*' "$work/ltr_spilled.log" | head -1 | cut -d: -f2)
[ -n "$partitions" ] || { echo "the run did not spill (raise ROWS or lower LIMIT_MIB)"; exit 1; }
if [ "$fmt" = csv ]; then data_lines=$(( $(wc -l < "$input") - 1 )); else
  data_lines=$("$py" -c "import pyarrow.parquet as pq,sys; print(pq.ParquetFile(sys.argv[1]).metadata.num_rows)" "$input"); fi
"$py" - "$work/out_ltr_spilled" $as_of "$data_lines" <<'PY'
import json, sys
import pyarrow.compute as pc
import pyarrow.parquet as pq
root, as_of, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = json.load(open(f"{root}/_manifests/as_of={as_of}.json"))
assert m["rows_read"] == lines, (m["rows_read"], lines)
assert m["rows_read"] == m["rows_used"] + m["rows_rejected"] + m["rows_after_as_of"]
files = m["tables"]["customers"]["files"]
ids = set()
rows = 0
for f in files:  # one file at a time: the whole table need not fit in memory
    t = pq.read_table(f"{root}/{f['path']}", columns=["customer_id"])
    col = t.column("customer_id").to_pylist()
    assert col == sorted(col), f"{f['path']} is not in customer_id order"
    ids.update(col)
    rows += len(col)
assert rows == len(ids) == m["customers"], (rows, len(ids), m["customers"])
r = pq.read_table(f"{root}/{m['tables']['retention']['files'][0]['path']}")
lhs = r.column("customers_end")
rhs = pc.add(pc.add(pc.subtract(r.column("customers_start"), r.column("churned")),
                    r.column("reactivated")), r.column("customers_new"))
assert pc.all(pc.equal(lhs, rhs)).as_py(), "retention identity fails"
print(f"checked: {lines} rows read, {rows} customers in {len(files)} files, "
      f"{r.num_rows} retention rows with E = S - churned + reactivated + N")
PY
read -r bw bc brss <<< "$big"
line=$(printf "| %s | %s | %s | %s | %s MiB | %s s / %s s / %s MiB |" \
  "$rows" "$fmt" "$(du -hL "$input" | cut -f1)" "$partitions" "$spill_mib" "$bw" "$bc" "$brss")
if [ "${COMPARE_IN_MEMORY:-0}" = 1 ]; then
  mem=$(measure ltr_memory "$bin" run --config "$(config ltr_memory "partitions = 1")" \
    --as-of $as_of --no-progress)
  "$py" - "$work/out_ltr_spilled" "$work/out_ltr_memory" $as_of <<'PY'
import json, sys
import pyarrow as pa
import pyarrow.parquet as pq
def tables(root):
    m = json.load(open(f"{root}/_manifests/as_of={sys.argv[3]}.json"))
    out = {}
    for t, e in m["tables"].items():
        parts = [pq.read_table(f"{root}/{f['path']}") for f in e["files"]]
        tab = pa.concat_tables(parts).replace_schema_metadata(None) if parts else None
        if t == "customers" and tab is not None:
            tab = tab.sort_by("customer_id")
        out[t] = tab
    return out
a, b = tables(sys.argv[1]), tables(sys.argv[2])
for t in a:
    assert (a[t] is None and b[t] is None) or a[t].equals(b[t]), f"table {t} differs"
print("spilled and in-memory runs hold the same five tables")
PY
  read -r mw mc mrss <<< "$mem"
  line="$line $mw s / $mc s / $mrss MiB |"
else
  line="$line not run |"
fi
echo "$line"
{
  echo
  echo "### Larger-than-memory run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo
  echo "Command: \`benches/larger_than_ram.sh $rows $fmt $limit\` (engine.memory_limit_mib = $limit; output checked: row accounting, one row per customer, retention identity)."
  echo
  echo "| rows | format | input size | partitions | spill (compressed) | spilled run (wall / CPU / peak RSS) | in memory (wall / CPU / peak RSS) |"
  echo "|---|---|---|---|---|---|---|"
  echo "$line"
}
