#!/bin/sh
# Installs the Debian 12 packages Dovetail needs to build, test and benchmark.
# Idempotent: asks apt only for what dpkg says is missing. Needs root (or sudo).
set -eu

BUILD="build-essential pkg-config libevent-dev libhiredis-dev libxxhash-dev \
libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libopenblas-dev liblapacke-dev \
libjansson-dev libutf8proc-dev libcsv-dev libstemmer-dev libcmocka-dev"
RUNTIME="redis-server redis-tools curl"
TEST="python3 python3-protobuf python3-requests python3-yaml python3-numpy python3-scipy python3-networkx chromium"
BENCH="python3-faiss python3-xapian wrk bc"

FUZZ="clang libclang-rt-14-dev"
VALGRIND="valgrind"

want="$BUILD $RUNTIME $TEST"
[ "${DOVETAIL_BENCH_DEPS:-0}" = 1 ] && want="$want $BENCH"
[ "${DOVETAIL_FUZZ_DEPS:-0}" = 1 ] && want="$want $FUZZ"
[ "${DOVETAIL_VALGRIND_DEPS:-0}" = 1 ] && want="$want $VALGRIND"

missing=""
for p in $want; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
# Node.js may come from Debian or from NodeSource (which bundles npm): take any.
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
