#!/usr/bin/env bash
# Makes (once) the Debian 13 chroot with the Swift compiler that test-swift.sh uses: Debian 12
# has no Swift and Debian 13's `swiftlang` needs a newer libc than the host's.
# Usage: swift-chroot.sh [ROOT]   (default $FLUXON_SWIFT_CHROOT or /var/cache/fluxon-swift-chroot)
# Fails loudly when the chroot cannot be made (not root, no network, no debootstrap).
set -euo pipefail
root="${1:-${FLUXON_SWIFT_CHROOT:-/var/cache/fluxon-swift-chroot}}"

fail() {
    echo "" >&2
    echo "!!! SWIFT TOOLCHAIN UNAVAILABLE: $*" >&2
    echo "!!! The Swift bindings test cannot run on this machine; failing on purpose." >&2
    exit 1
}

if [ -x "$root/usr/bin/swiftc" ] && [ -f "$root/.fluxon-swift-ready" ]; then
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "making the chroot needs root (debootstrap, chroot, mount)"
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq debootstrap >/dev/null || fail "cannot install debootstrap"
fi
if [ ! -x "$root/usr/bin/apt-get" ]; then
    rm -rf "$root"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase trixie "$root" http://deb.debian.org/debian >/tmp/fluxon-debootstrap.log 2>&1 \
        || { tail -20 /tmp/fluxon-debootstrap.log >&2; fail "debootstrap of Debian 13 (trixie) failed"; }
fi
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || fail "apt-get update inside the chroot failed"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    swiftlang libc6-dev libstdc++-14-dev >/tmp/fluxon-swiftlang.log 2>&1 \
    || { tail -20 /tmp/fluxon-swiftlang.log >&2; fail "installing swiftlang in the chroot failed"; }
[ -x "$root/usr/bin/swiftc" ] || fail "swiftc missing after installing swiftlang"
touch "$root/.fluxon-swift-ready"
echo "Swift chroot ready in $root"
