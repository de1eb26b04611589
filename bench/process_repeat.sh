#!/usr/bin/env bash
# Alternating repeated runs of distex, DuckDB and Polars on the data of
# bench/process.sh (run that first: it writes the data and the Python
# scripts), to see past the noise of a shared machine. Prints the median wall
# time and peak RSS of each.
# usage: bench/process_repeat.sh [RUNS=5] [ROWS=10000000] [REGIONS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs python3 python3-venv time
RUNS=${1:-5}; ROWS=${2:-10000000}; REGIONS=${3:-8}
WORK=${BENCH_DIR:-/var/tmp/distex-bench-process}
DATA="$WORK/data-$ROWS-$REGIONS.csv"
DISTEX=${CARGO_TARGET_DIR:-target}/release/distex
log="$WORK/repeat.log"; : > "$log"
# The scripts bench/process.sh wrote name the data it ran on: point them at this one.
for tool in duckdb polars; do
  sed -E "s#$WORK/data-[0-9]+-[0-9]+\.csv#$DATA#g" "$WORK/out/bench_$tool.py" > "$WORK/repeat_$tool.py"
  grep -q "$DATA" "$WORK/repeat_$tool.py" || { echo "no data path in $WORK/out/bench_$tool.py: run bench/process.sh first" >&2; exit 2; }
done
cat "$DATA" > /dev/null
for _ in $(seq "$RUNS"); do
  /usr/bin/time -a -o "$log" -f "distex %e %M" "$DISTEX" process "$DATA" --by region --json > /dev/null
  /usr/bin/time -a -o "$log" -f "duckdb %e %M" "$WORK/venv/bin/python" "$WORK/repeat_duckdb.py" > /dev/null
  /usr/bin/time -a -o "$log" -f "polars %e %M" "$WORK/venv/bin/python" "$WORK/repeat_polars.py" > /dev/null
done
python3 - "$log" "$(stat -c %s "$DATA")" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
size = int(sys.argv[2])
print("| tool | runs | median wall (s) | min–max (s) | median MB/s | peak RSS (MB) |")
print("|---|---:|---:|---:|---:|---:|")
for tool in ["distex", "duckdb", "polars"]:
    t = [float(r[1]) for r in rows if r[0] == tool]
    m = [int(r[2]) for r in rows if r[0] == tool]
    med = statistics.median(t)
    print(f"| {tool} | {len(t)} | {med:.2f} | {min(t):.2f}–{max(t):.2f} | {size/1e6/med:.0f} | {max(m)/1024:.0f} |")
PY
