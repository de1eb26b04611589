#!/usr/bin/env bash
# Per-command overhead of `distex run` on a loopback sshd node (issue 3).
#
# 200 `true` commands, each its own process, against:
#   * plain multiplexed ssh (`ssh -S <socket> none true` over a warm master),
#   * GNU parallel -S (a new SSH connection per job) and -S -M (its own
#     ControlMaster multiplexing), run with -j1 so jobs are sequential.
# Targets: distex within 1.5x of multiplexed ssh; >= 5x faster than parallel -M.
# distex opens its session through the master's mux protocol itself (no
# ssh client process per command), so it can beat `ssh -S`, which starts
# a full ssh client for every command.
#
# Needs: openssh-server, rsync, hyperfine, parallel (installed if missing, see bench/lib/needs.sh).
# Usage: bench/run_overhead.sh [RUNS]   (writes bench/RESULTS.md's section)

set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/needs.sh
bench_needs hyperfine parallel openssh-server openssh-client rsync
RUNS=${1:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/distex/exec}
cargo build --release --quiet
DISTEX=$CARGO_TARGET_DIR/release/distex
source bench/lib/cluster.sh
cluster_start 1 4
OUT=$(mktemp -d)

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm the persistent master (as any earlier distex run would have).
"$DISTEX" run --node n1 -- true
SOCK=$(ls "$DISTEX_RUNTIME_DIR"/n1-*/master)

hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$OUT/distex.json" \
    "$DISTEX run --node n1 -- true" >/dev/null
hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$OUT/ssh.json" \
    "ssh -S $SOCK -o BatchMode=yes -p 9 none true" >/dev/null
# GNU parallel: one invocation runs all 200 jobs; per-job cost = mean / 200.
hyperfine --runs 1 --export-json "$OUT/par.json" \
    "seq $RUNS | parallel -j1 --ssh 'ssh -F $SSH_CFG' -S n1 true" >/dev/null
hyperfine --runs 1 --export-json "$OUT/parm.json" \
    "seq $RUNS | parallel -j1 -M --ssh 'ssh -F $SSH_CFG' -S n1 true" >/dev/null

ms() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f" % (r[sys.argv[2]]*1000/float(sys.argv[3])))' "$1" "$2" "$3"; }
D=$(ms "$OUT/distex.json" median 1)
S=$(ms "$OUT/ssh.json" median 1)
P=$(ms "$OUT/par.json" mean "$RUNS")
M=$(ms "$OUT/parm.json" mean "$RUNS")
ratio_ssh=$(python3 -c "print('%.2f' % ($D/$S))")
ratio_m=$(python3 -c "print('%.1f' % ($M/$D))")

python3 bench/lib/results.py "Remote execution (issue 3): per-command overhead${BENCH_REAL_HOME:+, nodes with the real ~/.bashrc}" <<TABLE
Date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(uname -sr); loopback sshd (OpenSSH $(ssh -V 2>&1 | cut -d' ' -f1 | cut -d_ -f2)), $RUNS \`true\` commands, each a separate process.

| runner | per command (ms) |
|---|---|
| \`distex run --node n1 -- true\` (median, persistent master) | $D |
| \`ssh -S <socket> none true\` (median, same master) | $S |
| GNU parallel -j1 -S (new connection per job) | $P |
| GNU parallel -j1 -S -M (its own ControlMaster) | $M |

distex / multiplexed ssh = **${ratio_ssh}x** (target <= 1.5x); GNU parallel -M / distex = **${ratio_m}x** (target >= 5x).
Load average when the runs started: ${LOAD}.
TABLE
echo "distex ${D} ms, ssh -S ${S} ms, parallel -S ${P} ms, parallel -M ${M} ms per command"
rm -rf "$OUT"
