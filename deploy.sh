#!/usr/bin/env bash
# deploy.sh: run the assignment's latency/staleness workload on two EC2 hosts.
#
# Builds the release tools, then runs duokv-deploy against the hosts in
# $HOSTS: a sync run and an async run of 100 updates, one a second, fetched
# into $OUT with the stats report and charts. See ec2/README.md to
# provision the hosts and write ec2/hosts.env.
#
# Variables (all optional):
#   HOSTS      the hosts file                  (default ec2/hosts.env)
#   MODE       sync, async or both             (default both)
#   COUNT      updates per run                 (default 100)
#   INTERVAL   time between updates            (default 1s)
#   CLIENT_ON  where the client runs: master, slave or local (default master)
#   OUT        local directory for the runs    (default results/ec2-YYYY-MM-DD-HHMM; a
#              directory that holds a run is refused)
# Arguments after the options are passed to duokv-deploy as they are, e.g.
#   ./deploy.sh --accept-new-host-keys
#   ./deploy.sh --no-tls            (in clear; TLS from a fresh authority is the default)
#   ./deploy.sh --tls-dir DIR       (your own certificates; ec2/README.md, "TLS")
#   HOSTS=/tmp/hosts.env COUNT=20 INTERVAL=50ms ./deploy.sh
set -euo pipefail

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    # The comment block at the top, up to the first line that is not one.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi

cd "$(dirname "$0")"
hosts=${HOSTS:-ec2/hosts.env}
if [ ! -f "$hosts" ]; then
    echo "deploy.sh: no hosts file at $hosts (copy ec2/hosts.env.example and fill it in; see ec2/README.md)" >&2
    exit 1
fi

# duokv-deploy (the deploy feature: SSH through libssh2 and the system's
# OpenSSL) and duokv, which the hosts run
if ! pkg-config --exists openssl 2>/dev/null; then
    echo "deploy.sh: the deployer links OpenSSL: apt-get install libssl-dev pkg-config (or your system's equivalent)" >&2
    exit 1
fi
cargo build --release -p duokv-tools --features deploy
exec target/release/duokv-deploy \
    --hosts "$hosts" \
    --mode "${MODE:-both}" \
    --count "${COUNT:-100}" \
    --interval "${INTERVAL:-1s}" \
    --client-on "${CLIENT_ON:-master}" \
    --out "${OUT:-results/ec2-$(date -u +%Y-%m-%d-%H%M)}" \
    --bin-dir target/release \
    "$@"
