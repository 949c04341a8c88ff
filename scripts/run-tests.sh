#!/usr/bin/env bash
# node:test through tsx over every *.test.ts under test/ (or under the folders given).
# Unit tests run in parallel; tests that start real daemons (test/e2e) run one file at a time.
# When test/e2e is run, its node and cluster files run a second time with framing workers
# (JC_TEST_WORKERS=2, read by test/helpers/*); the first pass uses JC_TEST_WORKERS as given
# (default 0: everything on the main thread).
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@"); [ ${#dirs[@]} -gt 0 ] || dirs=(test/unit test/fuzz test/e2e)
# fuzz findings that are tracked and not fixed yet (see test/fuzz/README.md): reported, not failing
export FUZZ_KNOWN="${FUZZ_KNOWN-router-output-unparseable}"
# the same seeded cases on every run, so a red run is reproducible; FUZZ_SEED=<n> explores others
export FUZZ_SEED="${FUZZ_SEED-20261125}"
status=0
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  mapfile -t files < <(find "$d" -name '*.test.ts' | sort)
  [ ${#files[@]} -gt 0 ] || continue
  conc=2; case "$d" in test/e2e*) conc=1;; esac
  echo "== $d (${#files[@]} files)"
  node --import tsx --test --test-concurrency="$conc" --test-reporter=spec "${files[@]}" || status=1
  if [ "${d%/}" = test/e2e ]; then
    mapfile -t wfiles < <(find "$d" \( -name 'node-*.test.ts' -o -name 'cluster*.test.ts' -o -name 'backpressure.test.ts' \) | sort)
    if [ ${#wfiles[@]} -gt 0 ]; then
      echo "== $d with JC_TEST_WORKERS=2 (${#wfiles[@]} files)"
      JC_TEST_WORKERS=2 node --import tsx --test --test-concurrency=1 --test-reporter=spec "${wfiles[@]}" || status=1
    fi
  fi
done
exit $status
