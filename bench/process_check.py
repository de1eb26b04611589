#!/usr/bin/env python3
"""Normalizes every tool's output from bench/process.sh to
{region: {column: {count, sum, min, max, mean, stddev}}}, checks it against
distex's, and prints a Markdown table of wall time, peak memory and
agreement."""
import json, math, os, re, sys

out, size, rows, regions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
COLS = ["id", "qty", "price", "weight"]
STATS = ["count", "sum", "min", "max", "mean", "stddev"]


def timing(name):
    text = open(os.path.join(out, name + ".time")).read()
    wall = re.search(r"Elapsed \(wall clock\) time .*: (.*)", text).group(1)
    parts = [float(p) for p in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    status = int(re.search(r"Exit status: (\d+)", text).group(1))
    cpu = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1)) + float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    return secs, rss, status, cpu


def load(name):
    text = open(os.path.join(out, name + ".out")).read()
    if name.startswith("distex"):
        r = json.loads(text)
        return {k: v["stats"] for k, v in r["regions"].items()}, r
    if name in ("duckdb", "polars"):
        return json.loads(text), None
    if name == "miller":
        res = {}
        for rec in json.loads(text):
            res[rec["region"]] = {c: {s: rec.get(f"{c}_{s}") for s in STATS} for c in COLS}
        return res, None
    if name == "datamash":
        res = {}
        for line in text.splitlines()[1:]:
            f = line.split(",")
            try:
                vals = [float(x) for x in f[1:]]
            except ValueError:
                continue
            cnt = vals[0]
            d = {}
            for i, c in enumerate(COLS):
                s, mn, mx, mean, sd = vals[1 + 5 * i: 6 + 5 * i]
                d[c] = dict(count=cnt, sum=s, min=mn, max=mx, mean=mean, stddev=sd)
            res[f[0]] = d
        return res, None


def agree(a, b):
    bad = 0
    worst = 0.0
    for region in set(a) | set(b):
        if region not in a or region not in b:
            bad += 1
            continue
        for c in COLS:
            for s in STATS:
                x, y = a[region][c].get(s), b[region][c].get(s)
                if x is None or y is None:
                    bad += x != y
                    continue
                rel = abs(float(x) - float(y)) / max(abs(float(y)), 1e-300)
                worst = max(worst, rel)
                if rel > 1e-9:
                    bad += 1
    return bad, worst


ref, report = load("distex")
print(f"Input: {size / 1e9:.2f} GB CSV, {rows:,} rows, {regions} regions; columns qty, price, weight; "
      f"distex accounting {report['accounting']}, complete={report['complete']}\n")
print("| tool | wall (s) | throughput (MB/s) | CPU user+sys (s) | peak RSS (MB) | agrees with distex (rel. 1e-9) |")
print("|---|---:|---:|---:|---:|---|")
for name in ["distex", "distex-regions", "duckdb", "polars", "miller", "datamash"]:
    try:
        secs, rss, status, cpu = timing(name)
    except Exception as e:
        print(f"| {name} | - | - | - | - | did not run: {e} |")
        continue
    try:
        res, _ = load(name)
        bad, worst = agree(res, ref)
        verdict = "yes" if bad == 0 else f"NO: {bad} figures differ"
        verdict += f" (largest relative difference {worst:.1e})"
        if status != 0:
            verdict += f"; exit status {status}"
    except Exception as e:
        verdict = f"output unreadable ({type(e).__name__}; exit status {status})"
    print(f"| {name} | {secs:.2f} | {size / 1e6 / secs:.0f} | {cpu:.2f} | {rss / 1024:.0f} | {verdict} |")
