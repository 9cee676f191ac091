#!/usr/bin/env bash
# The read contracts' measurements (issue 14), as run for README.md here.
# Usage: results/read-contracts/run.sh OUT SECTION...
#   SECTION: ab (gating A/B), ab-more (6 more repetitions of its 64-client
#   cells, the order of the builds swapped each time), after (reads on the slave right after a
#   write), visible (sync-visible vs sync), bounded (bounded staleness under
#   load), bench (duokv bench with the probe modes, and duokv stats)
# NEW and OLD name the release directories of the two builds (default:
# this worktree's, and the A/B's old worktree under /var/tmp). Every run
# uses NEW's `duokv` as the client, so only the servers differ in the A/B.
# One run at a time, servers on 127.0.0.1, data in fresh temp dirs.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
NEW=${NEW:-$here/target/release}
OLD=${OLD:-/var/tmp/duokv-ab-old/target/release}
bin=$NEW
. "$here/bench/lib.sh"
out=${1:?usage: run.sh OUT SECTION...}; shift
mkdir -p "$out"

# pair SERVERBIN MODE [extra master flags...]: starts a slave and a master
# (--replication MODE), sets $M $S (addresses), $dir, $pids.
pair() {
    local sbin=$1 mode=$2; shift 2
    dir=$(mktemp -d)
    local sp mp; sp=$(free_port); mp=$(free_port)
    S=127.0.0.1:$sp; M=127.0.0.1:$mp
    "$sbin/duokv-server" --listen "$S" --data-dir "$dir/s" --role slave --master-addr "$M" \
        --event-log "$dir/slave-events.csv" 2>"$dir/slave.log" &
    local s=$!
    "$sbin/duokv-server" --listen "$M" --data-dir "$dir/m" --role master --replica "$S" \
        --replication "$mode" --event-log "$dir/master-events.csv" "$@" 2>"$dir/master.log" &
    local m=$!
    pids="$m $s"
    wait_duokv "$M" link
}
stop_pair() { kill $pids 2>/dev/null; wait $pids 2>/dev/null; rm -rf "$dir"; }

# load_cell FILE ARGS...: one duokv load run, its JSON report to FILE.
load_cell() { local f=$1; shift; "$NEW/duokv" load --json "$@" >"$f" 2>>"$out/stderr.txt" || echo "load failed: $f" >&2; }

summary() { # FILE: ops/s, write p50, p99, errors
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["ops_per_sec"]), r["writes"]["p50_us"], r["writes"]["p99_us"], r["errors"])' "$1"
}

for section in "$@"; do case $section in
ab)
    mkdir -p "$out/ab"
    echo "# old = $(git -C "$OLD/../.." rev-parse --short HEAD), new = $(git -C "$here" rev-parse --short HEAD)" >"$out/ab.txt"
    echo "# columns: repetition mode clients build ops_per_sec write_p50_us write_p99_us errors" >>"$out/ab.txt"
    for rep in 1 2 3 4; do
        for mode in sync async; do for c in 1 64; do
            for which in old new; do
                sbin=$NEW; [ $which = old ] && sbin=$OLD
                pair "$sbin" $mode
                f="$out/ab/$rep-$mode-$c-$which.json"
                load_cell "$f" --addr "$M" --clients $c --duration 5s --writes 1.0
                stop_pair
                echo "$rep $mode $c $which $(summary "$f")" | tee -a "$out/ab.txt"
            done
        done; done
    done ;;
ab-more)
    # More repetitions of the 64-client cells, the noisiest, the builds'
    # order swapped every repetition (new first on odd ones).
    mkdir -p "$out/ab"
    echo "# more 64-client cells, order swapped each repetition; same columns" >>"$out/ab.txt"
    for rep in 5 6 7 8 9 10; do for mode in sync async; do
        order="old new"; [ $((rep % 2)) = 1 ] && order="new old"
        for which in $order; do
            sbin=$NEW; [ $which = old ] && sbin=$OLD
            pair "$sbin" $mode
            f="$out/ab/$rep-$mode-64-$which.json"
            load_cell "$f" --addr "$M" --clients 64 --duration 5s --writes 1.0
            stop_pair
            echo "$rep $mode 64 $which $(summary "$f")" | tee -a "$out/ab.txt"
        done
    done; done ;;
visible)
    mkdir -p "$out/visible"
    echo "# columns: repetition mode clients ops_per_sec write_p50_us write_p99_us errors" >"$out/visible.txt"
    for rep in 1 2 3; do for c in 1 64; do for mode in sync sync-visible; do
        pair "$NEW" $mode
        f="$out/visible/$rep-$mode-$c.json"
        load_cell "$f" --addr "$M" --clients $c --duration 5s --writes 1.0
        stop_pair
        echo "$rep $mode $c $(summary "$f")" | tee -a "$out/visible.txt"
    done; done; done ;;
after)
    # The bench's probe reads right after each commit: on the slave after
    # the write's token, and on the master, in each mode; 1000 writes 2 ms
    # apart each.
    for mode in async sync sync-visible; do for where in slave master; do
        pair "$NEW" $mode
        probe_addr=$S; [ $where = master ] && probe_addr=$M
        d="$out/after/$mode-$where"
        "$NEW/duokv" bench --master "$M" --slave "$S" --count 1000 --interval 2ms \
            --probe-read after --probe-addr "$probe_addr" --probe-patience 1s --out "$d" \
            --master-events "$dir/master-events.csv" --slave-events "$dir/slave-events.csv" \
            >>"$out/stderr.txt" 2>&1
        stop_pair
        "$NEW/duokv" stats --no-charts "$d" >"$d/report.txt"
        "$NEW/duokv" stats --no-charts --json "$d" >"$d/stats.json"
        echo "after $mode $where: $(grep -A1 'reader probe' "$d/report.txt" | tail -1)"
    done; done
    # Read your writes under concurrency: 16 clients, half writes, reads of
    # each client's own last write after its token, on the slave and on the
    # master.
    for mode in async sync; do for where in slave master; do
        pair "$NEW" $mode
        ra=$S; [ $where = master ] && ra=$M
        load_cell "$out/after/load-$mode-$where.json" --addr "$M" --read-addr "$ra" \
            --clients 16 --writes 0.5 --read-after --read-wait 1s --duration 5s
        stop_pair
        echo "load after $mode $where done"
    done; done ;;
bounded)
    mkdir -p "$out/bounded"
    for rep in 1 2; do for bound in 1ms 5ms 50ms; do
        pair "$NEW" async
        load_cell "$out/bounded/$rep-$bound.json" --addr "$M" --clients 64 --writes 1.0 \
            --readers 4 --read-addr "$S" --read-max-staleness $bound --read-wait 20ms \
            --sample-every 10ms --duration 10s
        stop_pair
        echo "bounded $rep $bound done"
    done; done ;;
bench)
    for probe in poll after fresh:5ms; do
        pair "$NEW" async
        d="$out/bench/async-${probe/:/-}"
        "$NEW/duokv" bench --master "$M" --slave "$S" --count 200 --interval 5ms \
            --probe-read $probe --probe-patience 1s --out "$d" \
            --master-events "$dir/master-events.csv" --slave-events "$dir/slave-events.csv" \
            >>"$out/stderr.txt" 2>&1
        cp "$dir/master.log" "$dir/slave.log" "$d/"
        stop_pair
    done
    "$NEW/duokv" stats "$out"/bench/async-* >"$out/bench/report.txt" ;;
*) fail "unknown section $section" ;;
esac; done
