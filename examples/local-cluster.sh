#!/usr/bin/env bash
# A Fluxon cluster on this machine, for development: PostgreSQL (shared state and the
# application's tables), NATS (reverse calls across nodes), an S3-compatible object store (the
# cloud files) and three nodes of an application server, all on 127.0.0.1.
#
#   examples/local-cluster.sh up [DIR]     # start everything; DIR (default ./cluster) keeps it
#   examples/local-cluster.sh status [DIR] # what runs, and where
#   examples/local-cluster.sh down [DIR]   # stop everything and remove DIR
#
# The nodes listen on 127.0.0.1:7441, :7442 and :7443 (FLUXON_CLUSTER_PORT sets the first) and
# share one secret key and one certificate (the first node's development certificate,
# DIR/node1/dev-cert.pem, which clients trust). `up` writes DIR/cluster.env: source it to get
# the addresses and URLs (FLUXON_NODES, FLUXON_CLUSTER_CERT, FLUXON_STATE_DATABASE, ...).
#
# The server is examples/cloud's `cloud-server` (built in release mode when absent); another
# fluxon-app server binary can be named by FLUXON_CLUSTER_BIN. PostgreSQL and nats-server come
# from Debian's packages, s3s-fs from crates.io: `up` installs what is missing (apt-get needs
# root). The helpers are the ones CI uses (.ci/postgres.sh, .ci/nats.sh, .ci/s3.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
command=${1:-}
dir=$(realpath -m "${2:-cluster}")
first_port=${FLUXON_CLUSTER_PORT:-7441}

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

wait_for_line() { # FILE TEXT PID
    local i
    for i in $(seq 300); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.2
    done
    echo "local-cluster: $(basename "$1" .log) did not start; its log:" >&2
    cat "$1" >&2
    return 1
}

up() {
    if [ -f "$dir/cluster.env" ]; then
        echo "local-cluster: $dir already holds a cluster (run: $0 down $dir)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    local bin=${FLUXON_CLUSTER_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/cloud-server}
    if [ ! -x "$bin" ]; then
        echo "local-cluster: building cloud-server (release)"
        (cd "$repo" && cargo build --release --quiet --bin cloud-server)
    fi
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
        || { ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; }; then
        echo "local-cluster: installing postgresql and nats-server (Debian packages)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql nats-server >/dev/null
    fi
    # shellcheck source=../.ci/postgres.sh
    source "$repo/.ci/postgres.sh"
    # shellcheck source=../.ci/nats.sh
    source "$repo/.ci/nats.sh"
    # shellcheck source=../.ci/s3.sh
    source "$repo/.ci/s3.sh"
    postgres_start
    nats_start
    s3_start
    local pg="postgresql:///postgres?host=$PG_TMP&user=postgres"
    psql -q "$pg" -c "CREATE DATABASE fluxon_state" -c "CREATE DATABASE app"
    local key
    key=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    {
        echo "PG_TMP=$PG_TMP"
        echo "PG_BIN=$PG_BIN"
        echo "NATS_TMP=$NATS_TMP"
        echo "NATS_PID=$NATS_PID"
        echo "S3_TMP=$S3_TMP"
        echo "S3_PID=$S3_PID"
        echo "export FLUXON_STATE_DATABASE='postgresql:///fluxon_state?host=$PG_TMP&user=postgres'"
        echo "export FLUXON_DATABASE='postgresql:///app?host=$PG_TMP&user=postgres'"
        echo "export FLUXON_NATS='$FLUXON_TEST_NATS'"
        echo "export FLUXON_CLOUD_ROOT='s3://fluxon-test/cluster'"
        echo "export FLUXON_SECRET_KEY='$key'"
        echo "export AWS_ENDPOINT='$FLUXON_TEST_S3' AWS_ALLOW_HTTP=true AWS_REGION=us-east-1"
        echo "export AWS_ACCESS_KEY_ID='$FLUXON_TEST_S3_ACCESS_KEY' AWS_SECRET_ACCESS_KEY='$FLUXON_TEST_S3_SECRET_KEY'"
        echo "export FLUXON_CLUSTER_CERT='$dir/node1/dev-cert.pem'"
    } >"$dir/cluster.env.partial"
    # shellcheck disable=SC1091
    (
        source "$dir/cluster.env.partial"
        local n port tls=() nodes=()
        for n in 1 2 3; do
            port=$((first_port + n - 1))
            nodes+=("127.0.0.1:$port")
            # Every node but the first serves the first one's certificate.
            [ "$n" -gt 1 ] && tls=(--cert "$dir/node1/dev-cert.pem" --key "$dir/node1/dev-key.pem")
            nohup "$bin" --no-console --host 127.0.0.1 --port "$port" --data-dir "$dir/node$n" \
                --node-id "node$n" "${tls[@]}" >"$dir/node$n.log" 2>&1 </dev/null &
            echo "NODE${n}_PID=$!" >>"$dir/cluster.env.partial"
            wait_for_line "$dir/node$n.log" "fluxon server listening" $!
            echo "node$n on 127.0.0.1:$port (log: $dir/node$n.log)"
        done
        echo "export FLUXON_NODES='$(IFS=,; echo "${nodes[*]}")'" >>"$dir/cluster.env.partial"
    )
    mv "$dir/cluster.env.partial" "$dir/cluster.env"
    echo "local cluster up: source $dir/cluster.env; stop it with: $0 down $dir"
}

status() {
    [ -f "$dir/cluster.env" ] || { echo "no cluster in $dir"; exit 1; }
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    local name pid
    for name in NATS S3 NODE1 NODE2 NODE3; do
        pid=$(eval echo "\${${name}_PID:-}")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: stopped"
        fi
    done
    echo "nodes: $FLUXON_NODES"
}

down() {
    local env="$dir/cluster.env"
    [ -f "$env" ] || env="$dir/cluster.env.partial"
    [ -f "$env" ] || { echo "no cluster in $dir"; return 0; }
    # shellcheck disable=SC1090
    source "$env"
    local pid
    for pid in ${NODE1_PID:-} ${NODE2_PID:-} ${NODE3_PID:-}; do
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in ${NODE1_PID:-} ${NODE2_PID:-} ${NODE3_PID:-}; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # shellcheck source=../.ci/postgres.sh
    source "$repo/.ci/postgres.sh"
    # shellcheck source=../.ci/nats.sh
    source "$repo/.ci/nats.sh"
    # shellcheck source=../.ci/s3.sh
    source "$repo/.ci/s3.sh"
    nats_stop
    s3_stop
    postgres_stop
    rm -rf "$dir"
    echo "local cluster down"
}

case "$command" in
    up) up ;;
    status) status ;;
    down) down ;;
    *) usage ;;
esac
