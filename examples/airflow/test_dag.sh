#!/usr/bin/env bash
# Opt-in check of the Airflow DAG with real Airflow (too heavy for every CI run: it installs
# apache-airflow into its own venv, a few hundred packages). Runs `airflow dags test` of
# customer_value_daily for one logical date on the bundled sample and checks the partition it
# wrote. Usage: examples/airflow/test_dag.sh [YYYY-MM-DD]
set -euo pipefail
cd "$(dirname "$0")/../.."
day="${1:-2024-12-31}"
cache="${CUSTOMER_VALUE_CACHE:-$HOME/.cache/customer-value}"
venv="$cache/airflow-venv"
target="${CARGO_TARGET_DIR:-$cache/target}"
[ -x "$venv/bin/airflow" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install --quiet apache-airflow; }
CARGO_TARGET_DIR="$target" cargo build --quiet
home="$(mktemp -d)"
out="$home/out"
sed "s#^path = \"out\"#path = \"$out\"#" config/default.toml > "$home/config.toml"
export AIRFLOW_HOME="$home/airflow" AIRFLOW__CORE__DAGS_FOLDER="$PWD/examples/airflow" \
  AIRFLOW__CORE__LOAD_EXAMPLES=False CUSTOMER_VALUE_BIN="$target/debug/customer-value" \
  CUSTOMER_VALUE_CONFIG="$home/config.toml"
"$venv/bin/airflow" db migrate > "$home/migrate.log" 2>&1
"$venv/bin/airflow" dags test customer_value_daily "$day" > "$home/dags_test.log" 2>&1 || {
  tail -40 "$home/dags_test.log"; exit 1; }
manifest="$out/_manifests/as_of=$day.json"
test -f "$manifest" || { echo "FAILED: no manifest $manifest"; tail -40 "$home/dags_test.log"; exit 1; }
grep -q '"status": "complete"' "$manifest"
ls "$out/customers/as_of=$day/"*.parquet > /dev/null
echo "airflow dags test customer_value_daily $day: partition as_of=$day written ($(grep -o '"rows_used": [0-9]*' "$manifest" | tail -1))"
rm -rf "$home"
