#!/usr/bin/env bash
# duokv against Redis, both driven by Redis's own tool, redis-benchmark,
# through duokv's RESP port (--resp-listen): a comparison anyone can rerun
# with a tool they trust.
#
#   bench/redis-benchmark.sh [OUT_DIR=results/perf/redis-benchmark] [REQUESTS=50000] [REPS=3]
#
# Three systems, each a master and a replica on loopback, every write
# fsynced on the master before it is acknowledged (as bench/compare.sh):
#   duokv-sync   duokv-server pair, --fsync always, --replication sync
#                (a write is acknowledged once durable on both)
#   duokv-async  the same, --replication async
#   redis        redis-server master + replica, --appendonly yes
#                --appendfsync always --save '' (a SET is acknowledged once
#                durable on the master; redis-benchmark cannot add WAIT, so
#                the sync comparison with SET + WAIT 1 stays in compare.sh)
# redis-benchmark -t set,get -d 100 -r 10000 at 1, 16 and 64 clients, no
# pipelining, REQUESTS per test; within a repetition the systems run one
# after the other, so they alternate. Writes OUT_DIR/raw/<system>-c<N>-r<R>.csv
# (redis-benchmark --csv), OUT_DIR/cells.txt (one line per run), commit.txt
# and machine.txt.
set -euo pipefail

out=${1:-results/perf/redis-benchmark}
requests=${2:-50000}
reps=${3:-3}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build --release --quiet
bin=target/release
command -v redis-benchmark >/dev/null || fail "needs redis-benchmark (Debian's redis-tools)"
mkdir -p "$out/raw"
data=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

wait_port() { # PORT: until redis-cli PING answers
    for _ in $(seq 200); do
        redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    fail "nothing answers PING on port $1"
}

declare -A ports
# duokv_pair MODE: sets the RESP port of its master in ports[duokv-MODE].
duokv_pair() {
    local mode=$1 m s mr
    m=$(free_port); s=$(free_port); mr=$(free_port)
    "$bin/duokv-server" --listen "127.0.0.1:$s" --data-dir "$data/$mode-s" --role slave \
        --master-addr "127.0.0.1:$m" 2>"$data/$mode-slave.log" &
    pids+=("$!")
    "$bin/duokv-server" --listen "127.0.0.1:$m" --data-dir "$data/$mode-m" --role master \
        --replica "127.0.0.1:$s" --replication "$mode" --resp-listen "127.0.0.1:$mr" \
        2>"$data/$mode-master.log" &
    pids+=("$!")
    wait_port "$mr"
    for _ in $(seq 200); do
        redis-cli -p "$mr" info replication | grep -q "connected_slaves:1" && break
        sleep 0.05
    done
    ports[duokv-$mode]=$mr
}

redis_pair() {
    local m r
    m=$(free_port); r=$(free_port)
    mkdir -p "$data/redis-m" "$data/redis-r"
    redis-server --port "$m" --bind 127.0.0.1 --dir "$data/redis-m" --appendonly yes \
        --appendfsync always --save '' --daemonize no --logfile "$data/redis-m.log" &
    pids+=("$!")
    wait_port "$m"
    redis-server --port "$r" --bind 127.0.0.1 --dir "$data/redis-r" --appendonly yes \
        --appendfsync always --save '' --daemonize no --logfile "$data/redis-r.log" \
        --replicaof 127.0.0.1 "$m" &
    pids+=("$!")
    wait_port "$r"
    ports[redis]=$m
}

duokv_pair sync
duokv_pair async
redis_pair
echo "# columns: repetition system clients test requests_per_sec p50_ms p99_ms" >"$out/cells.txt"
for rep in $(seq "$reps"); do
    for clients in 1 16 64; do
        for system in duokv-sync redis duokv-async; do
            port=${ports[$system]}
            f="$out/raw/$system-c$clients-r$rep.csv"
            redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -d 100 -r 10000 \
                -n "$requests" -c "$clients" --csv >"$f"
            # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
            tail -n +2 "$f" | tr -d '"' | awk -F, -v r="$rep" -v s="$system" -v c="$clients" \
                '{print r, s, c, $1, $2, $5, $7}' | tee -a "$out/cells.txt"
        done
    done
done
git rev-parse HEAD >"$out/commit.txt"
{ uname -a; nproc; grep 'model name' /proc/cpuinfo | head -1; redis-server --version; redis-benchmark --version 2>/dev/null || true; } >"$out/machine.txt"
