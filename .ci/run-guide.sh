#!/usr/bin/env bash
# Runs a guide's commands as a reader would: every ```sh block of the Markdown file, in order,
# in one bash (so variables carry over), from a fresh clone of this repository in a temporary
# directory. ```text blocks are output and are not run.
#
#   bash .ci/run-guide.sh docs/deploy.md
#
# CARGO_TARGET_DIR defaults to this checkout's target/ so the clone reuses its builds.
set -euo pipefail
guide=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/fluxon-guide.XXXXXX)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
git clone -q "$repo" "$work/fluxon"
script="$work/guide.sh"
{
    echo "set -euo pipefail"
    # Whatever the guide started in the background is stopped when it ends, pass or fail.
    echo 'trap '"'"'kill $(jobs -p) 2>/dev/null || true'"'"' EXIT'
    echo "set -x"
    awk '/^```sh$/ { inside = 1; next } /^```/ { inside = 0; next } inside { print }' "$repo/$guide"
} > "$script"
echo "== running $(grep -c . "$script") lines of $guide in $work/fluxon"
cd "$work/fluxon"
status=0
bash "$script" < /dev/null || status=$?
rm -rf "$work"
if [ "$status" -ne 0 ]; then
    echo "== $guide: a command failed (exit $status)"
    exit "$status"
fi
echo "== $guide: every command ran"
