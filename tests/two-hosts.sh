#!/usr/bin/env bash
# Two SSH "hosts" on this machine, for testing the deployer for real: two
# network namespaces joined by a bridge, each running its own OpenSSH sshd
# with host keys and an authorized key made for the occasion, and its own
# working directory.
#
#   tests/two-hosts.sh up DIR     create them; writes DIR/hosts.env (for
#                                 duokv-deploy --hosts), DIR/known_hosts,
#                                 DIR/id_ed25519 (the client key)
#   tests/two-hosts.sh down DIR   stop every process in them, remove them
#   tests/two-hosts.sh stop-sshd DIR HOST   stop one host's sshd (a or b)
#
# Needs root, iproute2 and openssh-server. Addresses are 10.231.N.2 (host a,
# the master) and 10.231.N.3 (host b, the slave), N from DIR/net or random;
# nothing outside these namespaces and the bridge is touched or reached.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

[ $# -ge 2 ] || { usage; exit 2; }
action=$1
dir=$(realpath -m "$2")

names() { # sets net, br, ns_a, ns_b, ip_a, ip_b from DIR/net
    net=$(cat "$dir/net")
    br=dkvbr$net
    ns_a=duokv-$net-a
    ns_b=duokv-$net-b
    ip_a=10.231.$net.2
    ip_b=10.231.$net.3
}

up() {
    command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || { echo "sshd not found: apt-get install openssh-server" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
    mkdir -p "$dir"
    # Pick a /24 whose bridge does not exist yet.
    local net
    for _ in $(seq 50); do
        net=$((RANDOM % 200 + 20))
        ip link show "dkvbr$net" >/dev/null 2>&1 || break
    done
    echo "$net" >"$dir/net"
    names
    ip link add "$br" type bridge
    ip addr add "10.231.$net.1/24" dev "$br"
    ip link set "$br" up
    ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519" -C duokv-test-client
    cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
    chmod 600 "$dir/authorized_keys"
    : >"$dir/known_hosts"
    mkdir -p /run/sshd
    local host ns ipaddr veth
    for host in a b; do
        if [ $host = a ]; then ns=$ns_a; ipaddr=$ip_a; else ns=$ns_b; ipaddr=$ip_b; fi
        veth=dkv$net$host
        ip netns add "$ns"
        ip link add "$veth" type veth peer name "${veth}p"
        ip link set "${veth}p" netns "$ns"
        ip link set "$veth" master "$br" up
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" ip addr add "$ipaddr/24" dev "${veth}p"
        ip netns exec "$ns" ip link set "${veth}p" up
        mkdir -p "$dir/host-$host/work"
        ssh-keygen -q -t ed25519 -N '' -f "$dir/host-$host/ssh_host_ed25519_key" -C "duokv-test-host-$host"
        cat >"$dir/host-$host/sshd_config" <<EOF
Port 22
ListenAddress $ipaddr
HostKey $dir/host-$host/ssh_host_ed25519_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/host-$host/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
        ip netns exec "$ns" "$(command -v sshd || echo /usr/sbin/sshd)" -f "$dir/host-$host/sshd_config" -E "$dir/host-$host/sshd.log"
        echo "$ipaddr $(cut -d' ' -f1,2 "$dir/host-$host/ssh_host_ed25519_key.pub")" >>"$dir/known_hosts"
    done
    # Wait until both sshds accept connections.
    for ipaddr in "$ip_a" "$ip_b"; do
        for _ in $(seq 100); do
            if (exec 3<>"/dev/tcp/$ipaddr/22") 2>/dev/null; then break; fi
            sleep 0.05
        done
    done
    cat >"$dir/hosts.env" <<EOF
# Two network namespaces on this machine, made by tests/two-hosts.sh: not EC2.
MASTER_SSH=$ip_a
MASTER_PRIVATE=$ip_a
SLAVE_SSH=$ip_b
SLAVE_PRIVATE=$ip_b
SSH_USER=$(id -un)
SSH_KEY=$dir/id_ed25519
SSH_PORT=22
MASTER_PORT=7070
SLAVE_PORT=7070
REMOTE_DIR=$dir/host-a/work
MASTER_REMOTE_DIR=$dir/host-a/work
SLAVE_REMOTE_DIR=$dir/host-b/work
KNOWN_HOSTS=$dir/known_hosts
EOF
    echo "hosts up: master $ip_a ($ns_a), slave $ip_b ($ns_b); $dir/hosts.env"
}

stop_sshd() { # HOST
    local pidfile=$dir/host-$1/sshd.pid
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

down() {
    [ -f "$dir/net" ] || return 0
    names
    local ns pid
    for ns in "$ns_a" "$ns_b"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
            ip netns delete "$ns" || true
        fi
    done
    ip link delete "$br" 2>/dev/null || true
    ip link delete "dkv${net}a" 2>/dev/null || true
    ip link delete "dkv${net}b" 2>/dev/null || true
    rm -f "$dir/net"
}

case $action in
    up) up ;;
    down) down ;;
    stop-sshd) [ $# -ge 3 ] || { usage; exit 2; }; stop_sshd "$3" ;;
    *) usage; exit 2 ;;
esac
