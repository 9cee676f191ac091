#!/usr/bin/env bash
# The cost of TLS (issue 18): write latency at 1 client (p50/p99) and
# throughput at 64 clients, sync and async, with and without TLS, same
# harness, the two alternated so that drift in the machine hits both.
# Usage: results/tls/run.sh OUT [REPETITIONS]
# Servers on 127.0.0.1 (fsync always), fresh temp data dirs; with TLS, a
# fresh authority from `duokv certs`, both replicas TLS only, the load
# generator through TLS (`duokv --tls-ca`).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$here/target/release}
. "$here/bench/lib.sh"
out=${1:?usage: run.sh OUT [REPETITIONS]}
reps=${2:-4}
mkdir -p "$out/raw"
certs=$(mktemp -d)
"$bin/duokv" certs --out "$certs/c" --node replica=127.0.0.1 >/dev/null
tls_server=(--tls-cert "$certs/c/replica.pem" --tls-key "$certs/c/replica-key.pem" --tls-ca "$certs/c/ca.pem")
tls_client=(--tls-ca "$certs/c/ca.pem")

# pair MODE TLS(yes|no): starts a slave and a master; sets $M, $dir, $pids.
pair() {
    local mode=$1 tls=$2 extra=()
    [ "$tls" = yes ] && extra=("${tls_server[@]}")
    dir=$(mktemp -d)
    local sp mp; sp=$(free_port); mp=$(free_port)
    S=127.0.0.1:$sp; M=127.0.0.1:$mp
    "$bin/duokv-server" --listen "$S" --data-dir "$dir/s" --role slave --master-addr "$M" \
        "${extra[@]}" 2>"$dir/slave.log" &
    local s=$!
    "$bin/duokv-server" --listen "$M" --data-dir "$dir/m" --role master --replica "$S" \
        --replication "$mode" "${extra[@]}" 2>"$dir/master.log" &
    local m=$!
    pids="$m $s"
    for _ in $(seq 200); do
        grep -q "replication link to slave .* up" "$dir/master.log" && return 0
        sleep 0.05
    done
    fail "the pair did not link up: $(tail -3 "$dir/master.log")"
}
stop_pair() { kill $pids 2>/dev/null; wait $pids 2>/dev/null; rm -rf "$dir"; }

echo "# columns: repetition mode clients tls ops_per_sec write_p50_us write_p99_us errors" >"$out/cells.txt"
for rep in $(seq "$reps"); do
    for mode in sync async; do for clients in 1 64; do
        order="no yes"; [ $((rep % 2)) = 0 ] && order="yes no"
        for tls in $order; do
            pair "$mode" "$tls"
            flags=(); [ "$tls" = yes ] && flags=("${tls_client[@]}")
            f="$out/raw/$rep-$mode-$clients-tls-$tls.json"
            "$bin/duokv" "${flags[@]}" load --addr "$M" --clients "$clients" --duration 5s \
                --writes 1.0 --json >"$f" 2>>"$out/stderr.txt" || echo "load failed: $f" >&2
            stop_pair
            line=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["ops_per_sec"]), r["writes"]["p50_us"], r["writes"]["p99_us"], r["errors"])' "$f")
            echo "$rep $mode $clients $tls $line" | tee -a "$out/cells.txt"
        done
    done; done
done
rm -rf "$certs"
git -C "$here" rev-parse HEAD >"$out/commit.txt"
{ uname -a; nproc; grep 'model name' /proc/cpuinfo | head -1; } >"$out/machine.txt"
