#!/usr/bin/env python3
"""The seed skill's `should_distribute`, verbatim in behaviour, as a CLI.

Used by bench/route.sh as the baseline distex's router is compared with:
regexes over the whole line (no shell parsing), one process per command.
"""
import json
import re
import sys


def should_distribute(command):
    """Determine if command should be distributed."""
    linux_patterns = [
        r'\bdocker\b', r'\bpodman\b', r'\bapt\b',
        r'\bsystemctl\b', r'\bjournalctl\b'
    ]
    heavy_patterns = [
        r'\bmake\b', r'\bcargo\s+build\b', r'\bgo\s+build\b',
        r'\bnpm\s+run\s+build\b', r'\bpytest\b', r'\bjest\b'
    ]
    for pattern in linux_patterns:
        if re.search(pattern, command):
            return True, "macpro51", "linux_required"
    for pattern in heavy_patterns:
        if re.search(pattern, command):
            return True, "macpro51", "heavy_computation"
    return False, None, None


if __name__ == "__main__":
    distribute, node, reason = should_distribute(" ".join(sys.argv[1:]))
    print(json.dumps({"distribute": distribute, "node": node, "reason": reason}))
