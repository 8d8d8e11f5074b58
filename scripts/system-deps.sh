#!/usr/bin/env bash
# Installs the real parts some tests start: PostgreSQL (Debian's server binaries, started by the
# tests on a loopback port in a temp directory) and headless Chromium (renders the HTML pages).
# Idempotent: does nothing when both are there. Needs root and apt-get (a fresh CI machine has
# both); elsewhere it says loudly what is missing and the tests that need it skip with a reason.
set -uo pipefail

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

missing=()
have_pg || missing+=(postgresql)
have_chromium || missing+=(chromium fonts-dejavu-core)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "!! system-deps: ${missing[*]} missing and cannot be installed here (needs root and apt-get);" >&2
    echo "!! the PostgreSQL and Chromium tests will skip and say so. Install them with your package manager." >&2
    exit 0
fi
echo "system-deps: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || { echo "!! system-deps: apt-get update failed" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "!! system-deps: apt-get install ${missing[*]} failed" >&2; exit 1; }
# Debian's postgresql package starts a cluster of its own; the tests start their own servers.
if command -v pg_ctlcluster >/dev/null 2>&1; then
    service postgresql stop >/dev/null 2>&1 || true
fi
echo "system-deps: done" >&2
