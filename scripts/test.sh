#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[dev]'

ruff check .
ruff format --check .
mypy
lint-imports  # the layers and the independence of the actions (pyproject.toml)

# systemd-analyze verify checks the unit files; it needs no running systemd.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
bash scripts/verify-systemd.sh

# Debian's Chromium for the status page's browser test (driven over the DevTools protocol, no
# WebDriver); under CI a missing browser fails that test instead of skipping it.
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# zsh and fish (bash is there) for the completion tests, which load kron's scripts in the real
# shells; under CI a missing shell fails those tests instead of skipping them.
missing_shells=""
for shell in zsh fish; do
  command -v "$shell" >/dev/null 2>&1 || missing_shells="$missing_shells $shell"
done
if [ -n "$missing_shells" ]; then
  apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing_shells >/dev/null
fi

# Debian's PostgreSQL for the cluster tests (they start a throwaway server themselves, as the
# postgres user when run as root) and libfaketime for a node whose clock is off; with
# KRON_REQUIRE_POSTGRES=1 a missing server fails those tests instead of skipping them.
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql faketime >/dev/null
fi
export KRON_REQUIRE_POSTGRES=1

# A private Docker engine for the docker tests (docker.io and busybox-static are installed when
# missing); with KRON_REQUIRE_DOCKER=1 a missing engine fails those tests instead of skipping them.
# shellcheck disable=SC1091
. scripts/docker-up.sh
export KRON_REQUIRE_DOCKER=1
# Stop the engine at exit if this run started it (one already running is left alone).
trap '[ "$KRON_DOCKERD_STARTED" = 1 ] && kill "$(cat "$DOCKER_TEST_DIR/dockerd.pid" 2>/dev/null)" 2>/dev/null || true' EXIT
python -m pytest "$@"
