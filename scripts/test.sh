#!/usr/bin/env bash
# Runs the whole test suite (type check, unit, integration and end-to-end tests against real
# jabberd2). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npx tsc --noEmit
npm test
