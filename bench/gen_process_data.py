#!/usr/bin/env python3
"""Generates the CSV for bench/process.sh: ROWS rows, REGIONS regions,
~100 bytes a row, with some quoted fields holding commas, quotes and
newlines. Deterministic (seeded).

usage: gen_process_data.py OUT.csv [ROWS=10000000] [REGIONS=8]
"""
import random
import sys

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
nregions = int(sys.argv[3]) if len(sys.argv) > 3 else 8
rng = random.Random(42)
regions = [f"region-{i:05d}" for i in range(nregions)]
notes = [
    "ok",
    "shipped on time",
    '"late, but complete"',
    '"customer said ""thanks"""',
    '"two\nlines"',
    "standard delivery to the main warehouse",
]
weights = [60, 20, 5, 5, 2, 8]
with open(out, "w", newline="") as f:
    f.write("id,region,qty,price,weight,note,tag\n")
    batch = []
    for i in range(rows):
        r = regions[rng.randrange(nregions)]
        qty = rng.randrange(-100, 1000)
        price = f"{rng.randrange(0, 100000)}.{rng.randrange(0, 100):02d}"
        weight = f"{rng.random() * 1000:.3f}"
        note = rng.choices(notes, weights)[0]
        batch.append(f"{i},{r},{qty},{price},{weight},{note},t{i % 97:02d}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")
        if len(batch) >= 100_000:
            f.write("".join(batch))
            batch.clear()
    f.write("".join(batch))
