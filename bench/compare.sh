#!/usr/bin/env bash
# duokv against Redis on this machine, side by side, through `duokv load`.
#
#   bench/compare.sh [OUT_DIR=results/perf] [SECONDS=5] [REPS=3]
#
# Four systems, each a master and a replica on loopback, every write fsynced
# on the master before it is acknowledged:
#   duokv-sync   duokv-server master + slave, --fsync always, --replication sync
#   duokv-async  the same, --replication async
#   redis-wait   redis-server master + replica (--appendonly yes
#                --appendfsync always --save ''), each write SET + WAIT 1 1000
#   redis-async  the same Redis pair, plain SET
# The two Redis systems are one Redis pair, loaded with and without WAIT.
#
# Matrix: writes only (--writes 1.0) and 90 % reads (--writes 0.1), with 1,
# 16 and 64 closed-loop clients, 100-byte values over 10,000 keys, SECONDS
# per run. WORKLOADS="writes" and CLIENTS="1 64" narrow it, for a quick look
# at some cells while working on them (the published run is the whole one). Each cell runs REPS times; within a repetition the systems run
# one after the other in the order duokv-sync, redis-wait, duokv-async,
# redis-async, so each pair alternates A B A B ... and all four see the
# machine in the same state.
#
# Servers are NOT restarted between runs: every system's servers start once,
# its key space is filled by an unmeasured 3 s write run (16 clients), and
# every measured run then finds the same 10,000 keys present. Only one load
# runs at a time; the other servers sit idle meanwhile.
#
# Writes into OUT_DIR (relative to the repository root):
#   raw/<system>-<workload>-c<clients>-r<rep>.json  each run's `duokv load --json`
#   cpu.csv      CPU seconds of the load generator and of each server per run
#   redis-events.txt  AOF rewrites and replica syncs from the Redis logs
#   floor.json   one fdatasync and one loopback round trip on this machine,
#                probed before the load and before each 1-client writes rep
#   machine.txt  cpus, memory, kernel, filesystem, Redis version, commit
#   commit.txt   the commit measured
# then README.md and chart.svg through `duokv perf-report OUT_DIR`. A
# previous raw/ is replaced; a previous notes.md (hand-written observations
# on the previous run) is moved to notes.md.old.
#
# Installs Debian's redis-server with apt-get if it is missing. The system
# service that the package may start is left alone: every server here is a
# process of this script on a free port, with its data in a temporary
# directory on the disk of $TMPDIR, stopped at the end, even on failure.
#
# TOOL=redis-benchmark bench/compare.sh [OUT_DIR=results/perf/redis-benchmark]
# [REQUESTS] [REPS] drives the same systems with Redis's own tool instead,
# through duokv's RESP port: see bench/redis-benchmark.sh. (memtier_benchmark
# is not packaged by Debian.)
set -euo pipefail

if [ "${TOOL:-duokv-load}" = redis-benchmark ]; then
    exec "$(dirname "$0")/redis-benchmark.sh" "${1:-results/perf/redis-benchmark}" "${@:2}"
fi

out=${1:-results/perf}
seconds=${2:-5}
reps=${3:-3}
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build --release --quiet
bin=target/release
if ! "$bin/duokv" load --help | grep -q -- '--target'; then
    echo "this duokv load has no --target: it cannot drive Redis" >&2
    exit 1
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "installing redis-server (Debian package)" >&2
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
    fi
fi
redis_version=$(redis-server --version)
case $redis_version in
*" v=7."* | *" v=8."*) ;;
*)
    echo "need Redis 7 or later, have: $redis_version" >&2
    exit 1
    ;;
esac

mkdir -p "$out"
rm -rf "$out/raw"
mkdir -p "$out/raw"
if [ -e "$out/notes.md" ]; then
    mv "$out/notes.md" "$out/notes.md.old"
    echo "moved the previous run's $out/notes.md to notes.md.old" >&2
