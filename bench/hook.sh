#!/bin/sh
# Whole-process latency of `distex hook pre-tool-use` (issue 5), the hook
# Claude Code runs before every Bash command: median and p99 with hyperfine,
# for a command that stays local (no output) and one that is rewritten to
# `distex run --node builder -- ...`, both for the helper called directly
# and through the plugin's bin/distex launcher (what hooks/hooks.json runs).
# The user and the project have Claude Code settings with allow, ask and deny
# rules, so the routed command pays for reading and judging them (issue 14):
# the sanity check below insists the rewrite is allowed by the user's rule.
#
# Huge commands (issue 17): a 4 MB command (`cargo build --release; echo a;
# echo a; ...`) is over the 64 KiB the hook routes and must be answered at
# once (nothing printed, a note in hook.log); a 60 KB one is still routed,
# with its ~7,500 parts alike or all different (`echo a1; echo a2; ...`).
#
# Usage: bench/hook.sh [RUNS]      (needs hyperfine and python3)
# Builds the release helper first; prints a Markdown table to paste into
# bench/RESULTS.md ("Hook latency (issue 5)").
set -eu

runs=${1:-1000}
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib/needs.sh"
bench_needs hyperfine python3
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release --locked --quiet --manifest-path "$repo/Cargo.toml" --bin distex
exe=$target/release/distex

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/cluster.toml" <<'TOML'
[local]
name = "laptop"
os = "macos"

[[node]]
name = "builder"
host = "127.0.0.2"
os = "linux"
roles = ["builder"]
slots = 8

[routing]
overload_threshold = 1000.0
TOML
# Claude Code settings as a user would have them: user rules in ~/.claude,
# project rules in the project's .claude (shared and local).
mkdir -p "$work/home/.claude" "$work/project/src/.claude" "$work/project/.claude"
cat > "$work/home/.claude/settings.json" <<'JSON'
{"permissions": {"allow": ["Bash(cargo build:*)", "Bash(cargo test:*)", "Bash(tail *)", "Bash(git status)", "Read"],
                 "ask": ["Bash(git push:*)"], "deny": ["Bash(rm -rf:*)", "Bash(curl *)", "WebFetch"]},
 "env": {"RUST_LOG": "info"}}
JSON
cat > "$work/project/.claude/settings.json" <<'JSON'
{"permissions": {"allow": ["Bash(make:*)", "Bash(npm run *)"], "deny": ["Bash(* --force)"]}}
JSON
cat > "$work/project/.claude/settings.local.json" <<'JSON'
{"permissions": {"allow": ["Bash(pytest:*)"], "ask": ["Bash(make install)"]}}
JSON
input() {
    printf '{"session_id":"b","transcript_path":"/tmp/t.jsonl","cwd":"%s","permission_mode":"default","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"%s","description":"bench"},"tool_use_id":"toolu_b"}\n' "$work/project/src" "$1"
}
input 'ls -la src' > "$work/local.json"
input 'cargo build --release 2>&1 | tail -n 20' > "$work/routed.json"
# The same routed command where there are no Claude Code settings at all:
# the difference is what reading and judging the rules costs.
mkdir -p "$work/bare/home" "$work/bare/project"
sed "s|$work/project/src|$work/bare/project|" "$work/routed.json" > "$work/routed-bare.json"
bare="HOME=$work/bare/home CLAUDE_PROJECT_DIR=$work/bare/project"

export DISTEX_CONFIG="$work/cluster.toml" DISTEX_STATE_DIR="$work/state" HOME="$work/home" CLAUDE_PROJECT_DIR="$work/project"
unset CLAUDE_PLUGIN_DATA CLAUDE_CONFIG_DIR
# Sanity: the local input is answered with nothing, the routed one with a
# rewrite the user's own rule allows.
[ -z "$("$exe" hook pre-tool-use < "$work/local.json")" ] || { echo "local command was not left alone" >&2; exit 1; }
"$exe" hook pre-tool-use < "$work/routed.json" | grep -q '"permissionDecision":"allow"' || { echo "routed command was not rewritten and allowed" >&2; exit 1; }
env $bare "$exe" hook pre-tool-use < "$work/routed-bare.json" | grep -q '"updatedInput"' || { echo "routed command without settings was not rewritten" >&2; exit 1; }

