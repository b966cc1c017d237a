#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suites, listening only on a Unix socket in a
# temporary directory (no TCP port, no system service).
#
#   source .ci/postgres.sh && postgres_start   # exports FLUXON_TEST_POSTGRES
#   postgres_stop                              # stops the cluster and removes its files
#
# Needs Debian's `postgresql` package (installed by .ci/run) and a `postgres` user to run the
# server as (the package creates it; initdb refuses to run as root).

postgres_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    return 1
}

postgres_start() {
    local bin
    bin=$(postgres_bin) || { echo "postgres.sh: no PostgreSQL server installed" >&2; return 1; }
    PG_TMP=$(mktemp -d /tmp/fluxon-pg.XXXXXX)
    chown postgres:postgres "$PG_TMP"
    chmod 0755 "$PG_TMP"
    local as_pg=(runuser -u postgres --)
    [ "$(id -u)" != 0 ] && as_pg=()
    "${as_pg[@]}" "$bin/initdb" -D "$PG_TMP/data" -U postgres --auth=trust -E UTF8 >"$PG_TMP/initdb.log" 2>&1 \
        || { cat "$PG_TMP/initdb.log" >&2; return 1; }
    "${as_pg[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 60 \
        -o "-k $PG_TMP -c listen_addresses='' -c max_connections=300 -c fsync=on" start >/dev/null \
        || { cat "$PG_TMP/server.log" >&2; return 1; }
    export PG_TMP PG_BIN="$bin"
    export FLUXON_TEST_POSTGRES="postgresql:///postgres?host=$PG_TMP&user=postgres"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on $PG_TMP (FLUXON_TEST_POSTGRES=$FLUXON_TEST_POSTGRES)"
}

postgres_stop() {
    [ -n "${PG_TMP:-}" ] || return 0
    local as_pg=(runuser -u postgres --)
    [ "$(id -u)" != 0 ] && as_pg=()
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
    unset PG_TMP FLUXON_TEST_POSTGRES
}
