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

# A private Docker engine for the docker tests (docker.io and busybox-static are installed when
# missing); with KRON_REQUIRE_DOCKER=1 a missing engine fails those tests instead of skipping them.
# shellcheck disable=SC1091
. scripts/docker-up.sh
export KRON_REQUIRE_DOCKER=1
trap 'kill "$(cat "$DOCKER_TEST_DIR/dockerd.pid" 2>/dev/null)" 2>/dev/null || true' EXIT
python -m pytest "$@"
