#!/usr/bin/env bash
# The t-visibility measurements of issue 17, as run for README.md here.
# Usage: results/t-visibility/run.sh OUT SECTION...
#   seed      the seed's workload (100 writes, 1 s apart), sync and async,
#             the probe reading at the default delays (about 11 reads each)
#   idle      the same pair at 20 writes/s, 3000 writes, sync and async:
#             many reads per delay, the pair otherwise idle
#   load      async, 3000 writes at 10 ms while `duokv load` drives 16,
#             then 64, closed-loop writers at the master (other keys)
#   delayed   a slave with --apply-delay 250ms, async and sync, 600 writes
#             at 50 ms, read around the delay
# Every run: servers on 127.0.0.1 (fsync always), fresh temp data dirs,
# event logs gathered into the run directory, then `duokv stats`.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$here/target/release}
. "$here/bench/lib.sh"
out=${1:?usage: run.sh OUT SECTION...}; shift
mkdir -p "$out"

# pair MODE [slave flags...]: starts a slave and a master (--replication
# MODE); sets $M, $S, $dir, $pids.
pair() {
    local mode=$1; shift
    dir=$(mktemp -d)
    local sp mp; sp=$(free_port); mp=$(free_port)
    S=127.0.0.1:$sp; M=127.0.0.1:$mp
    "$bin/duokv-server" --listen "$S" --data-dir "$dir/s" --role slave --master-addr "$M" \
        --event-log "$dir/slave-events.csv" "$@" 2>"$dir/slave.log" &
    local s=$!
    "$bin/duokv-server" --listen "$M" --data-dir "$dir/m" --role master --replica "$S" \
        --replication "$mode" --event-log "$dir/master-events.csv" 2>"$dir/master.log" &
    local m=$!
    pids="$m $s"
    wait_duokv "$M" link
}
stop_pair() { kill $pids 2>/dev/null; wait $pids 2>/dev/null; rm -rf "$dir"; }

# bench RUN COUNT INTERVAL DELAYS: one `duokv bench` with the probe at
# DELAYS into $out/RUN, then its report.
bench() {
    local run=$1 count=$2 interval=$3 delays=$4
    "$bin/duokv" bench --master "$M" --slave "$S" --count "$count" --interval "$interval" \
        --probe-read "$delays" --master-events "$dir/master-events.csv" \
        --slave-events "$dir/slave-events.csv" --out "$out/$run" 2>>"$out/stderr.txt" \
        || echo "bench failed: $run" >&2
    cp "$dir/master.log" "$dir/slave.log" "$out/$run/" 2>/dev/null
    "$bin/duokv" stats "$out/$run" >"$out/$run/report.txt" 2>>"$out/stderr.txt"
}

for section in "$@"; do case $section in
seed)
    for mode in sync async; do
        pair $mode; bench seed-$mode 100 1s at; stop_pair
    done ;;
idle)
    for mode in sync async; do
        pair $mode; bench idle-$mode 3000 50ms at; stop_pair
    done ;;
load)
    for clients in 16 64; do
        pair async
        "$bin/duokv" load --addr "$M" --clients $clients --duration 45s --writes 1.0 --json \
            >"$out/load-$clients.json" 2>>"$out/stderr.txt" &
        loader=$!
        sleep 3 # the load's ramp-up, so that the bench's writes all meet it
        bench load-$clients 3000 10ms at
        wait $loader
        stop_pair
    done ;;
delayed)
    for mode in async sync; do
        pair $mode --apply-delay 250ms
        bench delayed-$mode 600 50ms at:0,10ms,100ms,200ms,240ms,249ms,250ms,251ms,255ms,260ms,300ms,500ms
        stop_pair
    done ;;
*) echo "unknown section $section" >&2 ;;
esac; done
git -C "$here" rev-parse HEAD >"$out/commit.txt"
{ uname -a; nproc; grep 'model name' /proc/cpuinfo | head -1; } >"$out/machine.txt"
