"""Replaces (or appends) one `## TITLE` section of bench/RESULTS.md with stdin."""
import pathlib
import sys

title = sys.argv[1]
body = sys.stdin.read().strip()
path = pathlib.Path(__file__).resolve().parents[1] / "RESULTS.md"
text = path.read_text() if path.exists() else "# Benchmark results\n"
lines = text.splitlines()
header = f"## {title}"
out, skipping, replaced = [], False, False
for line in lines:
    if line.strip() == header:
        out += [header, "", body, ""]
        skipping, replaced = True, True
        continue
    if skipping and line.startswith("## "):
        skipping = False
    if not skipping:
        out.append(line)
if not replaced:
    out += ["", header, "", body, ""]
path.write_text("\n".join(out).rstrip() + "\n")
