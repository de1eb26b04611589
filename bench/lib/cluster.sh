#!/usr/bin/env bash
# Starts N real sshd "nodes" on loopback (127.0.0.2, 127.0.0.3, ...) for the
# remote-execution benchmarks, the same way tests/it/util/sshd.rs does:
# own host keys, a generated client key, pinned known_hosts, an empty
# ssh_config, a distex cluster.toml and an ssh_config for plain ssh / GNU
# parallel (`Host n1` ...). Each node's sessions get HOME set to the node's
# own empty home (sshd SetEnv), so the login shell reads no rc files: a lean
# node, independent of this machine's own ~/.bashrc. Set BENCH_REAL_HOME=1
# to keep the real home (and its rc files) instead.
# Source it, then call `cluster_start N SLOTS`;
# everything is removed (and every sshd killed) on exit.
#
# Exports: CLUSTER_DIR, DISTEX_CONFIG, DISTEX_STATE_DIR, DISTEX_RUNTIME_DIR,
#          SSH_CFG (an ssh -F file with Host n1, n2, ...).

set -euo pipefail

cluster_pids=()

cluster_cleanup() {
    for pid in "${cluster_pids[@]:-}"; do
        [ -n "$pid" ] || continue
        # Kill the sessions first (children of this sshd), then the listener.
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Masters distex started for this cluster live under its runtime dir.
    if [ -n "${DISTEX_RUNTIME_DIR:-}" ] && [ -d "$DISTEX_RUNTIME_DIR" ]; then
        for sock in "$DISTEX_RUNTIME_DIR"/*/master; do
            [ -S "$sock" ] && ssh -S "$sock" -O exit none 2>/dev/null || true
        done
    fi
    [ -n "${CLUSTER_DIR:-}" ] && rm -rf "$CLUSTER_DIR"
}

free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

cluster_start() {
    local n=${1:-2} slots=${2:-4}
    mkdir -p /run/sshd
    CLUSTER_DIR=$(mktemp -d /tmp/dxbench.XXXXXX)
    trap cluster_cleanup EXIT
    export CLUSTER_DIR
    export DISTEX_STATE_DIR=$CLUSTER_DIR/state DISTEX_RUNTIME_DIR=$CLUSTER_DIR/run
    ssh-keygen -q -t ed25519 -N '' -f "$CLUSTER_DIR/client_key"
    : > "$CLUSTER_DIR/known_hosts"
    : > "$CLUSTER_DIR/empty_ssh_config"
    SSH_CFG=$CLUSTER_DIR/ssh_config
    : > "$SSH_CFG"
    export SSH_CFG
    local user; user=$(id -un)
    printf '[local]\nname = "bench"\nos = "linux"\n\n[routing]\noverload_threshold = 1000.0\n\n' > "$CLUSTER_DIR/cluster.toml"
    for i in $(seq 1 "$n"); do
        local name=n$i addr=127.0.0.$((i + 1)) dir=$CLUSTER_DIR/n$i port
        mkdir -p "$dir/work" "$dir/home"
        port=$(free_port "$addr")
        ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
        cp "$CLUSTER_DIR/client_key.pub" "$dir/authorized_keys"
        cat > "$dir/sshd_config" <<CFG
ListenAddress $addr:$port
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
MaxSessions 200
MaxStartups 200
LogLevel ERROR
CFG
        [ -n "${BENCH_REAL_HOME:-}" ] || echo "SetEnv HOME=$dir/home" >> "$dir/sshd_config"
        /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
        cluster_pids+=($!)
        echo "[$addr]:$port $(cut -d' ' -f1,2 "$dir/host_key.pub")" >> "$CLUSTER_DIR/known_hosts"
        cat >> "$SSH_CFG" <<CFG
Host $name
  HostName $addr
  Port $port
  User $user
  IdentityFile $CLUSTER_DIR/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $CLUSTER_DIR/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
CFG
        cat >> "$CLUSTER_DIR/cluster.toml" <<CFG
[[node]]
name = "$name"
host = "$addr"
port = $port
user = "$user"
identity_file = "$CLUSTER_DIR/client_key"
known_hosts = "$CLUSTER_DIR/known_hosts"
ssh_config = "$CLUSTER_DIR/empty_ssh_config"
workdir = "$dir/work"
os = "linux"
slots = $slots

CFG
        # Wait until it accepts connections.
        for _ in $(seq 100); do
            if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then break; fi
            sleep 0.05
        done
    done
    export DISTEX_CONFIG=$CLUSTER_DIR/cluster.toml
}
