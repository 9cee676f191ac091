#!/usr/bin/env bash
# Helpers shared by the scripts in bench/: sourced, never run. They expect
# $bin to name the directory of the release binaries.

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# fail MESSAGE: says why on stderr and exits.
fail() {
    echo "$1" >&2
    exit 1
}

# wait_duokv ADDR [link]: polls (10 s at most) until the duokv server at
# ADDR answers a ping, or with `link`, until its replication link is up.
wait_duokv() {
    for _ in $(seq 200); do
        if [ "${2:-}" = link ]; then
            "${bin:?}/duokv" info --addr "$1" 2>/dev/null | grep -q '^link: up' && return 0
        else
            "${bin:?}/duokv" ping --addr "$1" >/dev/null 2>&1 && return 0
        fi
        sleep 0.05
    done
    fail "duokv at $1 did not come up${2:+ (link)}"
}
