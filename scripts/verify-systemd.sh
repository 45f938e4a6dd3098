#!/usr/bin/env bash
# Check systemd/kron.service, alone and with the User=kron drop-in, with `systemd-analyze
# verify`. Works without a running systemd (in a container, in CI): the units are copied to a
# scratch folder with ExecStart pointing at an installed kron, since verify insists that the
# executable exists. Any message from verify (an unknown key, a bad value) fails the check.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
    echo "verify-systemd: systemd-analyze not found (apt-get install --no-install-recommends systemd)" >&2
    exit 1
fi
kron_bin=${KRON_BIN:-$(command -v kron || true)}
if [[ -z $kron_bin || ! -x $kron_bin ]]; then
    echo "verify-systemd: no kron executable (install kron, or set KRON_BIN)" >&2
    exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0
for variant in root user; do
    dir=$scratch/$variant
    mkdir -p "$dir"
    sed "s#/usr/local/bin/kron #$kron_bin #" systemd/kron.service >"$dir/kron.service"
    if [[ $variant == user ]]; then
        mkdir -p "$dir/kron.service.d"
        cp systemd/kron.service.d/user.conf "$dir/kron.service.d/"
    fi
    # The trailing colon keeps the default unit path (network-online.target and friends).
    if ! out=$(SYSTEMD_UNIT_PATH="$dir:" systemd-analyze verify --man=no "$dir/kron.service" 2>&1) \
        || [[ -n $out ]]; then
        echo "verify-systemd: kron.service ($variant) is not clean:" >&2
        echo "$out" >&2
        failed=1
    else
        echo "verify-systemd: kron.service ($variant): ok"
    fi
done
exit "$failed"
