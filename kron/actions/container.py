"""The docker action: one container per run through the Docker Engine API, always removed.

The docker SDK blocks, so every call runs in a worker thread. Waiting for the container's exit
blocks for the container's whole life: it gets a thread of its own, so long containers never
hold the default executor's few workers (six on two cores) that other calls need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from kron.actions.base import ActionResult, Interrupted, connection_reason, until_stopped
from kron.actions.docker_client import EngineUnreachable, connect
from kron.actions.process import OutputBuffer
from kron.model.job import DockerAction, Job
from kron.model.secrets import NO_SECRETS, Secrets
from kron.model.units import format_duration

__all__ = ["run_docker", "stop_left_behind"]

log = logging.getLogger("kron.docker")

_AFTER_KILL_WAIT_S = 10.0
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")
T = TypeVar("T")


def _volumes(job: Job, volumes: tuple[str, ...]) -> list[str]:
    """Bind mounts with a relative host path (`./data:/data`) are relative to the job's folder."""
    out = []
    for volume in volumes:
        host, sep, rest = volume.partition(":")
        if host.startswith(("./", "../")) or host in (".", ".."):
            host = str((job.path.parent / host).resolve())
        out.append(host + sep + rest)
    return out


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or connection_reason(exc))


async def run_docker(
    job: Job,
    action: DockerAction,
    *,
    env: Mapping[str, str],
    run_id: str | None,
    stop: asyncio.Event,
    secrets: Secrets = NO_SECRETS,
) -> ActionResult:
    """Run the job's container: create, start, wait (job timeout), collect logs, remove.

    A timeout or `stop` sends SIGTERM to the container, then SIGKILL after `kill_grace`. The
    container is removed however the run ends.

    Args:
        job: the job (timeout, kill_grace, max_output, its folder for relative volumes).
        action: the job's `docker` table.
        env: the container's whole environment (see RunEnvironment.for_container).
        run_id: names the container (`kron-<job>-<run_id>`) and labels it.
        stop: set by the runner to stop the run.
        secrets: masked in the container's output as it is read.
    """
    deadline = None if job.timeout is None else time.monotonic() + job.timeout.total_seconds()
    try:
        client = await asyncio.to_thread(connect)
    except EngineUnreachable as exc:
        return ActionResult(error=str(exc))
    try:
        return await _run(
            client,
            job,
            action,
            env=env,
            run_id=run_id,
            stop=stop,
            deadline=deadline,
            secrets=secrets,
        )
    finally:
        await asyncio.shield(asyncio.to_thread(client.close))


def _left(deadline: float | None) -> timedelta | None:
    return None if deadline is None else timedelta(seconds=max(0.0, deadline - time.monotonic()))


def _interrupted(why: Interrupted, job: Job, what: str) -> ActionResult:
    if why is Interrupted.STOPPED:
        return ActionResult(stopped=True, error=f"stopped while {what}")
    assert job.timeout is not None
    return ActionResult(
        timed_out=True, error=f"timeout {format_duration(job.timeout)} reached while {what}"
    )


async def _run(
    client: Any,
    job: Job,
    action: DockerAction,
    *,
    env: Mapping[str, str],
    run_id: str | None,
    stop: asyncio.Event,
    deadline: float | None,
    secrets: Secrets,
) -> ActionResult:
    from docker.errors import DockerException
    from requests import RequestException

    # The image check and a pull are bounded by the job's timeout too; a pull cannot be
    # cancelled, so its thread finishes in the background.
    ready = await until_stopped(
        asyncio.to_thread(_ensure_image, client, action), stop=stop, timeout=_left(deadline)
    )
    if isinstance(ready, Interrupted):
        return _interrupted(ready, job, f"getting image {action.image}")
    if ready is not None:
        return ActionResult(error=ready)
    command = action.command
    options: dict[str, Any] = {
        "command": ["/bin/sh", "-c", command]
        if isinstance(command, str)
        else (list(command) if command else None),
        "entrypoint": list(action.entrypoint) if action.entrypoint is not None else None,
        "environment": env,
        "volumes": _volumes(job, action.volumes),
        "network_mode": action.network,
        "user": action.user,
        "working_dir": action.workdir,
        "labels": {"kron.job": job.id, **({"kron.run_id": run_id} if run_id else {})},
        "detach": True,
    }
    if run_id:
        options["name"] = f"kron-{_NAME_CHARS.sub('-', job.id)}-{run_id}"
    try:
        container = await asyncio.to_thread(client.containers.create, action.image, **options)
    except (DockerException, RequestException) as exc:
        return ActionResult(error=f"cannot create container from {action.image}: {_explain(exc)}")
    try:
        return await _supervise(container, job, stop=stop, deadline=deadline, secrets=secrets)
    finally:
        await asyncio.shield(asyncio.to_thread(_remove, container))


