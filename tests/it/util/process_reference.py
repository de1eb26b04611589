#!/usr/bin/env python3
"""Independent reference for `distex process` tests: per-region statistics
computed with Python's csv module, math.fsum and statistics.stdev.

usage: process_reference.py FILE KEY NUMERIC_COLS(comma-separated) [csv|tsv|jsonl]

A record is rejected when it has the wrong number of fields, an empty key,
invalid UTF-8, or a numeric column holding something that is not a finite
number. Prints JSON: {"input_records", "rejected_lines", "regions": {name:
{"records", "stats": {col: {count, sum, min, max, mean, stddev}}}}}.
"""
import csv, json, math, statistics, sys

path, key, numeric = sys.argv[1], sys.argv[2], [c for c in sys.argv[3].split(",") if c]
fmt = sys.argv[4] if len(sys.argv) > 4 else "csv"


def number(text):
    text = text.strip()
    if text == "":
        return None
    v = float(text)
    if not math.isfinite(v) or "_" in text:
        raise ValueError(text)
    return v


def records():
    if fmt == "jsonl":
        with open(path, "rb") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line.decode("utf-8"))
                    if not isinstance(obj, dict):
                        raise ValueError
                except Exception:
                    yield i, None
                    continue
                yield i, obj
        return
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",", quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        header = next(reader)
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:
                continue
            if len(row) != len(header) or any("\udc80" <= ch <= "\udcff" for field in row for ch in field):
                yield start, None
                continue
            yield start, dict(zip(header, row))


regions = {}
rejected = []
total = 0
for line, rec in records():
    total += 1
    if rec is None:
        rejected.append(line)
        continue
    k = rec.get(key)
    if k is None or str(k).strip() == "":
        rejected.append(line)
        continue
    try:
        values = {c: number(str(rec[c])) if rec.get(c) is not None else None for c in numeric}
    except ValueError:
        rejected.append(line)
        continue
    r = regions.setdefault(str(k), {"records": 0, "values": {c: [] for c in numeric}})
    r["records"] += 1
    for c, v in values.items():
        if v is not None:
            r["values"][c].append(v)

out = {"input_records": total, "rejected_lines": rejected, "regions": {}}
for name, r in regions.items():
    stats = {}
    for c, vs in r["values"].items():
        s = math.fsum(vs)
        stats[c] = {
            "count": len(vs),
            "sum": s,
            "min": min(vs) if vs else None,
            "max": max(vs) if vs else None,
            "mean": s / len(vs) if vs else None,
            "stddev": statistics.stdev(vs) if len(vs) > 1 else None,
        }
    out["regions"][name] = {"records": r["records"], "stats": stats}
json.dump(out, sys.stdout)
