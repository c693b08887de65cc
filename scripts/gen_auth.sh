#!/bin/sh
# Writes a new dovetaild --auth-file: one operator token and one token per tenant, each 44 random
# URL-safe base64 characters from /dev/urandom, in a file only its owner can read (mode 0600).
#
#   scripts/gen_auth.sh FILE [TENANT...]     (default tenants: public suzhou-park, the demo's)
#
# Refuses to overwrite FILE. Token names: "operator", and the tenant's own name (or tenant-N when
# the tenant has characters a name may not have). The tokens are in FILE, never printed.
set -eu
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 FILE [TENANT...]  (default tenants: public suzhou-park)" >&2
    exit 2
fi
out=$1
shift
[ $# -eq 0 ] && set -- public suzhou-park
if [ -e "$out" ]; then
    echo "$0: $out exists; remove it first or choose another name (tokens are never overwritten)" >&2
    exit 1
fi

token() {
    head -c 33 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'
}

umask 077
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
{
    printf '{"tokens": [\n'
    printf '  {"name": "operator", "token": "%s", "operator": true}' "$(token)"
    i=0
    for t in "$@"; do
        i=$((i + 1))
        case "$t" in
            '' | *'"'* | *'\'* | *[[:cntrl:]]*)
                echo "$0: tenant '$t': empty, or has a quote, backslash or control character" >&2
                exit 2
                ;;
        esac
        case "$t" in
            operator | *[!A-Za-z0-9._-]*) name="tenant-$i" ;;
            *) name=$t ;;
        esac
        printf ',\n  {"name": "%s", "token": "%s", "tenants": ["%s"]}' "$name" "$(token)" "$t"
    done
    printf '\n]}\n'
} >"$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "$0: wrote $out (mode 0600): 1 operator token, $# tenant tokens" >&2
