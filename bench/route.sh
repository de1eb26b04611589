#!/usr/bin/env bash
# Whole-process latency of `distex route --json` beside the seed's Python
# `should_distribute`, both run the same way (one process per command) by
# hyperfine. Writes the figures to bench/RESULTS.md.
#
# Usage: bench/route.sh            (needs hyperfine: installed if missing, see bench/lib/needs.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs hyperfine python3
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked --quiet
DISTEX="$CARGO_TARGET_DIR/release/distex"
OUT=bench/out; mkdir -p "$OUT"
CFG="$OUT/route-cluster.toml"
cat > "$CFG" <<'TOML'
[local]
os = "macos"
[[node]]
name = "macpro51"
host = "macpro51.local"
os = "linux"
features = ["docker"]
roles = ["builder"]
slots = 12
speed = 2.0
TOML
export DISTEX_STATE_DIR="$OUT/state"
# The real interpreter, not a version manager's shim script (which would add
# its own startup to the Python figure).
PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
CMD='cd app && docker compose build && make -j8 test'

# Same answer from both before timing anything.
"$DISTEX" --config "$CFG" route --json --assume-load local=0 -- "$CMD"
"$PYTHON" bench/should_distribute.py "$CMD"

hyperfine -N --warmup 50 --runs 500 --export-json "$OUT/route.json" \
  -n distex "$DISTEX --config $CFG route --json -- '$CMD'" \
  -n python-seed "$PYTHON bench/should_distribute.py '$CMD'"

python3 - "$OUT/route.json" "$DISTEX" "$CFG" <<'PY'
import json, sys, datetime, platform, os, subprocess, time
CMD = 'cd app && docker compose build && make -j8 test'
def inproc(line, n=2000):
    req = "".join(json.dumps({"op": "route", "command": line, "assume_load": {"local": 0}}) + "\n" for _ in range(n))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.argv[2], "--config", sys.argv[3], "json"], input=req.encode(), stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
d, p = res["distex"], res["python-seed"]
ms = lambda s: s * 1000
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
section = f"""## Routing latency (issue 2)

{datetime.date.today()} · {os.cpu_count()} cores · {cpu} · `bench/route.sh` · hyperfine -N, 500 runs, command `{'cd app && docker compose build && make -j8 test'}` · load average at the end {os.getloadavg()[0]:.2f} (a shared machine: other builds were running)

The distex figure includes the part-level plan (`rewrite`: each part routed on its own) added for issue 15.

| implementation | median | mean ± σ | min | max |
|---|---|---|---|---|
| distex route --json (release) | {ms(d['median']):.2f} ms | {ms(d['mean']):.2f} ± {ms(d['stddev']):.2f} ms | {ms(d['min']):.2f} ms | {ms(d['max']):.2f} ms |
| seed `should_distribute` (python3) | {ms(p['median']):.2f} ms | {ms(p['mean']):.2f} ± {ms(p['stddev']):.2f} ms | {ms(p['min']):.2f} ms | {ms(p['max']):.2f} ms |

distex is {p['median'] / d['median']:.1f}× faster at the median (target: ≥ 20×, distex median ≤ 2 ms).

In-process cost (2000 `route` requests through one `distex json`, best of 5): {inproc(CMD):.0f} µs per request for this line, {inproc('ls'):.0f} µs for `ls`; the rest of the whole-process figure is process start, config load and output.

"""
path = "bench/RESULTS.md"
text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\nFigures written by the scripts in `bench/`; each section names its script, date and machine.\n"
start = text.find("## Routing latency (issue 2)")
if start >= 0:
    end = text.find("\n## ", start + 1)
    text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
print(section)
PY
