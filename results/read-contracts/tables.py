#!/usr/bin/env python3
"""The tables of README.md, from the raw outputs of run.sh in DIR."""
import glob
import json
import os
import statistics
import sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as f:
        return json.load(f)


def spread(values):
    """median, and the spread (max - min) as a share of the median."""
    m = statistics.median(values)
    return m, (max(values) - min(values)) / m * 100 if m else 0.0


print("## a. gating A/B (medians of the repetitions; spread = (max - min) / median)\n")
print("| mode | clients | build | runs | ops/s | spread | write p50 µs | spread | write p99 µs | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for mode in ["sync", "async"]:
    for c in ["1", "64"]:
        for build in ["old", "new"]:
            runs = [load(p) for p in sorted(glob.glob(f"{d}/ab/*-{mode}-{c}-{build}.json"))]
            if not runs:
                continue
            ops, ops_s = spread([r["ops_per_sec"] for r in runs])
            p50, p50_s = spread([r["writes"]["p50_us"] for r in runs])
            p99 = statistics.median([r["writes"]["p99_us"] for r in runs])
            errors = sum(r["errors"] for r in runs)
            print(f"| {mode} | {c} | {build} | {len(runs)} | {ops:,.0f} | ±{ops_s/2:.0f}% | {p50:.0f} | ±{p50_s/2:.0f}% | {p99:.0f} | {errors} |")

print("\n## b1. the bench's probe, one read right after each commit (1000 writes, 2 ms apart)\n")
print("| mode | probe reads | reads | at once | after waiting | refused | saw the write | read p50 ms | p99 | at-once p50 | waited p50 | waited p99 | write latency p50 ms | p99 | notice gap p50 ms | p99 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for mode in ["async", "sync", "sync-visible"]:
    for where in ["slave", "master"]:
        path = f"{d}/after/{mode}-{where}/stats.json"
        if not os.path.exists(path):
            continue
        run = load(path)["runs"][0]
        p = run["probe"]
        f = lambda v: "-" if v is None else f"{v:.3f}"
        gap = run["slave_applied_to_visible"]
        print(f"| {mode} | {where} | {p['reads']} | {p['at_once_share']*100:.1f}% | {p['waited_share']*100:.1f}% | "
              f"{p['refused_share']*100:.1f}% | {p['saw_write']} | {f(p['read_time']['p50'])} | {f(p['read_time']['p99'])} | "
              f"{f(p['at_once_time']['p50'])} | {f(p['waited_time']['p50'])} | {f(p['waited_time']['p99'])} | "
              f"{f(run['latency']['p50'])} | {f(run['latency']['p99'])} | {f(gap['p50'])} | {f(gap['p99'])} |")

print("\n## b2. read your writes under load (16 clients, half writes, each read of the client's own last write after its token)\n")
print("| mode | reads on | ops/s | cond. reads | at once | after waiting | refused | read p50 µs | p99 | at-once p50 | waited p50 | waited p99 | write p50 µs | p99 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for mode in ["async", "sync"]:
    for where in ["slave", "master"]:
        path = f"{d}/after/load-{mode}-{where}.json"
        if not os.path.exists(path):
            continue
        r = load(path)
        o = r["read_outcomes"]
        n = o["conditional"] or 1
        refused = o["not_yet_visible"] + o["too_stale"] + o["unknown_history"]
        print(f"| {mode} | {where} | {r['ops_per_sec']:,.0f} | {o['conditional']} | {o['at_once']['count']/n*100:.1f}% | "
              f"{o['waited']['count']/n*100:.1f}% | {refused/n*100:.1f}% | {r['reads']['p50_us']:.0f} | {r['reads']['p99_us']:.0f} | "
              f"{o['at_once']['p50_us']:.0f} | {o['waited']['p50_us']:.0f} | {o['waited']['p99_us']:.0f} | "
              f"{r['writes']['p50_us']:.0f} | {r['writes']['p99_us']:.0f} |")

print("\n## b3. sync-visible (remote_apply) against sync: write latency\n")
print("| clients | mode | runs | ops/s | spread | write p50 µs | spread | write p99 µs | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for c in ["1", "64"]:
    for mode in ["sync", "sync-visible"]:
        runs = [load(p) for p in sorted(glob.glob(f"{d}/visible/*-{mode}-{c}.json"))]
        if not runs:
            continue
        ops, ops_s = spread([r["ops_per_sec"] for r in runs])
        p50, p50_s = spread([r["writes"]["p50_us"] for r in runs])
        p99 = statistics.median([r["writes"]["p99_us"] for r in runs])
        print(f"| {c} | {mode} | {len(runs)} | {ops:,.0f} | ±{ops_s/2:.0f}% | {p50:.0f} | ±{p50_s/2:.0f}% | {p99:.0f} | {sum(r['errors'] for r in runs)} |")

print("\n## c. bounded staleness on the slave under 64-client async put load (4 readers, wait 20 ms, 10 s per run)\n")
print("| bound | run | writes/s | bounded reads | at once | after waiting | refused (too stale) | read p50 µs | p99 | waited p50 µs | waited p99 | refused p50 µs | staleness_bound_ms p50 | p99 | max | samples |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for bound in ["1ms", "5ms", "50ms"]:
    for path in sorted(glob.glob(f"{d}/bounded/*-{bound}.json")):
        r = load(path)
        o = r["read_outcomes"]
        b = r["staleness_bound"]
        n = o["conditional"] or 1
        wps = r["writes"]["count"] / (r["elapsed"]["secs"] + r["elapsed"]["nanos"] / 1e9)
        f = lambda v: "-" if v is None else f"{v:.3f}"
        print(f"| {bound} | {os.path.basename(path).split('-')[0]} | {wps:,.0f} | {o['conditional']} | "
              f"{o['at_once']['count']/n*100:.1f}% | {o['waited']['count']/n*100:.1f}% | {o['too_stale']/n*100:.1f}% | "
              f"{r['reads']['p50_us']:.0f} | {r['reads']['p99_us']:.0f} | {o['waited']['p50_us']:.0f} | {o['waited']['p99_us']:.0f} | "
              f"{o['refused']['p50_us']:.0f} | {f(b['p50_ms'])} | {f(b['p99_ms'])} | {f(b['max_ms'])} | {b['samples']} |")