def _ensure_image(client: Any, action: DockerAction) -> str | None:
    """Make sure the image is present (pulling it if `pull = missing`); return an error or None."""
    from docker.errors import DockerException, ImageNotFound
    from requests import RequestException

    try:
        client.images.get(action.image)
    except ImageNotFound:
        pass
    except (DockerException, RequestException) as exc:
        return f"cannot look up image {action.image}: {_explain(exc)}"
    else:
        return None
    if action.pull == "never":
        return f"image {action.image} not present and pull = never"
    log.info("pulling image %s", action.image)
    try:
        client.images.pull(action.image)
    except (DockerException, RequestException) as exc:
        return f"cannot pull image {action.image}: {_explain(exc)}"
    return None


async def _supervise(
    container: Any, job: Job, *, stop: asyncio.Event, deadline: float | None, secrets: Secrets
) -> ActionResult:
    from docker.errors import DockerException
    from requests import RequestException

    try:
        await asyncio.to_thread(container.start)
    except (DockerException, RequestException) as exc:
        return ActionResult(error=f"cannot start container: {_explain(exc)}")
    log.debug("started container %s for job %s", container.short_id, job.id)
    # wait() without a timeout: the job's timeout is ours to apply, with the stop escalation.
    exited = _in_own_thread(
        lambda: container.wait(timeout=None), f"kron-docker-wait-{container.short_id}"
    )
    # asyncio.wait never cancels `exited`: after a stop, the same wait reports the exit.
    ended = await until_stopped(asyncio.wait({exited}), stop=stop, timeout=_left(deadline))
    timed_out = stopped = False
    sent: int | None = None
    if isinstance(ended, Interrupted):
        stopped, timed_out = ended is Interrupted.STOPPED, ended is Interrupted.TIMED_OUT
        reason = (
            "stop requested"
            if stopped
            else f"timeout {format_duration(job.timeout or timedelta())} reached"
        )
        sent = await _stop_container(container, exited, job.kill_grace, reason)
        await asyncio.wait({exited}, timeout=_AFTER_KILL_WAIT_S)
    try:
        if not exited.done():
            raise TimeoutError(f"still running {_AFTER_KILL_WAIT_S:.0f}s after SIGKILL")
        status = exited.result()
    except (DockerException, RequestException, TimeoutError) as exc:
        return ActionResult(
            error=f"lost track of container {container.short_id}: {_explain(exc)}",
            timed_out=timed_out,
            stopped=stopped,
        )
    code = status.get("StatusCode")
    problem = (status.get("Error") or {}).get("Message") or None
    out, err = await asyncio.to_thread(_read_logs, container, job.max_output, secrets)
    killed = sent is not None and code == 128 + sent
    return ActionResult(
        exit_code=None if killed else code,
        signal=sent if killed else None,
        stdout=out.text(),
        stderr=err.text(),
        truncated=out.truncated or err.truncated,
        error=problem,
        timed_out=timed_out,
        stopped=stopped,
        extra={"container_id": container.short_id},
    )


