"""Times several commands interleaved: each round runs every command once,
in a fresh random order, so that all of them see the same load (hyperfine
runs one command's runs, then the next's: on a machine shared with other
work, load drifting between the two skews the comparison).

Usage: interleave.py RUNS OUT.json COMMAND...   (each COMMAND one shell-free
argument list in a single string, split on spaces; stdin, stdout and stderr
are /dev/null; one warm-up run each). Writes {"commands": [...], "seconds":
[[...], ...], "load": [at start, at end]} and prints each command's median
and mean in ms.
"""
import json
import random
import statistics
import subprocess
import sys
import time

runs, out, commands = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
null = subprocess.DEVNULL


def once(command):
    started = time.perf_counter()
    subprocess.run(command.split(), stdin=null, stdout=null, stderr=null, check=False)
    return time.perf_counter() - started


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


for command in commands:
    once(command)
seconds = [[] for _ in commands]
load_start = load()
for _ in range(runs):
    order = list(range(len(commands)))
    random.shuffle(order)
    for i in order:
        seconds[i].append(once(commands[i]))
with open(out, "w") as f:
    json.dump({"commands": commands, "seconds": seconds, "load": [load_start, load()]}, f)
for command, s in zip(commands, seconds):
    print("%8.1f ms median %8.1f ms mean  %s" % (1000 * statistics.median(s), 1000 * statistics.mean(s), command))
