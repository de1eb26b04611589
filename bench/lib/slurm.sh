#!/usr/bin/env bash
# Starts a real Slurm cluster on this machine for the Slurm benchmarks, the
# way tests/support/slurm.rs does (root, no systemd): munged with a fresh
# key on a socket in a temp dir, a generated slurm.conf (127.0.0.1, its own
# ports, no accounting, select/cons_tres, proctrack/pgid), slurmctld and one
# `slurmd -N nK` per node; ready when sinfo shows the nodes idle.
# Source it, then call `slurm_start NODES CPUS_PER_NODE SLOTS`; the daemons
# are stopped by PID and everything removed on exit.
#
# Exports: SLURM_DIR, SLURM_CONF, DISTEX_CONFIG (one node `hpc`, partition
#          debug), DISTEX_STATE_DIR, DISTEX_RUNTIME_DIR.

set -euo pipefail

slurm_cleanup() {
    [ -n "${SLURM_DIR:-}" ] || return 0
    for f in "$SLURM_DIR"/slurmd-*.pid "$SLURM_DIR"/slurmctld.pid "$SLURM_DIR"/munged.pid; do
        [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
    sleep 0.5
    rm -rf "$SLURM_DIR"
}

# A block of free ports from 19100 up (tests use 17000-19000).
slurm_ports() {
    python3 - <<'PY'
import socket
for base in range(19100, 20000, 8):
    try:
        for p in range(base, base + 8):
            s = socket.socket(); s.bind(("127.0.0.1", p)); s.close()
        print(base); break
    except OSError:
        continue
PY
}

slurm_start() {
    local nodes=$1 cpus=$2 slots=$3 base d list
    SLURM_DIR=$(mktemp -d /tmp/dxbenchslurm.XXXXXX)
    d=$SLURM_DIR
    trap slurm_cleanup EXIT
    chmod 755 "$d"
    mkdir -p "$d/munge-sock" "$d/spool-ctl" "$d/log" "$d/work"
    mkdir -m 700 "$d/state" "$d/run"
    chmod 755 "$d/munge-sock"
    dd if=/dev/urandom of="$d/munge.key" bs=1024 count=1 status=none
    chmod 600 "$d/munge.key"
    base=$(slurm_ports)
    list=$(seq -s, -f 'n%g' 1 "$nodes")
    {
        echo "ClusterName=distex"
        echo "SlurmctldHost=localhost(127.0.0.1)"
        echo "SlurmctldPort=$base"
        echo "SlurmdPort=$((base + 1))"
        echo "AuthType=auth/munge"
        echo "AuthInfo=socket=$d/munge-sock/munge.socket"
        echo "CredType=cred/munge"
        echo "StateSaveLocation=$d/spool-ctl"
        echo "SlurmdSpoolDir=$d/spool-%n"
        echo "SlurmctldPidFile=$d/slurmctld.pid"
        echo "SlurmdPidFile=$d/slurmd-%n.pid"
        echo "SlurmctldLogFile=$d/log/slurmctld.log"
        echo "SlurmdLogFile=$d/log/slurmd-%n.log"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "ProctrackType=proctrack/pgid"
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "JobCompType=jobcomp/none"
        echo "SchedulerType=sched/backfill"
        echo "ReturnToService=2"
        echo "MpiDefault=none"
        echo "EnforcePartLimits=ALL"
        for i in $(seq 1 "$nodes"); do
            mkdir -p "$d/spool-n$i"
            echo "NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((base + 1 + i)) CPUs=$cpus State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=$list Default=YES MaxTime=INFINITE State=UP"
    } > "$d/slurm.conf"
    export SLURM_CONF=$d/slurm.conf
    munged --key-file="$d/munge.key" --socket="$d/munge-sock/munge.socket" --pid-file="$d/munged.pid" \
        --log-file="$d/log/munged.log" --seed-file="$d/munge.seed" -f
    slurmctld -c -f "$SLURM_CONF"
    for i in $(seq 1 "$nodes"); do slurmd -N "n$i" -f "$SLURM_CONF"; done
    for _ in $(seq 200); do
        [ "$(sinfo -h -p debug -o '%T %D')" = "idle $nodes" ] && break
        sleep 0.05
    done
    cat > "$d/cluster.toml" <<TOML
[[node]]
name = "hpc"
kind = "slurm"
partition = "debug"
os = "linux"
slots = $slots
workdir = "$d/work"
TOML
    export DISTEX_CONFIG=$d/cluster.toml DISTEX_STATE_DIR=$d/state DISTEX_RUNTIME_DIR=$d/run
}
