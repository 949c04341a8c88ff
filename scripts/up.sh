#!/usr/bin/env bash
# Brings up a local jabberd2 cluster on loopback: real jabberd2 daemons with a jabberd2-cluster
# node in front of each sm, usable by any XMPP client. Installs what it needs first.
# Arguments are passed on (see: bash scripts/up.sh --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec npx tsx scripts/local-cluster.ts "$@"
