#!/bin/sh
# What the Claude Code end-to-end tests (tests/it/claude_e2e.rs) and the hook
# benchmark (bench/hook.sh) need. Sourced or run by .ci/run.
set -eu
CLAUDE_CODE_VERSION=2.1.330   # pinned: the version tests/it/claude_e2e.rs was written against
# npm (Debian's package is enough: the npm package ships Claude Code as a native binary).
command -v npm >/dev/null 2>&1 || apt-get install -y npm
if ! command -v claude >/dev/null 2>&1 || [ "$(claude --version 2>/dev/null | cut -d' ' -f1)" != "$CLAUDE_CODE_VERSION" ]; then
    npm install -g "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
fi
claude --version
# hyperfine for bench/hook.sh
command -v hyperfine >/dev/null 2>&1 || apt-get install -y hyperfine
# `claude plugin validate` must report no errors for the plugin at the repo root.
cd "$(dirname "$0")/.." && claude plugin validate .
