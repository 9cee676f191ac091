#!/usr/bin/env bash
# Throughput and latency of duokv on this machine, one cell per line:
# a standalone node (fsync always / never, puts and gets) and a master +
# slave pair (sync / async replication, fsync always), with 1 and 64
# closed-loop clients, through `duokv load`.
#
#   bench/load-matrix.sh [OUT_DIR] [SECONDS]
#
# Writes OUT_DIR/<cell>.json (the raw report of each cell), machine.txt and
# commit.txt; prints a table. Servers run on loopback with their data in a
# temporary directory on the disk that holds $TMPDIR, and are stopped at
# the end, even on failure.
set -euo pipefail

out=${1:-results/load}
seconds=${2:-5}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build --release --quiet
bin=target/release
mkdir -p "$out"
data=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

stop_all() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}

# standalone FSYNC: starts one node, sets $addr
standalone() {
    local port; port=$(free_port)
    addr=127.0.0.1:$port
    "$bin/duokv-server" --listen "$addr" --data-dir "$data/s-$1-$RANDOM" --fsync "$1" 2>>"$data/server.log" &
    pids+=($!)
    wait_duokv "$addr"
}

# pair MODE: starts a slave and a master (fsync always), sets $addr (master)
pair() {
    local mport sport
    mport=$(free_port); sport=$(free_port)
    "$bin/duokv-server" --listen "127.0.0.1:$sport" --data-dir "$data/slave-$1-$RANDOM" \
        --role slave --master-addr "127.0.0.1:$mport" 2>>"$data/server.log" &
    pids+=($!)
    "$bin/duokv-server" --listen "127.0.0.1:$mport" --data-dir "$data/master-$1-$RANDOM" \
        --role master --replica "127.0.0.1:$sport" --replication "$1" 2>>"$data/server.log" &
    pids+=($!)
    addr=127.0.0.1:$mport
    wait_duokv "$addr" link
}

cell() { # NAME CLIENTS WRITES
    "$bin/duokv" load --addr "$addr" --clients "$2" --writes "$3" --duration "${seconds}s" \
        --keys 10000 --value-size 100 --json >"$out/$1.json"
    python3 - "$out/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["writes"] if r["writes"]["count"] else r["reads"]
print(f'{sys.argv[2]:<28} {r["ops_per_sec"]:>10.0f} ops/s   p50 {s["p50_us"]:>8.1f} us   p99 {s["p99_us"]:>8.1f} us   errors {r["errors"]}')
PY
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpus: $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "kernel: $(uname -sr)"
    echo "filesystem of \$TMPDIR: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')"
    echo "seconds per cell: $seconds"
} >"$out/machine.txt"
git rev-parse HEAD >"$out/commit.txt" 2>/dev/null || echo unknown >"$out/commit.txt"

echo "cell                            throughput       latency"
standalone always; cell standalone-always-put-1 1 1.0; cell standalone-always-put-64 64 1.0; cell standalone-always-get-64 64 0.0; stop_all
standalone never;  cell standalone-never-put-1 1 1.0;  cell standalone-never-put-64 64 1.0;  stop_all
pair sync;  cell sync-always-put-1 1 1.0;  cell sync-always-put-64 64 1.0;  stop_all
pair async; cell async-always-put-1 1 1.0; cell async-always-put-64 64 1.0; stop_all
