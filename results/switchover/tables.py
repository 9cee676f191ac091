#!/usr/bin/env python3
"""Prints the README's tables from the raw reports of `duokv bench-failover --json`."""
import json
import sys
from pathlib import Path

raw = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "raw")


def f(v):
    return "-" if v is None else f"{v:.1f}"


def load(name):
    return json.loads((raw / f"{name}.json").read_text())


print("| run | switchovers | server window p50 / p99 / max (ms) | client gap p50 / p99 / max (ms) | writes acked | retried | lost |")
print("|---|---|---|---|---|---|---|")
for name in ["sync-switchover", "async-switchover", "sync-switchover-pause1ms"]:
    r = load(name)
    w, g, a = r["write_window"], r["switchover_gap"], r["attempts"]
    failed = sum(1 for s in r["switchovers"] if s["error"])
    print(
        f"| `{name}` | {w['count']} ({failed} failed) | {f(w['p50_ms'])} / {f(w['p99_ms'])} / {f(w['max_ms'])} "
        f"| {f(g['p50_ms'])} / {f(g['p99_ms'])} / {f(g['max_ms'])} | {a['acknowledged']:,} "
        f"| {a['retried_writes']:,} ({100 * a['retried_writes'] / a['acknowledged']:.2f}%) | {r['verification']['lost']} |"
    )
print()
print("| run | promotions | promote call → first acked write p50 / max (ms) | server `promote_ms` p50 / max | client gap (last ack on the killed master → first on the new) p50 / max | kill → slave sees link down p50 / max | lost |")
print("|---|---|---|---|---|---|---|")
for name in ["sync-promotion", "async-promotion"]:
    r = load(name)
    p, s, g = r["promote_to_first_write"], r["promote_ms"], r["promotion_gap"]
    detect = sorted(x["detect_ms"] for x in r["promotions"])
    print(
        f"| `{name}` | {p['count']} | {f(p['p50_ms'])} / {f(p['max_ms'])} | {f(s['p50_ms'])} / {f(s['max_ms'])} "
        f"| {f(g['p50_ms'])} / {f(g['max_ms'])} | {f(detect[(len(detect) + 1) // 2 - 1])} / {f(detect[-1])} "
        f"| {r['verification']['lost']} |"
    )
print()
for name in ["sync-switchover", "async-switchover", "sync-switchover-pause1ms"]:
    r = load(name)
    print(f"`{name}`, each switchover (ms): window / client gap")
    print()
    print(", ".join(f"{s['write_window_ms']:.1f} / {s['client_gap_ms']:.1f}" for s in r["switchovers"]))
    print()
for name in ["sync-promotion", "async-promotion"]:
    r = load(name)
    print(f"`{name}`, each promotion (ms): promote call → first acked write")
    print()
    print(", ".join(f"{p['to_first_write_ms']:.1f}" for p in r["promotions"]))
    print()
