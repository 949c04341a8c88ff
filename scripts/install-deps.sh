#!/usr/bin/env bash
# Installs what jabberd2-cluster needs on a Debian machine with Node.js: Debian's jabberd2
# (router, sm, c2s, s2s), sqlite3 (to create jabberd2's database), iproute2, openssl, and the npm
# dependencies. Idempotent; needs root for apt-get (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need=()
command -v jabberd2-router >/dev/null 2>&1 || [ -x /usr/sbin/jabberd2-router ] || need+=(jabberd2)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # the peer TLS tests make throwaway certificates
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]} from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install-deps: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
