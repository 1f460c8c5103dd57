#!/usr/bin/env bash
# The Python package's tests: builds the wheel (maturin, release, abi3), installs it into a
# fresh venv with the test dependencies, and runs py/tests with pytest against the CLI binary
# (built here in debug, as `cargo test` builds it). Tools and the venv live in the cache, outside
# the clone. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CUSTOMER_VALUE_CACHE:-$HOME/.cache/customer-value}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
tools="$cache/venv-maturin"
wheels="$cache/wheels"
venv="$cache/venv-wheel"

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

echo "== pytest py/tests"
CUSTOMER_VALUE_BIN="$CARGO_TARGET_DIR/debug/customer-value" "$venv/bin/python" -m pytest -q py/tests "$@"
