#!/usr/bin/env bash
# A throwaway NATS server for the cluster suites: Debian's nats-server, on 127.0.0.1 at a free
# port, its files in a temporary directory.
#
#   source .ci/nats.sh && nats_start   # exports FLUXON_TEST_NATS (the server's URL)
#   nats_stop                          # stops the server and removes its files
#
# Needs Debian's `nats-server` package (installed by .ci/run).

nats_start() {
    local bin
    bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    [ -x "$bin" ] || { echo "nats.sh: no nats-server installed" >&2; return 1; }
    NATS_TMP=$(mktemp -d /tmp/fluxon-nats.XXXXXX)
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" -a 127.0.0.1 -p "$port" -l "$NATS_TMP/server.log" -P "$NATS_TMP/server.pid" \
        >"$NATS_TMP/stdout.log" 2>&1 </dev/null &
    NATS_PID=$!
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export NATS_TMP NATS_PID FLUXON_TEST_NATS="nats://127.0.0.1:$port"
            echo "$("$bin" --version) on $FLUXON_TEST_NATS (FLUXON_TEST_NATS=$FLUXON_TEST_NATS)"
            return 0
        fi
        kill -0 "$NATS_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$NATS_TMP/server.log" >&2
    echo "nats.sh: nats-server did not start" >&2
    return 1
}

nats_stop() {
    [ -n "${NATS_TMP:-}" ] || return 0
    kill "$NATS_PID" 2>/dev/null || true
    wait "$NATS_PID" 2>/dev/null || true
    rm -rf "$NATS_TMP"
    unset NATS_TMP NATS_PID FLUXON_TEST_NATS
}