fi
data=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_redis() { # PORT [link]
    for _ in $(seq 200); do
        if [ "${2:-}" = link ]; then
            redis-cli -p "$1" info replication 2>/dev/null | grep -q '^master_link_status:up' && return 0
        else
            [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
        fi
        sleep 0.05
    done
    fail "redis at port $1 did not come up${2:+ (link)}"
}

# duokv_pair MODE: a slave and a master, both --fsync always; sets $addr (the
# master) and $server_pids (master, slave).
duokv_pair() {
    local mport sport
    mport=$(free_port)
    sport=$(free_port)
    "$bin/duokv-server" --listen "127.0.0.1:$sport" --data-dir "$data/duokv-$1-slave" \
        --fsync always --role slave --master-addr "127.0.0.1:$mport" 2>>"$data/duokv-$1-slave.log" &
    pids+=("$!")
    local slave=$!
    "$bin/duokv-server" --listen "127.0.0.1:$mport" --data-dir "$data/duokv-$1-master" \
        --fsync always --role master --replica "127.0.0.1:$sport" --replication "$1" \
        2>>"$data/duokv-$1-master.log" &
    pids+=("$!")
    server_pids="$! $slave"
    addr=127.0.0.1:$mport
    wait_duokv "$addr" link
}

# redis_pair: a master and a replica, AOF fsynced on every write, no RDB
# snapshots; sets $addr (the master) and $server_pids (master, replica).
redis_pair() {
    local mport rport role
    mport=$(free_port)
    rport=$(free_port)
    for role in master replica; do mkdir -p "$data/redis-$role"; done
    redis-server --port "$mport" --bind 127.0.0.1 --dir "$data/redis-master" \
        --appendonly yes --appendfsync always --save '' \
        --daemonize no --logfile "$data/redis-master.log" &
    pids+=("$!")
    local master=$!
    wait_redis "$mport"
    redis-server --port "$rport" --bind 127.0.0.1 --dir "$data/redis-replica" \
        --appendonly yes --appendfsync always --save '' \
        --daemonize no --logfile "$data/redis-replica.log" \
        --replicaof 127.0.0.1 "$mport" &
    pids+=("$!")
    server_pids="$master $!"
    addr=127.0.0.1:$mport
    wait_redis "$rport" link
    [ "$(redis-cli -p "$mport" config get appendfsync | tail -n 1)" = always ] ||
        fail "redis master is not --appendfsync always"
    [ -z "$(redis-cli -p "$mport" config get save | tail -n 1)" ] ||
        fail "redis master still has RDB snapshots (save)"
}

duokv_pair sync
duokv_sync_addr=$addr
duokv_sync_pids=$server_pids
duokv_pair async
duokv_async_addr=$addr
duokv_async_pids=$server_pids
redis_pair
redis_addr=$addr
redis_pids=$server_pids

# The physical floor: one small append + fdatasync on the servers' disk, and
# a loopback round trip measured two ways (duokv's ping on a fresh
# connection, a Python TCP echo); the faster round trip counts, which makes
# the floor lower and the target stricter. This disk's fdatasync drifts
# over minutes (seen: 170 to 330 us on one VM), so the floor is probed
# before any load and again right before every repetition of the 1-client
# writes cell; floor.json holds the median of all probes, and each probe.
# probe_floor OUT_JSON
probe_floor() {
    for _ in $(seq 50); do
        "$bin/duokv" ping --addr "$duokv_sync_addr"
    done | sed -n 's/.*round trip \([0-9.]*\)ms.*/\1/p' >"$data/ping-ms.txt"
    python3 - "$data" "$data/ping-ms.txt" >"$1" <<'PY'
import json, os, socket, statistics, sys, threading, time

data, ping_file = sys.argv[1], sys.argv[2]

# fdatasync: append ~150 bytes, sync; median of 200.
path = os.path.join(data, "fdatasync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
record = b"x" * 149 + b"\n"
syncs = []
for _ in range(200):
    started = time.perf_counter_ns()
    os.write(fd, record)
    os.fdatasync(fd)
    syncs.append((time.perf_counter_ns() - started) / 1e3)
os.close(fd)
os.unlink(path)

# A TCP echo on loopback, Nagle off; median of 2000 after 200 warm-up.
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)

def echo():
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while chunk := conn.recv(64):
        conn.sendall(chunk)

threading.Thread(target=echo, daemon=True).start()
client = socket.create_connection(server.getsockname())
client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
trips = []
for i in range(2200):
    started = time.perf_counter_ns()
    client.sendall(b"p" * 32)
    got = 0
    while got < 32:
        got += len(client.recv(64))
    if i >= 200:
        trips.append((time.perf_counter_ns() - started) / 1e3)
client.close()

pings = [float(line) * 1e3 for line in open(ping_file) if line.strip()]
print(json.dumps({
    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "fdatasync_us": round(statistics.median(syncs), 1),
    "duokv_ping_round_trip_us": round(statistics.median(pings), 1) if pings else None,
    "python_echo_round_trip_us": round(statistics.median(trips), 1),
}))
PY
}

# combine_floor PROBE_JSON...: floor.json from the probes.
combine_floor() {
    python3 - "$@" <<'PY'
import json, statistics, sys

probes = [json.load(open(path)) for path in sys.argv[1:]]
fsync_us = statistics.median(p["fdatasync_us"] for p in probes)
echo_us = statistics.median(p["python_echo_round_trip_us"] for p in probes)
pings = [p["duokv_ping_round_trip_us"] for p in probes if p["duokv_ping_round_trip_us"]]
ping_us = statistics.median(pings) if pings else None
# Each probe's faster round trip, then the median over the probes.
round_trip = statistics.median(
    min(v for v in (p["python_echo_round_trip_us"], p["duokv_ping_round_trip_us"]) if v)
    for p in probes
)
print(json.dumps({
    "fdatasync_us": round(fsync_us, 1),
    "round_trip_us": round(round_trip, 1),
    "floor_us": round(fsync_us + 2 * round_trip, 1),
    "duokv_ping_round_trip_us": None if ping_us is None else round(ping_us, 1),
    "python_echo_round_trip_us": round(echo_us, 1),
    "probes": probes,
    "method": "Probed before any load and right before each repetition of the 1-client "
              "writes cell; each figure is the median over the probes. In one probe: "
              "fdatasync_us, the median of 200 appends of 150 bytes to a file in the "
              "servers' data directory, each followed by os.fdatasync (write + sync timed); "
              "duokv_ping_round_trip_us, the median of 50 `duokv ping`s (one per fresh "
              "connection) against the idle duokv-sync master; python_echo_round_trip_us, "
              "the median of 2000 round trips of 32 bytes to a Python TCP echo. "
              "round_trip_us is the median over the probes of each probe's lower round "
              "trip; floor_us = fdatasync_us + 2 round_trip_us.",
}, indent=2))
PY
}

echo "measuring the floor: fdatasync and loopback round trips" >&2
probes=("$data/floor-start.json")
probe_floor "${probes[0]}"
cat "${probes[0]}" >&2

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty=" (with uncommitted changes)"
echo "$commit" >"$out/commit.txt"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpus: $(nproc) ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "kernel: $(uname -sr)"
    echo "filesystem of the servers' data: $(df -T "$data" | awk 'NR==2 {print $2 " on " $1}')"
    echo "redis: $redis_version"
    echo "duokv commit: $commit$dirty"
    echo "seconds per run: $seconds"
    echo "repetitions per cell: $reps"
    echo "load: closed-loop clients, --keys 10000 --value-size 100"
} >"$out/machine.txt"

