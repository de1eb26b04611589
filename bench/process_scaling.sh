#!/usr/bin/env bash
# Scaling of `distex process` (built-in summary): time should grow linearly
# with rows and stay flat from 8 to 10,000 regions. Prints one Markdown row
# per input: rows, regions, size, median wall time of RUNS runs, MB/s, peak RSS.
# usage: bench/process_scaling.sh [RUNS=5]   (data under $BENCH_DIR, generated if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_DIR:-/var/tmp/distex-bench-process}
mkdir -p "$WORK"
RUNS=${1:-5}
cargo build --release --quiet
DISTEX=${CARGO_TARGET_DIR:-target}/release/distex
echo "| rows | regions | size (MB) | median wall (s) of $RUNS | MB/s | peak RSS (MB) | records checked |"
echo "|---:|---:|---:|---:|---:|---:|---|"
for spec in "1000000 8" "10000000 8" "10000000 10000"; do
  set -- $spec
  data="$WORK/data-$1-$2.csv"
  [ -s "$data" ] || python3 bench/gen_process_data.py "$data" "$1" "$2"
  cat "$data" > /dev/null
  : > "$WORK/scaling.time"
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -a -f "%e %M" -o "$WORK/scaling.time" "$DISTEX" process "$data" --by region --json > "$WORK/scaling.json"
  done
  read -r wall rss < <(python3 -c "import statistics; t=[l.split() for l in open('$WORK/scaling.time')]; print(statistics.median(float(a) for a,_ in t), max(int(b) for _,b in t))")
  size=$(stat -c %s "$data")
  check=$(python3 -c "import json,sys; r=json.load(open('$WORK/scaling.json')); a=r['accounting']; print('ok' if a['input_records']==$1==a['processed'] and len(r['regions'])==$2 else 'MISMATCH %s' % a)")
  python3 -c "print(f'| {$1:,} | {$2:,} | {$size/1e6:.0f} | {$wall} | {$size/1e6/$wall:.0f} | {$rss/1024:.0f} | $check |')"
done
