#!/usr/bin/env bash
# The Python package's tests: builds the wheel (maturin, release, abi3), installs it into a
# fresh venv and runs py/tests/test_compute.py there, then into the cached Spark venv (pyspark,
# with a JRE: installed from Debian's packages when missing and run as root) and runs
# py/tests/test_spark.py; both with pytest, against the CLI binary (built here in debug, as
# `cargo test` builds it). Tools and venvs live in the cache, outside the clone. Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CUSTOMER_VALUE_CACHE:-$HOME/.cache/customer-value}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
tools="$cache/venv-maturin"
wheels="$cache/wheels"
venv="$cache/venv-wheel"
spark="$cache/venv-spark"

if [ ! -x "$tools/bin/maturin" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --upgrade pip
  "$tools/bin/pip" install --quiet 'maturin>=1.7,<2'
fi

echo "== wheel (maturin build --release)"
rm -rf "$wheels"
started=$(date +%s)
"$tools/bin/maturin" build --quiet --release --strip -m py/Cargo.toml --out "$wheels"
wheel=$(ls "$wheels"/customer_value-*.whl)
echo "built $(basename "$wheel"): $(( $(stat -c %s "$wheel") / 1024 )) KiB in $(( $(date +%s) - started )) s"

echo "== CLI binary (debug)"
cargo build --quiet --bin customer-value

echo "== fresh venv ($venv) with the wheel"
python3 -m venv --clear "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "$wheel" pytest pandas polars

echo "== pytest py/tests/test_compute.py (fresh venv)"
export CUSTOMER_VALUE_BIN="$CARGO_TARGET_DIR/debug/customer-value"
"$venv/bin/python" -m pytest -q -p no:cacheprovider py/tests/test_compute.py "$@"

echo "== Spark: a JRE and pyspark ($spark)"
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "no java: install a JRE 17 (Debian: openjdk-17-jre-headless)" >&2
  fi
fi
if ! "$spark/bin/python" -c "import pyspark, pandas, pytest" 2>/dev/null; then
  python3 -m venv --clear "$spark"
  "$spark/bin/pip" install --quiet --upgrade pip
  # pandas 3 is not yet supported by pyspark 4.
  "$spark/bin/pip" install --quiet 'pyspark>=3.4' 'pandas<3' pytest
fi
"$spark/bin/pip" install --quiet --force-reinstall --no-deps "$wheel"
"$spark/bin/pip" install --quiet "$wheel"

echo "== pytest py/tests/test_spark.py (pyspark local[2])"
"$spark/bin/python" -m pytest -q -p no:cacheprovider py/tests/test_spark.py "$@"
