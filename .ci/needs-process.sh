# Packages the distex process tests and benchmark need (merged into .ci/run by the lead).
# Tests: python3 (independent reference computation), util-linux (unshare, for the --sandbox test's capability probe).
apt-get install -y python3 util-linux
# Benchmark only (bench/process.sh): peers and /usr/bin/time.
apt-get install -y miller datamash time python3-venv
