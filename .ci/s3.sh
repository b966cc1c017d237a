#!/usr/bin/env bash
# A throwaway S3-compatible object store for the test suites: s3s-fs (from crates.io), serving a
# temporary directory on 127.0.0.1 at a free port.
#
#   source .ci/s3.sh && s3_start   # exports FLUXON_TEST_S3 (the endpoint) and its credentials
#   s3_stop                        # stops the server and removes its files
#
# The test bucket is a directory of the server's root, made before it starts.

S3S_VERSION=0.14.1   # the newest release that builds with this toolchain (rustc 1.95)

s3_start() {
    local bin="${S3S_ROOT:-$HOME/.cache/fluxon-ci}/bin/s3s-fs"
    if [ ! -x "$bin" ]; then
        echo "s3.sh: installing s3s-fs $S3S_VERSION from crates.io (about two minutes)"
        cargo install --quiet --locked --features binary --root "$(dirname "$(dirname "$bin")")" \
            "s3s-fs@$S3S_VERSION" || { echo "s3.sh: cannot install s3s-fs" >&2; return 1; }
    fi
    S3_TMP=$(mktemp -d /tmp/fluxon-s3.XXXXXX)
    mkdir -p "$S3_TMP/data/fluxon-test"
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    export FLUXON_TEST_S3_ACCESS_KEY=fluxon-test FLUXON_TEST_S3_SECRET_KEY=fluxon-test-secret
    "$bin" --host 127.0.0.1 --port "$port" --access-key "$FLUXON_TEST_S3_ACCESS_KEY" \
        --secret-key "$FLUXON_TEST_S3_SECRET_KEY" "$S3_TMP/data" >"$S3_TMP/server.log" 2>&1 &
    S3_PID=$!
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export S3_TMP S3_PID FLUXON_TEST_S3="http://127.0.0.1:$port"
            echo "s3s-fs $S3S_VERSION on $FLUXON_TEST_S3, bucket fluxon-test (FLUXON_TEST_S3=$FLUXON_TEST_S3)"
            return 0
        fi
        kill -0 "$S3_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$S3_TMP/server.log" >&2
    echo "s3.sh: s3s-fs did not start" >&2
    return 1
}

s3_stop() {
    [ -n "${S3_TMP:-}" ] || return 0
    kill "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    rm -rf "$S3_TMP"
    unset S3_TMP S3_PID FLUXON_TEST_S3 FLUXON_TEST_S3_ACCESS_KEY FLUXON_TEST_S3_SECRET_KEY
}
