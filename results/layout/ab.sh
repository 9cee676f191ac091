#!/usr/bin/env bash
# A/B: old vs new build, sync and async pairs, 1 and 64 clients, writes only.
set -u
run() { # bin mode clients
  local bin=$1 mode=$2 clients=$3 d; d=$(mktemp -d)
  local sp=$((20000 + RANDOM % 20000)) mp=$((40000 + RANDOM % 20000))
  $bin/duokv-server --listen 127.0.0.1:$sp --data-dir $d/s --role slave --master-addr 127.0.0.1:$mp 2>/dev/null &
  local s=$!
  $bin/duokv-server --listen 127.0.0.1:$mp --data-dir $d/m --role master --replica 127.0.0.1:$sp --replication $mode 2>/dev/null &
  local m=$!
  for i in $(seq 100); do $bin/duokv info --addr 127.0.0.1:$mp 2>/dev/null | grep -q "link: up" && break; sleep 0.1; done
  $bin/duokv load --addr 127.0.0.1:$mp --clients $clients --duration 5s --writes 1.0 --json 2>/dev/null | python3 -c "import json,sys; r=json.load(sys.stdin); print(round(r[\"ops_per_sec\"]), r[\"writes\"][\"p50_us\"], r[\"writes\"][\"p99_us\"], r[\"errors\"])" || echo fail
  kill $m $s; wait $m $s 2>/dev/null; rm -rf $d
}
for rep in 1 2 3; do
  for mode in sync async; do for c in 1 64; do
    for which in old new; do
      bin=/work/wt-old/target/release; [ $which = new ] && bin=/work/main/target/release
      echo "$rep $mode $c $which $(run $bin $mode $c)"
    done
  done; done
done
