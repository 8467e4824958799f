#!/usr/bin/env python3
"""Resident memory of an `ember train --json` run, sampled when each epoch's line appears.

Usage: scripts/rss-over-epochs.py EMBER_BINARY ARG...   (add --json to the train arguments)

Prints one row per epoch: epoch, VmRSS (resident now) and VmHWM (the peak so far), in MiB, read
from /proc/PID/status the moment the epoch's JSON line is read, then the growth of VmRSS from
the first epoch to the last. Linux only (it reads /proc).
"""
import json
import subprocess
import sys


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024.0
    return fields


def main():
    cmd = sys.argv[1:]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    rows = []
    for line in proc.stdout:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if "epoch" not in obj:
            continue
        try:
            s = status(proc.pid)
        except OSError:
            break
        rows.append((obj["epoch"], s["VmRSS"], s["VmHWM"]))
        print(f"epoch {obj['epoch']:>3}  VmRSS {s['VmRSS']:8.1f} MiB  VmHWM {s['VmHWM']:8.1f} MiB", flush=True)
    rc = proc.wait()
    if rows:
        first, last = rows[0], rows[-1]
        print(f"VmRSS growth from epoch {first[0]} to epoch {last[0]}: {last[1] - first[1]:+.1f} MiB; exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
