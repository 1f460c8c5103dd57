#!/usr/bin/env bash
# Peak RSS of a run that reads a large Parquet object from a local S3 server (moto), next to the
# object's size: shows that only the mapped columns' byte ranges are fetched. The object has a
# wide, incompressible `note` column that the job never maps.
# Usage: benches/s3_rss.sh [ROWS]   (needs the venv from .ci/run and a built binary)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
cache="${CUSTOMER_VALUE_CACHE:-$HOME/.cache/customer-value}"
py="$cache/venv/bin/python"
bin="${CUSTOMER_VALUE_BIN:-${CARGO_TARGET_DIR:-$cache/target}/release/customer-value}"
work="$(mktemp -d)"
trap 'kill $moto_pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" generate --output "$work/g.parquet" --customers $((rows / 8)) --rows "$rows" --seed 3 >/dev/null
"$py" - "$work/g.parquet" "$work/big.parquet" <<'PY'
import os, sys, pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
note = pa.array([os.urandom(200).hex() for _ in range(t.num_rows)])
pq.write_table(t.append_column("note", note), sys.argv[2], compression="zstd", row_group_size=128 * 1024)
PY
port=$("$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$cache/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
"$py" - "$work/big.parquet" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"])
s3.create_bucket(Bucket="rss")
s3.upload_file(sys.argv[1], "rss", "in/big.parquet")
PY
size=$(stat -c %s "$work/big.parquet")
cfg="$work/c.toml"
sed -e "s#^paths = .*#paths = [\"s3://rss/in/big.parquet\"]#" -e "s#^path = \"out\"#path = \"$work/out\"#" config/default.toml > "$cfg"
# s3: the wide object from the server; local: the same file on disk; baseline: the file without
# the note column (what the job really needs to hold).
for where in s3 local baseline; do
  [ "$where" = local ] && sed -i "s#^paths = .*#paths = [\"$work/big.parquet\"]#" "$cfg"
  [ "$where" = baseline ] && sed -i "s#^paths = .*#paths = [\"$work/g.parquet\"]#" "$cfg"
  /usr/bin/time -v "$bin" run --config "$cfg" --as-of 2024-12-31 --no-progress 2> "$work/time.txt" >/dev/null
  rss=$(grep "Maximum resident" "$work/time.txt" | awk '{print $6}')
  wall=$(grep "Elapsed (wall" "$work/time.txt" | awk '{print $8}')
  [ "$where" = baseline ] && size=$(stat -c %s "$work/g.parquet")
  echo "$where: rows=$rows file_bytes=$size peak_rss_kib=$rss wall=$wall"
done
