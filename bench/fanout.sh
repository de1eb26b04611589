#!/usr/bin/env bash
# Fan-out makespan (issue 3): 40 `sleep 0.5` tasks over two loopback nodes
# with 4 slots each. Ideal: 40 / 8 * 0.5 s = 2.5 s; target within 10%.
# GNU parallel with the same slots (-S 4/n1,4/n2 -M) is shown for reference.
#
# Usage: bench/fanout.sh [RUNS]   (writes bench/RESULTS.md's section)

set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs hyperfine parallel openssh-server openssh-client rsync
RUNS=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/distex/exec}
cargo build --release --quiet
DISTEX=$CARGO_TARGET_DIR/release/distex
source bench/lib/cluster.sh
cluster_start 2 4
OUT=$(mktemp -d)
TASKS=()
for _ in $(seq 40); do TASKS+=("sleep 0.5"); done
printf '%s\n' "${TASKS[@]}" > "$OUT/cmds"

# Warm both masters (as earlier runs would have).
"$DISTEX" run --node n1 -- true; "$DISTEX" run --node n2 -- true

hyperfine --warmup 1 --runs "$RUNS" --export-json "$OUT/distex.json" \
    "xargs -d '\n' -a $OUT/cmds $DISTEX parallel --no-sync --nodes n1,n2 --" >/dev/null
hyperfine --warmup 1 --runs "$RUNS" --export-json "$OUT/par.json" \
    "parallel -M --ssh 'ssh -F $SSH_CFG' -S 4/n1,4/n2 < $OUT/cmds" >/dev/null

s() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f" % r[sys.argv[2]])' "$1" "$2"; }
D=$(s "$OUT/distex.json" median); DMAX=$(s "$OUT/distex.json" max)
P=$(s "$OUT/par.json" median)
over=$(python3 -c "print('%.1f' % (($D/2.5-1)*100))")

python3 bench/lib/results.py "Remote execution (issue 3): fan-out makespan${BENCH_REAL_HOME:+, nodes with the real ~/.bashrc}" <<TABLE
Date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(uname -sr); 40 \`sleep 0.5\` tasks, two loopback sshd nodes with 4 slots each, warm masters, $RUNS runs.

| runner | makespan median (s) | max (s) |
|---|---|---|
| \`distex parallel --nodes n1,n2\` | $D | $DMAX |
| GNU parallel -M -S 4/n1,4/n2 | $P | |
| ideal (40 / 8 x 0.5 s) | 2.500 | |

distex is **${over}%** over the ideal (target <= 10%).
TABLE
echo "distex ${D}s (max ${DMAX}s), GNU parallel ${P}s, ideal 2.5s"
rm -rf "$OUT"