# system_args SYSTEM: sets $args (the load's target flags) and $server_pids.
system_args() {
    case $1 in
    duokv-sync)
        args=(--addr "$duokv_sync_addr" --target duokv)
        server_pids=$duokv_sync_pids
        ;;
    duokv-async)
        args=(--addr "$duokv_async_addr" --target duokv)
        server_pids=$duokv_async_pids
        ;;
    redis-wait)
        args=(--addr "$redis_addr" --target redis --redis-wait-ms 1000)
        server_pids=$redis_pids
        ;;
    redis-async)
        args=(--addr "$redis_addr" --target redis)
        server_pids=$redis_pids
        ;;
    *) fail "unknown system $1" ;;
    esac
}

cpu_ticks() { # PID: user + system clock ticks so far
    awk '{print $14 + $15}' "/proc/$1/stat"
}

systems=(duokv-sync redis-wait duokv-async redis-async)
echo "filling the key space of each system (unmeasured)" >&2
for system in duokv-sync duokv-async redis-async; do
    system_args "$system"
    "$bin/duokv" load "${args[@]}" --clients 16 --writes 1.0 --duration 3s \
        --keys 10000 --value-size 100 >/dev/null
done

tick=$(getconf CLK_TCK)
echo "system,workload,clients,rep,seconds,load_cpu_s,master_cpu_s,replica_cpu_s" >"$out/cpu.csv"
run() { # SYSTEM WORKLOAD CLIENTS REP
    local system=$1 workload=$2 clients=$3 rep=$4 writes file master replica m0 r0 load_cpu
    case $workload in
    writes) writes=1.0 ;;
    mixed) writes=0.1 ;;
    esac
    system_args "$system"
    read -r master replica <<<"$server_pids"
    file=$out/raw/$system-$workload-c$clients-r$rep.json
    m0=$(cpu_ticks "$master")
    r0=$(cpu_ticks "$replica")
    load_cpu=$( {
        TIMEFORMAT='%U %S'
        time "$bin/duokv" load "${args[@]}" --clients "$clients" --writes "$writes" \
            --duration "${seconds}s" --keys 10000 --value-size 100 --json >"$file" 2>>"$data/load.log"
    } 2>&1)
    python3 - "$file" "$out/cpu.csv" "$system,$workload,$clients,$rep" "$load_cpu" \
        "$(($(cpu_ticks "$master") - m0))" "$(($(cpu_ticks "$replica") - r0))" "$tick" <<'PY'
