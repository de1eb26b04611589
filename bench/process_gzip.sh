#!/usr/bin/env bash
# `distex process` on gzip input: the byte-range path through a plain copy
# (the default) against the region path it replaced (`--split regions`: one
# parse on one thread, then a worker per region), DuckDB reading the same
# .csv.gz, and `gzip -dc` alone (the floor: decompression is sequential).
# Each round runs every tool once, in turn. Prints one Markdown row per
# tool and input (median and fastest wall time, peak RSS), after checking
# that distex's two paths agree with each other and with DuckDB on every
# region's count and sum.
# usage: bench/process_gzip.sh [RUNS=5] [ROWS=1000000]   (data under $BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs python3 python3-venv gzip time
WORK=${BENCH_DIR:-/var/tmp/distex-bench-process}
RUNS=${1:-5}
ROWS=${2:-1000000}
mkdir -p "$WORK"
cargo build --release --quiet
DISTEX=${CARGO_TARGET_DIR:-target}/release/distex
VENV="$WORK/venv"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q duckdb polars; }
REGIONS=(8 1000)
for r in "${REGIONS[@]}"; do
  data="$WORK/data-$ROWS-$r.csv"
  [ -s "$data" ] || python3 bench/gen_process_data.py "$data" "$ROWS" "$r"
  [ -s "$data.gz" ] || gzip -1 -k -f "$data"
done
cat > "$WORK/gzip_duckdb.py" <<'PY'
import duckdb, json, sys
cols = "id qty price weight".split()
aggs = ", ".join(f"count({c}), sum({c})" for c in cols)
q = f"""select region, {aggs} from read_csv('{sys.argv[1]}', header=true, quote='"', escape='"',
  columns={{'id':'BIGINT','region':'VARCHAR','qty':'DOUBLE','price':'DOUBLE','weight':'DOUBLE','note':'VARCHAR','tag':'VARCHAR'}})
  group by region"""
out = {row[0]: {c: [row[1 + 2 * i], row[2 + 2 * i]] for i, c in enumerate(cols)} for row in duckdb.connect().execute(q).fetchall()}
json.dump(out, sys.stdout)
PY
log="$WORK/gzip.time"; : > "$log"
for _ in $(seq "$RUNS"); do
  for r in "${REGIONS[@]}"; do
    gz="$WORK/data-$ROWS-$r.csv.gz"
    /usr/bin/time -a -o "$log" -f "distex $r %e %M" "$DISTEX" process "$gz" --by region --json > "$WORK/gzip-distex-$r.json"
    /usr/bin/time -a -o "$log" -f "distex-regions $r %e %M" "$DISTEX" process "$gz" --by region --json --split regions > "$WORK/gzip-regions-$r.json"
    /usr/bin/time -a -o "$log" -f "duckdb $r %e %M" "$VENV/bin/python" "$WORK/gzip_duckdb.py" "$gz" > "$WORK/gzip-duckdb-$r.json"
    /usr/bin/time -a -o "$log" -f "gzip-dc $r %e %M" sh -c "gzip -dc '$gz' > /dev/null"
  done
done
python3 - "$WORK" "$log" "$ROWS" "${REGIONS[@]}" <<'PY'
import json, statistics, sys
work, log, rows, regions = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
cols = "id qty price weight".split()
for r in regions:
    a = json.load(open(f"{work}/gzip-distex-{r}.json"))
    b = json.load(open(f"{work}/gzip-regions-{r}.json"))
    d = json.load(open(f"{work}/gzip-duckdb-{r}.json"))
    assert a["accounting"] == b["accounting"] and a["accounting"]["processed"] == rows, (a["accounting"], b["accounting"])
    assert a["complete"] and b["complete"]
    assert sorted(a["regions"]) == sorted(b["regions"]) == sorted(d), r
    for name, reg in a["regions"].items():
        for c in cols:
            s, t = reg["stats"][c], b["regions"][name]["stats"][c]
            assert (s["count"], s["sum"], s["min"], s["max"]) == (t["count"], t["sum"], t["min"], t["max"]), (name, c)
            assert s["count"] == d[name][c][0] and abs(s["sum"] - d[name][c][1]) <= 1e-9 * abs(s["sum"]) + 1e-6, (name, c, s, d[name][c])
entries = [l.split() for l in open(log) if l.strip()]
print(f"| tool | regions | median wall (s) | fastest (s) | peak RSS (MB) |  ({rows:,} rows, gzip -1; outputs checked) |")
print("|---|---:|---:|---:|---:|---|")
for tool in ["distex", "distex-regions", "duckdb", "gzip-dc"]:
    for r in regions:
        e = [x for x in entries if x[0] == tool and x[1] == r]
        wall = [float(x[2]) for x in e]
        print(f"| {tool} | {int(r):,} | {statistics.median(wall):.2f} | {min(wall):.2f} | {max(int(x[3]) for x in e) / 1024:.0f} | |")
PY