async def _stop_container(
    container: Any, exited: asyncio.Future[Any], grace: timedelta, reason: str
) -> int | None:
    """SIGTERM, up to `grace` for the exit, then SIGKILL; return the signal that ended it."""
    if not await asyncio.to_thread(_signal, container, "SIGTERM"):
        return None
    log.info(
        "stopping container %s (%s): sent SIGTERM, SIGKILL in %s",
        container.short_id,
        reason,
        format_duration(grace),
    )
    done, _ = await asyncio.wait({exited}, timeout=grace.total_seconds())
    if done:
        return int(signal.SIGTERM)
    log.warning(
        "container %s still running %s after SIGTERM: sent SIGKILL",
        container.short_id,
        format_duration(grace),
    )
    await asyncio.to_thread(_signal, container, "SIGKILL")
    return int(signal.SIGKILL)


def _signal(container: Any, name: str) -> bool:
    """Send a signal; False if the container is no longer running."""
    from docker.errors import DockerException
    from requests import RequestException

    try:
        container.kill(signal=name)
    except (DockerException, RequestException) as exc:
        log.debug("container %s: %s not sent: %s", container.short_id, name, _explain(exc))
        return False
    return True


def _read_logs(
    container: Any, max_output: int, secrets: Secrets
) -> tuple[OutputBuffer, OutputBuffer]:
    """Stream stdout and stderr separately into bounded buffers; never hold a whole log."""
    from docker.errors import DockerException
    from requests import RequestException

    buffers = (OutputBuffer(max_output, secrets), OutputBuffer(max_output, secrets))
    for buffer, stdout in zip(buffers, (True, False), strict=True):
        try:
            # follow=False: the container has exited; following could hang on some engines.
            for chunk in container.logs(
                stdout=stdout, stderr=not stdout, stream=True, follow=False
            ):
                buffer.feed(chunk)
        except (DockerException, RequestException) as exc:
            buffer.feed(f"\n[kron: cannot read the container's log: {_explain(exc)}]\n".encode())
    return buffers


def _remove(container: Any) -> None:
    from docker.errors import DockerException, NotFound
    from requests import RequestException

    try:
        container.remove(force=True)
    except NotFound:
        pass
    except (DockerException, RequestException) as exc:
        log.error("cannot remove container %s: %s", container.short_id, _explain(exc))
    else:
        log.debug("removed container %s", container.short_id)


def _in_own_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run a long blocking call in a thread of its own; its result arrives as a future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[..., None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:
            outcome: tuple[Callable[..., None], Any] = (future.set_exception, exc)
        else:
            outcome = (future.set_result, result)
        # RuntimeError: the loop closed first, so nobody waits for this result any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


async def stop_left_behind(job: Job, run_id: str) -> str | None:
    """Stop and remove the container of a run a crashed daemon left behind; return the
    signal that ended it (None when there was none, or the engine cannot be reached)."""
    try:
        client = await asyncio.to_thread(connect)
    except EngineUnreachable as exc:
        log.warning("job %s: cannot look for run %s's container: %s", job.id, run_id, exc)
        return None
    try:
        return await asyncio.to_thread(_stop_by_label, client, run_id, job.kill_grace)
    finally:
        client.close()


def _stop_by_label(client: Any, run_id: str, grace: timedelta) -> str | None:
    from docker.errors import DockerException
    from requests import RequestException

    try:
        found = client.containers.list(all=True, filters={"label": f"kron.run_id={run_id}"})
    except (DockerException, RequestException) as exc:
        log.warning("cannot look for run %s's container: %s", run_id, _explain(exc))
        return None
    sent = None
    for container in found:
        if container.status == "running":
            sent = "SIGTERM"
            _signal(container, "SIGTERM")
            try:
                container.wait(timeout=grace.total_seconds())
            except (DockerException, RequestException):
                sent = "SIGKILL"
                _signal(container, "SIGKILL")
        log.warning("removing container %s of run %s, left by a crash", container.short_id, run_id)
        _remove(container)
    return sent