# The launcher looks for the helper through DISTEX_BIN exactly as in a session.
launcher="DISTEX_BIN=$exe $repo/bin/distex"
hyperfine --warmup 50 --runs "$runs" --export-json "$work/h.json" \
    -n "helper, local command" "$exe hook pre-tool-use < $work/local.json" \
    -n "helper, routed command" "$exe hook pre-tool-use < $work/routed.json" \
    -n "launcher, local command" "$launcher hook pre-tool-use < $work/local.json" \
    -n "launcher, routed command" "$launcher hook pre-tool-use < $work/routed.json" >&2

# Upper bound without hyperfine's shell-startup correction (unreliable below
# 5 ms): the same helper runs, each inside its own `sh -c`, timed whole (-N).
hyperfine -N --warmup 50 --runs "$runs" --export-json "$work/n.json" \
    -n "sh -c + helper, local command (uncorrected)" "sh -c '$exe hook pre-tool-use < $work/local.json'" \
    -n "sh -c + helper, routed command (uncorrected)" "sh -c '$exe hook pre-tool-use < $work/routed.json'" \
    -n "sh -c + helper, routed command, no settings files (uncorrected)" \
       "sh -c '$bare $exe hook pre-tool-use < $work/routed-bare.json'" >&2

# Huge commands, built by python3 (a shell would take long to build 4 MB).
python3 - "$work" <<'PY'
import json, sys
for name, size, distinct in (("huge", 4_000_000, False), ("long", 60_000, False), ("distinct", 60_000, True)):
    command, i = "cargo build --release", 0
    while len(command) < size:
        command += f"; echo a{i}" if distinct else "; echo a"
        i += 1
    event = {"session_id": "b", "transcript_path": "/tmp/t.jsonl", "cwd": sys.argv[1] + "/project/src",
             "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Bash",
             "tool_input": {"command": command, "description": "bench"}, "tool_use_id": "toolu_b"}
    with open(f"{sys.argv[1]}/{name}.json", "w") as f:
        f.write(json.dumps(event) + "\n")
PY
[ -z "$("$exe" hook pre-tool-use < "$work/huge.json")" ] || { echo "huge command was not left alone" >&2; exit 1; }
grep -q "longer than the 64 KiB" "$work/state/hook.log" || { echo "no note for the huge command in hook.log" >&2; exit 1; }
"$exe" hook pre-tool-use < "$work/long.json" | grep -q '"updatedInput"' || { echo "60 KB command was not rewritten" >&2; exit 1; }
hyperfine -N --warmup 5 --runs "$(( runs < 100 ? runs : 100 ))" --export-json "$work/big.json" \
    -n "sh -c + helper, 4 MB command, left alone (uncorrected)" "sh -c '$exe hook pre-tool-use < $work/huge.json'" \
    -n "sh -c + helper, 60 KB command, routed (uncorrected)" "sh -c '$exe hook pre-tool-use < $work/long.json'" \
    -n "sh -c + helper, 60 KB command of distinct parts, routed (uncorrected)" "sh -c '$exe hook pre-tool-use < $work/distinct.json'" >&2

python3 - "$work/h.json" "$work/n.json" "$work/big.json" <<'PY'
import json, sys
results = [r for f in sys.argv[1:] for r in json.load(open(f))["results"]]
print("| case | median | p99 | mean ± σ | runs |")
print("|---|---|---|---|---|")
for r in results:
    t = sorted(r["times"])
    p99 = t[min(len(t) - 1, int(round(0.99 * (len(t) - 1))))]
    print(f"| {r['command']} | {r['median']*1e3:.2f} ms | {p99*1e3:.2f} ms | {r['mean']*1e3:.2f} ± {r['stddev']*1e3:.2f} ms | {len(t)} |")
PY
