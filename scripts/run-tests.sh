#!/usr/bin/env bash
# node:test through tsx over every *.test.ts under test/ (or under the folders given).
# Unit tests run in parallel; tests that start real daemons (test/e2e) run one file at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@"); [ ${#dirs[@]} -gt 0 ] || dirs=(test/unit test/e2e)
status=0
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  mapfile -t files < <(find "$d" -name '*.test.ts' | sort)
  [ ${#files[@]} -gt 0 ] || continue
  conc=2; case "$d" in test/e2e*) conc=1;; esac
  echo "== $d (${#files[@]} files)"
  node --import tsx --test --test-concurrency="$conc" --test-reporter=spec "${files[@]}" || status=1
done
exit $status
