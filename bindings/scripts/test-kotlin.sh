#!/usr/bin/env bash
# Kotlin/JVM client test: installs (once) the Kotlin compiler from npm and JNA from Debian, then
# runs the school bindings test that compiles TestSchool.kt with the generated Kotlin and runs it
# on the JVM against a live server (bindings/tests/app-bindings/tests/foreign.rs), and the cloud
# example's Kotlin flow against a live cloud server (examples/cloud/bindings/tests/foreign.rs).
# Cache: $FLUXON_CACHE (default <repo>/target/foreign-toolchains).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${FLUXON_CACHE:-$repo/target/foreign-toolchains}"
kotlin_version=2.4.20

if [ ! -f /usr/share/java/jna.jar ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjna-java >/dev/null
fi
command -v java >/dev/null || { echo "!!! no java on PATH: install a JDK (17+)" >&2; exit 1; }
kotlin_home="$cache/kotlin-$kotlin_version/node_modules/kotlin-compiler"
if [ ! -x "$kotlin_home/bin/kotlinc" ]; then
    mkdir -p "$cache/kotlin-$kotlin_version"
    npm install --silent --no-audit --no-fund --prefix "$cache/kotlin-$kotlin_version" \
        "kotlin-compiler@$kotlin_version"
    chmod +x "$kotlin_home/bin/"* || true
fi
[ -x "$kotlin_home/bin/kotlinc" ] || { echo "!!! kotlinc missing in $kotlin_home" >&2; exit 1; }

cd "$repo"
FLUXON_KOTLIN_HOME="$kotlin_home" FLUXON_JNA_JAR=/usr/share/java/jna.jar \
    cargo test -p fluxon-school-bindings --test foreign kotlin_client_against_live_server -- --ignored --exact --nocapture
FLUXON_KOTLIN_HOME="$kotlin_home" FLUXON_JNA_JAR=/usr/share/java/jna.jar \
    cargo test -p cloud-bindings --test foreign kotlin_runs_the_cloud_flow -- --ignored --exact --nocapture
