#!/usr/bin/env bash
# Start a private Docker Engine for kron's tests and import a local busybox image as
# localhost/bbtest:latest: no registry, no host networking changes (--bridge=none, no iptables).
#
# Source it (`. scripts/docker-up.sh`) to get DOCKER_HOST exported; running it also works and
# leaves the engine up. The engine runs until `kill "$(cat "$DOCKER_TEST_DIR/dockerd.pid")"`
# (dockerd removes its pidfile and stops its own containerd). An engine already running from
# DOCKER_TEST_DIR is reused; KRON_DOCKERD_STARTED=1 tells the caller that this call started it,
# so only that caller stops it.
export DOCKER_TEST_DIR=${DOCKER_TEST_DIR:-/tmp/kron-docker}
if [ -f "$DOCKER_TEST_DIR/dockerd.pid" ] && kill -0 "$(cat "$DOCKER_TEST_DIR/dockerd.pid")" 2>/dev/null; then
  export KRON_DOCKERD_STARTED=0
else
  export KRON_DOCKERD_STARTED=1
fi

# The work runs in a subshell so that sourcing this file never changes the caller's shell
# options (the caller may run under `set -euo pipefail` or not).
(
  set -euo pipefail
  export DEBIAN_FRONTEND=noninteractive
  D=$DOCKER_TEST_DIR
  if ! command -v dockerd >/dev/null 2>&1 || ! [ -x /bin/busybox ]; then
    apt-get update -qq
    # --no-install-recommends: no needrestart, apparmor, cgroupfs-mount or git.
    apt-get install -y -qq --no-install-recommends docker.io busybox-static >/dev/null
  fi
  mkdir -p "$D"
  if ! { [ -f "$D/dockerd.pid" ] && kill -0 "$(cat "$D/dockerd.pid")" 2>/dev/null; }; then
    # Network state left by an engine that was killed holds a sandbox per old container, and
    # a restart removes them one by one (minutes for a few thousand). No container of this
    # private engine outlives a test run, so its network state starts afresh.
    rm -f "$D/dockerd.pid" "$D/docker.sock" "$D/root/network/files/local-kv.db"
    dockerd --host "unix://$D/docker.sock" --data-root "$D/root" --exec-root "$D/exec" \
            --pidfile "$D/dockerd.pid" --iptables=false --ip-forward=false --ip-masq=false \
            --bridge=none >"$D/dockerd.log" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 150); do
    curl -sf --unix-socket "$D/docker.sock" http://d/_ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  if ! curl -sf --unix-socket "$D/docker.sock" http://d/_ping >/dev/null; then
    echo "docker-up: dockerd did not answer on $D/docker.sock; its log ends with:" >&2
    tail -50 "$D/dockerd.log" >&2
    exit 1
  fi
  # The test image, from Debian's busybox-static, unless the engine has it already. The
  # --list loop must skip `busybox` itself, or the link replaces the binary.
  export DOCKER_HOST="unix://$D/docker.sock"
  if ! /usr/bin/docker image inspect localhost/bbtest:latest >/dev/null 2>&1; then
    R="$D/rootfs"
    rm -rf "$R"
    mkdir -p "$R"/{bin,etc,tmp,proc,sys,dev,root}
    cp /bin/busybox "$R/bin/busybox"
    for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
    echo 'root:x:0:' >"$R/etc/group"
    chmod 1777 "$R/tmp"
    tar -C "$R" -cf "$D/busybox-rootfs.tar" .
    # Debian's client, explicitly: it matches the engine's API version.
    /usr/bin/docker import --change 'CMD ["/bin/sh"]' "$D/busybox-rootfs.tar" \
      localhost/bbtest:latest >/dev/null
  fi
) || return 1 2>/dev/null || exit 1

export DOCKER_HOST="unix://$DOCKER_TEST_DIR/docker.sock"
