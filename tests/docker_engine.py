"""A real Docker engine for the tests: DOCKER_HOST if it answers, and a local busybox image.

`scripts/docker-up.sh` starts a private engine and imports the image; `scripts/test.sh` sets
KRON_REQUIRE_DOCKER=1, which turns a missing engine into a failure: CI never skips these tests.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

IMAGE = "localhost/bbtest:latest"
BUSYBOX = Path("/bin/busybox")
LABEL = "kron.job"  # kron labels every container it creates with the job id


def require_engine() -> Any:
    """A DockerClient for DOCKER_HOST with IMAGE present; fail or skip when there is none."""
    from kron.actions.docker_client import EngineUnreachable, connect

    host = os.environ.get("DOCKER_HOST")
    client = None
    if not host:
        why = "DOCKER_HOST is not set (start an engine with scripts/docker-up.sh)"
    else:
        try:
            client = connect(30)
        except EngineUnreachable as exc:
            why = str(exc)
    if client is None:
        message = f"{why}; these tests need a real Docker engine"
        if os.environ.get("KRON_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{message} (KRON_REQUIRE_DOCKER=1)", pytrace=False)
        pytest.skip(message)
    ensure_image(client)
    return client


def ensure_image(client: Any) -> None:
    """Import IMAGE from the host's busybox-static unless the engine has it already."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(IMAGE)
    except ImageNotFound:
        pass
    else:
        return
    if not BUSYBOX.exists():
        pytest.fail(
            f"{IMAGE} is missing and {BUSYBOX} is not there to build it (apt-get install busybox-static)"
        )
    client.api.import_image_from_data(_rootfs_tar(), repository=IMAGE, changes=['CMD ["/bin/sh"]'])


def _rootfs_tar() -> bytes:
    """A minimal root file system: busybox, its applet links, root in /etc/passwd."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":  # a link named busybox would replace the binary
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def kron_containers(client: Any) -> list[str]:
    """Names of every container kron created that still exists."""
    return sorted(c.name for c in client.containers.list(all=True, filters={"label": LABEL}))
