#!/bin/sh
# What the remote-execution tests and benches (issue 3) need: a real sshd
# and ssh client, rsync, and for bench/ GNU parallel and hyperfine.
set -e
apt-get install -y --no-install-recommends openssh-server openssh-client rsync parallel hyperfine
