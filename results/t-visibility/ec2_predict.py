#!/usr/bin/env python3
"""What t-visibility to expect on an EC2 pair: a prediction, not a measurement.

Usage: results/t-visibility/ec2_predict.py RUN_DIR_ASYNC RUN_DIR_SYNC > ec2-prediction.md

The local runs measured every phase of a write on one 2-core VM, where the
network hops are loopback (tens of microseconds) and the fsyncs are this
VM's disk. On EC2 the hops and the syncs change; the replicas' CPU work
does not. So the model keeps the CPU work as measured here and puts
assumed distributions in for the parts EC2 changes (the CPU work, from the run's event logs, is the
master's received to forwarded; the rest of it is tens of microseconds,
kept as constants):

- a same-AZ one-way hop, half of a round trip drawn from a log-normal with
  median 0.25 ms and 99th percentile 0.40 ms: same-AZ pings of 0.20 to
  0.41 ms (orensol.com, 2009, average RTT per zone in us-east-1) and
  ~0.25 ms at best of 50 (xkyle.com, "Measuring AWS Region and AZ
  Latency"). Nitro instances today are likely faster; this leans late.
- an EBS fdatasync: gp3, log-normal with median 1.0 ms and 99th percentile
  3.0 ms (AWS describes General Purpose SSD latency as single-digit
  milliseconds; the figure is our assumption within that), and io2 Block
  Express, median 0.4 ms and 99th percentile 0.8 ms (the EBS user guide,
  "Amazon EBS optimization": under 500 us on average for 16 KiB I/Os, far
  fewer I/Os over 800 us than General Purpose volumes).

The client and its reader run on the master's host (as the deployer runs
the bench), so the reply hop is local and the read crosses the network to
the slave. With `h` a one-way hop, `Fm`, `Fs` the two syncs, `cpu_fwd` the
master's received to forwarded as measured here (resampled per write) and
two small constants (`CPU_REPLY_MS`, `CPU_SHOW_MS`):

  async: the master replies after its own sync; the slave applies after its
         sync and shows the write when the master's commit notice arrives,
         one hop after the master's sync:
           C = Fm + cpu_reply
           V = max(cpu_fwd + h1 + Fs, Fm + h2) + cpu_show
  sync:  the reply also waits for the slave's ack (a hop back):
           C = max(Fm, cpu_fwd + h1 + Fs + h3) + cpu_reply
           V = max(cpu_fwd + h1 + Fs, Fm + h2) + cpu_show

A read sent t after the commit reaches the slave one hop R later and sees
the write iff t + R >= V - C. Seeded (random.Random(17)): the same inputs
give the same table.
"""

import csv
import math
import random
import sys
from collections import defaultdict

SAMPLES = 100_000
SEED = 17
DELAYS_MS = [0, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]
# The reply's hop on the master's own host (loopback), and the slave's work
# from the notice's arrival to the write shown: tens of microseconds here
# (results/t-visibility's phase tables), kept as constants.
CPU_REPLY_MS = 0.03
CPU_SHOW_MS = 0.02
Z99 = 2.3263478740408408  # the standard normal's 99th percentile


def lognormal(rng, median, p99):
    """A draw from the log-normal with this median and 99th percentile."""
    sigma = math.log(p99 / median) / Z99
    return median * math.exp(rng.gauss(0.0, sigma))


def events(path):
    """seq -> {event: unix_ns} of an event log (the first of each event)."""
    by_seq = defaultdict(dict)
    with open(path) as f:
        for row in csv.DictReader(f):
            by_seq[int(row["seq"])].setdefault(row["event"], int(row["unix_ns"]))
    return by_seq


def forward_phases(run_dir):
    """Per write, the master's received to forwarded in ms, as measured: CPU
    work (the write is forwarded before the master's sync), which EC2 does
    not change."""
    master = events(f"{run_dir}/master-events.csv")
    phases = [
        (m["forwarded"] - m["received"]) / 1e6
        for m in master.values()
        if {"received", "forwarded"} <= m.keys()
    ]
    if not phases:
        sys.exit(f"{run_dir}: no write with the events the model needs")
    return phases


def curve(rng, phases, mode, rtt, sync):
    """P(seen) at each of DELAYS_MS for one scenario."""
    seen = [0] * len(DELAYS_MS)
    for _ in range(SAMPLES):
        cpu_fwd = rng.choice(phases)
        h1, h2, h3, r = (lognormal(rng, *rtt) / 2 for _ in range(4))
        fm, fs = lognormal(rng, *sync), lognormal(rng, *sync)
        cpu_reply = CPU_REPLY_MS
        if mode == "async":
            commit = fm + cpu_reply
        else:
            commit = max(fm, cpu_fwd + h1 + fs + h3) + cpu_reply
        visible = max(cpu_fwd + h1 + fs, fm + h2) + CPU_SHOW_MS
        need = visible - commit - r
        for i, t in enumerate(DELAYS_MS):
            seen[i] += need <= t
    return [s / SAMPLES for s in seen]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rng = random.Random(SEED)
    rtt = (0.25, 0.40)
    volumes = {"gp3": (1.0, 3.0), "io2 Block Express": (0.4, 0.8)}
    print("| mode | EBS | " + " | ".join(f"t = {t} ms" for t in DELAYS_MS) + " |")
    print("|---|---|" + "---|" * len(DELAYS_MS))
    for mode, run_dir in (("async", sys.argv[1]), ("sync", sys.argv[2])):
        phases = forward_phases(run_dir)
        for name, sync in volumes.items():
            shares = curve(rng, phases, mode, rtt, sync)
            print(f"| {mode} | {name} | " + " | ".join(f"{p:.3f}" for p in shares) + " |")


if __name__ == "__main__":
    main()
