#!/usr/bin/env bash
# Benchmark of `distex process` (issue 4): the built-in per-region summary
# of a ~1 GB CSV (10M rows, 8 regions, quoted fields holding commas, quotes
# and newlines) beside DuckDB, Polars, Miller and GNU datamash computing the
# same per-region count/sum/min/max/mean/stddev of the same columns: every
# numeric column distex summarises by default (id, qty, price, weight). Every tool's output is
# normalized and checked against distex's; wall time and peak memory come
# from /usr/bin/time -v. Writes bench/results-process.md; the figures are
# copied into bench/RESULTS.md by hand with the date and machine.
#
# usage: bench/process.sh [ROWS=10000000] [REGIONS=8]
# needs: python3 (a venv with duckdb and polars is created under $WORK),
#        apt: miller datamash time
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs python3 python3-venv miller datamash time
ROWS=${1:-10000000}
REGIONS=${2:-8}
WORK=${BENCH_DIR:-/var/tmp/distex-bench-process}
mkdir -p "$WORK"
DATA="$WORK/data-$ROWS-$REGIONS.csv"
OUT="$WORK/out"
rm -rf "$OUT"; mkdir -p "$OUT"

[ -s "$DATA" ] || { echo "generating $DATA"; python3 bench/gen_process_data.py "$DATA" "$ROWS" "$REGIONS"; }
VENV="$WORK/venv"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q duckdb polars; }
cargo build --release --quiet
DISTEX=${CARGO_TARGET_DIR:-target}/release/distex
SIZE=$(stat -c %s "$DATA")
COLS="id qty price weight"

# run NAME CMD...: wall seconds and peak RSS (max over the process tree) into $OUT/NAME.time
run() {
  local name=$1; shift
  echo "== $name"
  /usr/bin/time -v -o "$OUT/$name.time" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" || echo "   ($name exited non-zero: see $OUT/$name.err)"
}

# Warm the page cache so every tool reads from memory.
cat "$DATA" > /dev/null

run distex "$DISTEX" process "$DATA" --by region --json
run distex-regions "$DISTEX" process "$DATA" --by region --json --split regions

cat > "$OUT/bench_duckdb.py" <<PY
import duckdb, json, sys
con = duckdb.connect()
q = """select region, {aggs} from read_csv('$DATA', header=true, quote='"', escape='"',
  columns={{'id':'BIGINT','region':'VARCHAR','qty':'DOUBLE','price':'DOUBLE','weight':'DOUBLE','note':'VARCHAR','tag':'VARCHAR'}})
  group by region""".format(aggs=", ".join(f"count({c}), sum({c}), min({c}), max({c}), avg({c}), stddev_samp({c})" for c in "$COLS".split()))
out = {}
for row in con.execute(q).fetchall():
    vals = list(row[1:])
    out[row[0]] = {c: dict(zip(["count","sum","min","max","mean","stddev"], vals[i*6:(i+1)*6])) for i, c in enumerate("$COLS".split())}
json.dump(out, sys.stdout)
PY
run duckdb "$VENV/bin/python" "$OUT/bench_duckdb.py"

cat > "$OUT/bench_polars.py" <<PY
import polars as pl, json, sys
cols = "$COLS".split()
df = (pl.scan_csv("$DATA", schema_overrides={c: pl.Float64 for c in cols})
      .group_by("region")
      .agg([e for c in cols for e in (pl.col(c).count().alias(c+"|count"), pl.col(c).sum().alias(c+"|sum"),
            pl.col(c).min().alias(c+"|min"), pl.col(c).max().alias(c+"|max"), pl.col(c).mean().alias(c+"|mean"),
            pl.col(c).std().alias(c+"|stddev"))])
      .collect())
out = {}
for row in df.iter_rows(named=True):
    out[row["region"]] = {c: {k: row[c+"|"+k] for k in ["count","sum","min","max","mean","stddev"]} for c in cols}
json.dump(out, sys.stdout)
PY
run polars "$VENV/bin/python" "$OUT/bench_polars.py"

run miller mlr --icsv --ojson stats1 -a count,sum,min,max,mean,stddev -f id,qty,price,weight -g region "$DATA"
# datamash has no CSV quoting: quoted commas and newlines split fields and rows.
run datamash datamash -t, -s -H -g 2 count 3 sum 1 min 1 max 1 mean 1 sstdev 1 sum 3 min 3 max 3 mean 3 sstdev 3 sum 4 min 4 max 4 mean 4 sstdev 4 sum 5 min 5 max 5 mean 5 sstdev 5 < "$DATA"

python3 bench/process_check.py "$OUT" "$SIZE" "$ROWS" "$REGIONS" | tee "$OUT/summary.md"
cp "$OUT/summary.md" bench/results-process.md
