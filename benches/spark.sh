#!/usr/bin/env bash
# The job on Apache Spark (pyspark local[2], the wheel in ~/.cache/customer-value/venv-spark)
# side by side with the CLI on the same generated input (ROWS lines, ROWS/10 customers, 36
# months, Parquet), predictions on; prints both wall times, their ratio, and the Spark run's
# per-task figures from its manifest (rows, time to receive the shuffled rows, fold time).
#
# Usage: benches/spark.sh [ROWS] [PARTITIONS]   (default 10000000 4)
# Needs py/test.sh to have run once (it builds the wheel and the Spark venv).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
parts="${2:-4}"
source benches/common.sh
input=$(bench_input "$rows" parquet)
as_of=2025-12-31
spark_py="$cache/venv-spark/bin/python"
"$spark_py" -m pip install --quiet --force-reinstall --no-deps "$cache"/wheels/customer_value-*.whl

for which in cli spark; do
  sed -e "s#^paths = .*#paths = [\"$input\"]#" -e "s#^path = \"out\"#path = \"$work/out_$which\"#" \
    -e "s#^max_staleness_days = .*#max_staleness_days = 0#" \
    config/default.toml > "$work/config_$which.toml"
  rm -rf "$work/out_$which"
done

cat > "$work/spark_run.py" <<PY
import os, sys, time
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
import customer_value.spark as cvs
t0 = time.time()
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "8g").config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
t1 = time.time()
print(cvs.run(spark, "$work/config_spark.toml", as_of="$as_of", partitions=$parts)[0])
print(f"session {t1 - t0:.2f} s, run {time.time() - t1:.2f} s")
PY

warm "$input"
read -r cli_w cli_cpu cli_rss <<< "$(measure spark_cli "$bin" run --config "$work/config_cli.toml" --as-of "$as_of" --no-progress)"
warm "$input"
read -r spark_w spark_cpu _ <<< "$(measure spark_spark "$spark_py" "$work/spark_run.py")"
echo "rows $rows, Spark local[2] with $parts customer partitions"
echo "CLI:   ${cli_w} s wall, ${cli_cpu} s CPU, ${cli_rss} MiB"
echo "Spark: ${spark_w} s wall (the driver's CPU alone: ${spark_cpu} s; $(tail -1 "$work/spark_spark.log"))"
awk -v a="$spark_w" -v b="$cli_w" 'BEGIN { printf "Spark / CLI: %.2f\n", a / b }'
"$spark_py" - "$work/out_spark/_manifests/as_of=$as_of.json" "$work/out_cli/_manifests/as_of=$as_of.json" <<'PY'
import json, sys
spark, cli = (json.load(open(p)) for p in sys.argv[1:3])
print("Spark run timings (ms):", dict(spark["timings_ms"]))
for k in ("rows_read", "rows_used", "customers", "orders"):
    assert spark[k] == cli[k], (k, spark[k], cli[k])
print("same accounting as the CLI:", {k: spark[k] for k in ("rows_read", "rows_used", "customers", "orders")})
PY
