#!/usr/bin/env bash
# tests/fresh-machine.sh: the README's two commands on a fresh machine.
#
# Builds a throwaway Debian root file system with debootstrap (minbase plus
# build-essential: a C compiler, make and perl, nothing else), binds this
# machine's Rust toolchain into it read-only, clones the repository into it
# (so target/ starts empty and the cargo registry starts empty), and runs,
# inside a chroot with a clean environment:
#   1. the README's demo command, with a short --count so it takes seconds;
#   2. the README's test command.
# Tests that need what a fresh machine lacks (sshd, iproute2, redis-server)
# print a SKIPPED line; they are listed at the end. Everything is unmounted
# and removed on exit, whatever happened.
#
# Needs root and debootstrap. Usage: tests/fresh-machine.sh [REPO]
# (default: the repository this script is in; its committed HEAD is tested).
set -euo pipefail

repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
# The Debian release and mirror this machine's apt already uses.
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)

fail() { echo "fresh-machine: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot, mount)"
command -v debootstrap >/dev/null || fail "needs debootstrap: apt-get install debootstrap"
[ -d "$rustup_home/toolchains" ] || fail "no Rust toolchain under $rustup_home"

# The README's commands: the first line of its first code block that runs
# the demo, and the first that runs the tests (their comments dropped).
# One awk picks the line: a `grep -m1` after it would stop reading early,
# and under pipefail a README whose code blocks outgrow the pipe's buffer
# would fail the pipeline with awk's SIGPIPE.
readme_command() {
    awk -v pattern="$1" '/^```/ { block = !block; next } block && $0 ~ pattern { print; exit }' \
        "$repo/README.md" | sed 's/[[:space:]]*#.*$//'
}
demo_command=$(readme_command 'duokv -- demo')
test_command=$(readme_command '^cargo test')
[ -n "$demo_command" ] || fail "README.md shows no demo command"
[ -n "$test_command" ] || fail "README.md shows no test command"

work=$(mktemp -d /var/tmp/duokv-fresh.XXXXXX)
root=$work/root
mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount -l "${mounts[$i]}" 2>/dev/null || true
    done
    # Never cross into a mount that is somehow still there (/dev, /proc).
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
bind() { # bind SOURCE TARGET [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounts+=("$2")
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

echo "== fresh-machine: debootstrap $suite (minbase + build-essential) into $root"
start=$SECONDS
debootstrap --variant=minbase --include=build-essential "$suite" "$root" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log"; fail "debootstrap failed"; }
echo "   done in $((SECONDS - start)) s"

# What a newcomer's machine has besides: the Rust toolchain (rustup's, read
# only), name resolution and the CA bundle for the crate registry.
bind "$rustup_home" "$root/opt/rustup" ro
bind "$cargo_bin" "$root/opt/cargo-bin" ro
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
mount -t sysfs sysfs "$root/sys" && mounts+=("$root/sys")
# /dev for its device nodes (null, urandom), and nothing mounted below it:
# a mount under a bind of the host's /dev could reach the host's.
bind /dev "$root/dev"

git clone --quiet "$repo" "$root/root/duokv"
echo "   cloned $(git -C "$root/root/duokv" log -1 --format='%h %s')"

in_chroot() {
    chroot "$root" /usr/bin/env -i \
        HOME=/root USER=root LANG=C.UTF-8 TERM=dumb \
        RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo \
        PATH=/opt/cargo-bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        /bin/bash -c "cd /root/duokv && $1"
}

echo "== fresh-machine: $demo_command --count 3 --interval 20ms"
start=$SECONDS
in_chroot "$demo_command --count 3 --interval 20ms" > "$work/demo.log" 2>&1 \
    || { tail -n 40 "$work/demo.log"; fail "the README's demo command failed on a fresh machine"; }
grep -q 'staleness' "$work/demo.log" || { cat "$work/demo.log"; fail "the demo printed no report"; }
ls "$root/root/duokv/duokv-demo/sync/latency.svg" >/dev/null || fail "the demo wrote no charts"
echo "   passed in $((SECONDS - start)) s"

echo "== fresh-machine: $test_command"
start=$SECONDS
in_chroot "$test_command" > "$work/test.log" 2>&1 \
    || { grep -E '^test .*FAILED|panicked|^error' "$work/test.log" | head -n 40; tail -n 40 "$work/test.log"; fail "the README's test command failed on a fresh machine"; }
grep -E '^test result:' "$work/test.log" \
    | awk '{ passed += $4; failed += $6; ignored += $8 } END { printf "fresh-machine: %d passed, %d failed\n   (%d ignored)", passed, failed, ignored }'
echo " in $((SECONDS - start)) s"
grep '^SKIPPED' "$work/test.log" | sort -u | sed 's/^/   /' || true
echo "== fresh-machine: ok"
