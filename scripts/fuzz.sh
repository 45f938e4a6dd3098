#!/usr/bin/env bash
# A long run of the loader's fuzz test (tests/test_fuzz.py): random examples, no per-test
# timeout. CI runs the same tests with a fixed, modest number of examples.
#
#   scripts/fuzz.sh             # 20,000 examples per test
#   scripts/fuzz.sh 100000      # as many as you like
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
export KRON_FUZZ_PROFILE=long
export KRON_FUZZ_EXAMPLES="${1:-20000}"
exec python -m pytest -p no:cacheprovider -o timeout=0 -q --hypothesis-show-statistics \
  tests/test_fuzz.py
