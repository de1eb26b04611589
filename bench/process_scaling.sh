#!/usr/bin/env bash
# Scaling of `distex process` (built-in summary): time should grow linearly
# with rows and stay flat from 8 to 10,000 regions. Each round runs every
# input once, in turn, so that the noise of a shared machine falls on all of
# them alike. Prints one Markdown row per input (rows, regions, size, median
# and fastest wall time of RUNS runs, MB/s at the median, CPU seconds, peak
# RSS, a check of the output), then the ratios that matter.
# usage: bench/process_scaling.sh [RUNS=5]   (data under $BENCH_DIR, generated if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs python3 time
WORK=${BENCH_DIR:-/var/tmp/distex-bench-process}
mkdir -p "$WORK"
RUNS=${1:-5}
cargo build --release --quiet
DISTEX=${CARGO_TARGET_DIR:-target}/release/distex
SPECS=("1000000 8" "10000000 8" "10000000 10000")
for spec in "${SPECS[@]}"; do
  set -- $spec
  data="$WORK/data-$1-$2.csv"
  [ -s "$data" ] || python3 bench/gen_process_data.py "$data" "$1" "$2"
  cat "$data" > /dev/null
done
log="$WORK/scaling.time"; : > "$log"
for _ in $(seq "$RUNS"); do
  for spec in "${SPECS[@]}"; do
    set -- $spec
    /usr/bin/time -a -o "$log" -f "$1 $2 %e %U %S %M" "$DISTEX" process "$WORK/data-$1-$2.csv" --by region --json > "$WORK/scaling-$1-$2.json"
  done
done
python3 - "$WORK" "$log" <<'PY'
import json, os, statistics, sys
work, log = sys.argv[1], sys.argv[2]
rows = [l.split() for l in open(log) if l.strip()]
print("| rows | regions | size (MB) | median wall (s) | fastest (s) | MB/s | CPU (s) | peak RSS (MB) | records checked |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
median = {}
fastest = {}
for n, regions in [("1000000", "8"), ("10000000", "8"), ("10000000", "10000")]:
    r = [x for x in rows if x[0] == n and x[1] == regions]
    wall = [float(x[2]) for x in r]
    cpu = statistics.median(float(x[3]) + float(x[4]) for x in r)
    rss = max(int(x[5]) for x in r)
    median[(n, regions)], fastest[(n, regions)] = statistics.median(wall), min(wall)
    size = os.path.getsize(f"{work}/data-{n}-{regions}.csv")
    out = json.load(open(f"{work}/scaling-{n}-{regions}.json"))
    a = out["accounting"]
    ok = a["input_records"] == int(n) == a["processed"] and len(out["regions"]) == int(regions)
    check = "ok" if ok else f"MISMATCH {a}"
    m = median[(n, regions)]
    print(f"| {int(n):,} | {int(regions):,} | {size/1e6:.0f} | {m:.2f} | {fastest[(n, regions)]:.2f} | {size/1e6/m:.0f} | {cpu:.2f} | {rss/1024:.0f} | {check} |")
flat = ("10000000", "10000"), ("10000000", "8")
print()
print(f"10,000 regions / 8 regions: {median[flat[0]] / median[flat[1]]:.2f}x (medians), {fastest[flat[0]] / fastest[flat[1]]:.2f}x (fastest runs)")
print(f"10M rows / 1M rows: {median[flat[1]] / median[('1000000', '8')]:.1f}x (medians)")
PY
