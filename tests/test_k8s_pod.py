"""An exported CronJob's container, run as a pod would run it: its job files projected from the
ConfigMap and a Secret as the kubelet lays them out (a 0777 folder of symlinks into a `..data`
folder, mounted read-only), its args and environment taken from the manifest."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kron.actions.process import run_process
from kron.config.kubernetes.manifests import MOUNT

from .harness import DEADLINE_S
from .httpd import Recorder, serving
from .kube import CONTAINER, POD, cron_job, dig, export, objects
from .test_run_here import records

SLOT = datetime(2026, 1, 2, 2, 0, tzinfo=UTC)  # 03:00 in Berlin
ATOMIC = "..2026_01_02_02_00_00.000000001"  # the kubelet's timestamped folder
_NAMESPACE = ("unshare", "--mount", "--propagation", "private")  # mounts seen by the child only


@pytest.fixture
def server() -> Iterator[Recorder]:
    with serving() as httpd:
        yield httpd


@pytest.fixture
def mount_point() -> Iterator[Path]:
    """An empty folder anyone may traverse, for a tmpfs in a private mount namespace."""
    if os.geteuid() != 0:
        pytest.skip("a mount namespace needs root (CI runs as root)")
    folder = Path(tempfile.mkdtemp(prefix="kron-pod-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _project(
    body: dict[str, Any], files: dict[str, str], secrets: dict[str, str], stage: Path
) -> None:
    """Lay out the pod's `jobs` volume in `stage` as the kubelet's atomic writer does."""
    volume = dig(body, f"{POD}.volumes.0.projected")
    data = stage / ATOMIC
    data.mkdir(parents=True)
    for source in volume["sources"]:
        kind = "configMap" if "configMap" in source else "secret"
        content = files if kind == "configMap" else secrets
        for item in source[kind]["items"]:
            target = data / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content[item["key"]], encoding="utf-8")
            target.chmod(volume["defaultMode"])
    (stage / "..data").symlink_to(ATOMIC)
    for top in sorted({p.name for p in data.iterdir()}):
        (stage / top).symlink_to(f"..data/{top}")


def _pod(
    body: dict[str, Any], stage: Path, mount: Path, *, read_only: bool
) -> subprocess.CompletedProcess[str]:
    """Run the container's args as the image's entrypoint (`kron`) would, in a mount namespace
    where `mount` holds the volume (the manifest's MOUNT, moved for the test)."""
    job_name = f"{body['metadata']['name']}-{int(SLOT.timestamp()) // 60}"
    args = [
        arg.replace("$(KRON_K8S_JOB)", job_name).replace("$$", "$").replace(MOUNT, str(mount))
        for arg in dig(body, f"{CONTAINER}.args")
    ]
    remount = f"mount -o remount,ro {mount} && " if read_only else ""
    script = (
        f"mount -t tmpfs tmpfs {mount} && cp -a {stage}/. {mount}/ && chmod 0777 {mount} && "
        f'{remount}exec "$@"'
    )
    return subprocess.run(
        [*_NAMESPACE, "sh", "-c", script, "pod", sys.executable, "-m", "kron", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={k: v for k, v in os.environ.items() if k != "KRON_JOBS_DIR"},
        check=False,
    )


def test_an_exported_kron_mode_cronjob_runs_from_its_projected_volume(
    jobs_dir: Path,
    write: Callable[[str, str], Path],
    server: Recorder,
    mount_point: Path,
    tmp_path: Path,
) -> None:
    write("kron.toml", 'timezone = "Europe/Berlin"\n')
    write(
        "etl/extract.toml",
        'schedule = "0 3 * * *"\nshell = \'echo "${#GREETING} characters from $(pwd)"\'\n'
        + 'cwd = ".."\n'
        + 'env_file = "extract.env"\ntriggers = ["etl/load"]\n'
        + f'[[notify]]\non = ["success"]\nwebhook = "{server.url("/hook")}"\n',
    )
    write("etl/load.toml", 'schedule = "@manual"\ncommand = ["echo", "loaded"]\n')
    (jobs_dir / "etl" / "extract.env").write_text("GREETING=hello\n", encoding="utf-8")
    exported = export(jobs_dir)
    assert exported.problems == []
    body = cron_job(exported, "etl-extract")
    config = next(
        b
        for b in objects(exported)
        if b["kind"] == "ConfigMap" and b["metadata"]["name"] == "etl-extract"
    )
    stage = tmp_path / "stage"
    # The Secret etl-extract-env-file, as `kubectl create secret generic ... --from-file=env_file=`
    _project(body, config["data"], {"env_file": "GREETING=hello from a Secret\n"}, stage)

    pod = _pod(body, stage, mount_point, read_only=True)
    assert pod.returncode == 0, pod.stderr
    lines = records(pod.stdout)
    runs = [(r["job"], r["trigger"], r["outcome"], r["slot"]) for r in lines if "outcome" in r]
    assert runs == [
        ("etl/extract", "schedule", "started", "2026-01-02T02:00:00Z"),
        ("etl/extract", "schedule", "succeeded", "2026-01-02T02:00:00Z"),
        ("etl/load", "dependency", "started", "2026-01-02T02:00:00Z"),
        ("etl/load", "dependency", "succeeded", "2026-01-02T02:00:00Z"),
    ]
    # The job sees the Secret's value (19 characters; the local env_file's has 5); and
    # `..` of etl/ is the parent of the folder the etl symlink leads to, as the kernel resolves it.
    assert lines[1]["stdout"] == f"19 characters from {mount_point}/{ATOMIC}\n"
    assert [r["delivery"]["ok"] for r in lines if "delivery" in r] == [True]
    assert [(m, p) for m, p, _ in server.seen] == [("POST", "/hook")]


def test_the_same_volume_mounted_writable_is_refused_as_kron_refuses_any_such_folder(
    jobs_dir: Path, write: Callable[[str, str], Path], mount_point: Path, tmp_path: Path
) -> None:
    write("j.toml", 'schedule = "0 3 * * *"\ncommand = ["true"]\njitter = "1s"\n')
    exported = export(jobs_dir)
    body = cron_job(exported, "j")
    config = next(b for b in objects(exported) if b["kind"] == "ConfigMap")
    _project(body, config["data"], {}, tmp_path / "stage")
    pod = _pod(body, tmp_path / "stage", mount_point, read_only=False)
    assert (pod.returncode, pod.stdout) == (1, "")
    assert (
        f"refused: folder {mount_point} is writable by group and others (mode 0777); "
        f"run chmod go-w {mount_point}"
    ) in pod.stderr
    ro = _pod(body, tmp_path / "stage", mount_point, read_only=True)
    assert ro.returncode == 0, ro.stderr
    assert json.loads(ro.stdout.splitlines()[-1])["outcome"] == "succeeded"


def test_a_job_user_that_kron_already_is_needs_no_root() -> None:
    """A pod runs kron as the job's `user` (runAsUser): there is nothing to switch."""
    uid, gid = os.geteuid(), os.getegid()
    as_user = 65534 if uid == 0 else uid
    as_group = 65534 if uid == 0 else gid
    if uid == 0:
        os.setegid(as_group)
        os.seteuid(as_user)
    try:
        same = asyncio.run(
            run_process(["id", "-u"], cwd="/", user=str(as_user), group=str(as_group))
        )
        other = asyncio.run(run_process(["id", "-u"], cwd="/", user=str(as_user + 1)))
    finally:
        if uid == 0:
            os.seteuid(0)
            os.setegid(0)
    assert (same.exit_code, same.stdout, same.error) == (0, f"{as_user}\n", None)
    assert other.error == (f"user and group need kron to run as root; it runs as uid {as_user}")
