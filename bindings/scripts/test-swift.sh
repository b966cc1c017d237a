#!/usr/bin/env bash
# Swift client test: makes (once, cached) a Debian 13 chroot with the Swift compiler, mounts /proc
# in it, and runs the school bindings test that compiles main.swift with the generated Swift
# (Swift 5 language mode) inside the chroot and runs it against a live server on the host's
# loopback (bindings/tests/app-bindings/tests/foreign.rs).
# Fails loudly when the chroot cannot be made. Needs root.
# Cache: $FLUXON_SWIFT_CHROOT (default /var/cache/fluxon-swift-chroot, about 3.3 GB).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
root="${FLUXON_SWIFT_CHROOT:-/var/cache/fluxon-swift-chroot}"

bash "$repo/bindings/scripts/swift-chroot.sh" "$root"

mounted=""
cleanup() {
    if [ -n "$mounted" ]; then
        umount "$root/proc" || umount -l "$root/proc" || true
    fi
}
trap cleanup EXIT
if ! mountpoint -q "$root/proc"; then
    mount -t proc proc "$root/proc"
    mounted=1
fi

cd "$repo"
FLUXON_SWIFT_CHROOT="$root" \
    cargo test -p fluxon-school-bindings --test foreign swift_client_against_live_server -- --ignored --exact --nocapture
