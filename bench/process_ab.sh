#!/usr/bin/env bash
# A/B benchmark of two distex binaries on the data of bench/process.sh (the
# built-in per-region summary of a CSV with quoted commas, quotes and
# newlines): for a change that must not change speed, such as a reshape.
# Each round runs both binaries on both paths (the default split, which is
# byte ranges on this much data, and --split regions), the order of the
# two binaries swapped every round so that a load that drifts (a shared
# machine) weighs on both alike. Every run's JSON report is checked
# against the other binary's: the same bytes once the clock figures
# (`elapsed_ms`, `at_ms`) are set aside. Prints the median wall time,
# range, CPU time (user + system: less swayed by other load than wall
# time) and peak RSS of each binary on each path, and the median of the
# new/old ratios of the runs of each round (a pair runs back to back).
#
# usage: bench/process_ab.sh OLD_DISTEX NEW_DISTEX [RUNS=7] [ROWS=10000000] [REGIONS=8]
# needs: python3, apt: time
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs python3 time
[ $# -ge 2 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
OLD=$1; NEW=$2; RUNS=${3:-7}; ROWS=${4:-10000000}; REGIONS=${5:-8}
for bin in "$OLD" "$NEW"; do [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }; done
WORK=${BENCH_DIR:-/var/tmp/distex-bench-process}
mkdir -p "$WORK"
DATA="$WORK/data-$ROWS-$REGIONS.csv"
[ -s "$DATA" ] || { echo "generating $DATA"; python3 bench/gen_process_data.py "$DATA" "$ROWS" "$REGIONS"; }
OUT="$WORK/ab"; rm -rf "$OUT"; mkdir -p "$OUT"
log="$OUT/times.log"; : > "$log"

# one NAME BIN SPLIT ROUND: a timed run; its report kept for the check.
one() {
  local name=$1 bin=$2 split=$3 round=$4
  /usr/bin/time -a -o "$log" -f "$name $split %e %M %U %S" \
    "$bin" process "$DATA" --by region --json --split "$split" > "$OUT/$name-$split-$round.json"
}

cat "$DATA" > /dev/null # from the page cache, for every run alike
for round in $(seq "$RUNS"); do
  for split in auto regions; do
    if [ $((round % 2)) -eq 1 ]; then
      one old "$OLD" "$split" "$round"; one new "$NEW" "$split" "$round"
    else
      one new "$NEW" "$split" "$round"; one old "$OLD" "$split" "$round"
    fi
  done
done

python3 - "$OUT" "$log" "$(stat -c %s "$DATA")" "$RUNS" <<'PY'
import re, statistics, sys
out, log, size, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
clock = re.compile(rb'"(elapsed_ms|at_ms)":\d+')
for split in ["auto", "regions"]:
    for r in range(1, runs + 1):
        a, b = (clock.sub(rb'"\1":0', open(f"{out}/{n}-{split}-{r}.json", "rb").read()) for n in ["old", "new"])
        if a != b:
            sys.exit(f"round {r}, --split {split}: the reports differ beyond the clock figures")
print(f"reports: old and new byte-identical in all {2 * runs} pairs (clock figures aside)\n")
rows = [l.split() for l in open(log) if l.strip() and not l.startswith("Command")]
print("| binary | split | runs | median wall (s) | min–max (s) | median MB/s | median CPU (s) | peak RSS (MB) | new/old wall, paired |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for split in ["auto", "regions"]:
    of = {name: [r for r in rows if r[0] == name and r[1] == split] for name in ["old", "new"]}
    ratio = statistics.median(float(n[2]) / float(o[2]) for o, n in zip(of["old"], of["new"]))
    for name in ["old", "new"]:
        t = [float(r[2]) for r in of[name]]
        cpu = [float(r[4]) + float(r[5]) for r in of[name]]
        m = [int(r[3]) for r in of[name]]
        med = statistics.median(t)
        paired = f"{ratio:.3f}" if name == "new" else ""
        print(f"| {name} | {split} | {len(t)} | {med:.2f} | {min(t):.2f}–{max(t):.2f} | {size/1e6/med:.0f} "
              f"| {statistics.median(cpu):.2f} | {max(m)/1024:.0f} | {paired} |")
PY