import json, sys
path, csv, cell, load_cpu, m, r, tick = sys.argv[1:]
report = json.load(open(path))
s = report["writes"] if report["writes"]["count"] else report["reads"]
user, system = (float(x) for x in load_cpu.split())
elapsed = report["elapsed"]["secs"] + report["elapsed"]["nanos"] / 1e9
with open(csv, "a") as f:
    f.write(f"{cell},{elapsed:.3f},{user + system:.2f},{int(m) / int(tick):.2f},{int(r) / int(tick):.2f}\n")
print(f'{cell.replace(",", " "):<28} {report["ops_per_sec"]:>9.0f} ops/s  write p50 {report["writes"]["p50_us"]:>7.0f} us'
      f'  p99 {report["writes"]["p99_us"]:>7.0f} us  errors {report["errors"]}')
PY
}

read -r -a workloads <<<"${WORKLOADS:-writes mixed}"
read -r -a client_counts <<<"${CLIENTS:-1 16 64}"
total=$((${#workloads[@]} * ${#client_counts[@]} * reps * ${#systems[@]}))
echo "$total runs of ${seconds}s" >&2
for workload in "${workloads[@]}"; do
    for clients in "${client_counts[@]}"; do
        for rep in $(seq "$reps"); do
            if [ "$workload" = writes ] && [ "$clients" = 1 ]; then
                probes+=("$data/floor-r$rep.json")
                probe_floor "$data/floor-r$rep.json"
            fi
            for system in "${systems[@]}"; do
                run "$system" "$workload" "$clients" "$rep"
            done
        done
    done
done

combine_floor "${probes[@]}" >"$out/floor.json"
cat "$out/floor.json" >&2

# What Redis did in the background during the runs (AOF rewrites, the
# replica's sync), from its logs.
for role in master replica; do
    echo "# redis $role"
    grep -E 'rewrit|Background|MASTER <-> REPLICA|sync' "$data/redis-$role.log" || true
done >"$out/redis-events.txt"

"$bin/duokv" perf-report "$out" >/dev/null
echo "wrote $out/README.md and $out/chart.svg" >&2
