# Makes sure the Debian packages a benchmark needs are installed.
#
# Source it (POSIX sh: bench/hook.sh is /bin/sh) and call
#   bench_needs PACKAGE...
# Packages already installed are skipped. The rest are installed with
# apt-get when running as root (as CI and the benchmark VMs do); otherwise
# the script stops and prints the apt-get line to run. The tests never need
# these tools, so .ci/run does not install them.

bench_needs() {
    missing=
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench: needs$missing; install with: sudo apt-get install$missing" >&2
        exit 1
    fi
    echo "bench: installing$missing" >&2
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
