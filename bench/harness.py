"""What every workload needs: the bench venvs, daemons watched from /proc, job timestamps, stats."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# kron and the peers cannot share one venv (yacron 0.19 pins ruamel.yaml < 0.17.5, kron needs
# 0.19 or later): kron goes in bench/.venv, yacron and APScheduler in bench/.venv-peers.
VENV = BENCH_DIR / ".venv"
VENV_BIN = VENV / "bin"
PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_BIN = PEERS_VENV / "bin"
PEERS = ("yacron==0.19.*", "APScheduler==3.11.*")
RUNNERS = ("kron", "yacron", "apscheduler", "cron")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    """Progress on stderr, so stdout keeps only the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the bench venvs ---------------------------------------------------------------------------


def ensure_venv() -> None:
    """Create bench/.venv with kron (editable), reinstalled when pyproject changes, and
    bench/.venv-peers with yacron and APScheduler."""
    marker = VENV / ".kron-pyproject-sha256"
    pyproject_sha = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    # Runners start as installed ones do, from cached bytecode: a shell that sets
    # PYTHONDONTWRITEBYTECODE would make every start compile its sources again.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for venv in (VENV, PEERS_VENV):
        if not (venv / "bin" / "python").exists():
            say(f"creating {venv.relative_to(REPO)}")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not (marker.exists() and marker.read_text() == pyproject_sha and _imports(VENV_BIN, "kron")):
        _install(VENV_BIN / "python", "-e", str(REPO))
        marker.write_text(pyproject_sha)
    if not _imports(PEERS_BIN, "yacron, apscheduler"):
        _install(PEERS_BIN / "python", *PEERS)
    # A file that does not compile is only left to compile at import.
    for venv in (VENV, PEERS_VENV):
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")],
            check=False,
            capture_output=True,
        )
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "compileall", "-q", str(REPO / "kron")],
        check=False,
        capture_output=True,
    )


def _install(python: Path, *what: str) -> None:
    say(f"installing {' '.join(what)} into {python.parent.parent.relative_to(REPO)}")
    result = subprocess.run(  # noqa: PLW1510 (the exit code is checked below, with pip's output)
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *what],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"pip install failed:\n{result.stdout}{result.stderr}")


def _imports(bin_dir: Path, modules: str) -> bool:
    probe = [str(bin_dir / "python"), "-c", f"import {modules}"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def versions() -> dict[str, str]:
    """Versions as the bench venvs see them, Debian's cron package, and the kron commit."""
    code = (
        "import importlib.metadata as m, sys; print(sys.version.split()[0]);"
        "[print(m.version(d)) for d in sys.argv[1:]]"
    )
    ours = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code, "kron"], capture_output=True, text=True, check=True
    )
    peers = subprocess.run(
        [str(PEERS_BIN / "python"), "-c", code, "yacron", "APScheduler"],
        capture_output=True,
        text=True,
        check=True,
    )
    python, kron = ours.stdout.split()
    _, yacron, aps = peers.stdout.split()
    cron = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "cron"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", "kron", "pyproject.toml")
    if dirty:
        commit += f" + uncommitted changes in {len(dirty.splitlines())} file(s) under kron/"
    return {
        "python": python,
        "kron": f"{kron} ({commit})",
        "yacron": yacron,
        "apscheduler": aps,
        "cron": cron or "unknown",
    }


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def machine() -> dict[str, str]:
    """nproc, CPU model, memory, kernel and load, read from /proc."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def venv_command(runner: str) -> list[str]:
    """The argv prefix that starts a runner from its bench venv."""
    if runner == "apscheduler":
        return [str(PEERS_BIN / "python"), str(BENCH_DIR / "apscheduler_daemon.py")]
    if runner == "yacron":
        return [str(PEERS_BIN / "yacron")]
    if runner == "cron":
        return []  # crond.cron_argv builds the whole command line
    return [str(VENV_BIN / runner)]


# -- processes ----------------------------------------------------------------------------------

_LIVE: set[Daemon] = set()


@dataclass(eq=False)
class Daemon:
    """A runner under test in its own process group, watched through /proc."""

    name: str
    argv: Sequence[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    hwm_kb: int = 0
    notes: list[str] = field(default_factory=list)
    notify: bool = False  # listen as systemd would for the runner's sd_notify READY=1
    _notify_socket: socket.socket | None = None

    def start(self) -> Daemon:
        # A runtime folder of its own: kron's control socket defaults to one in $XDG_RUNTIME_DIR,
        # so daemons side by side (or one already running on this machine) would collide.
        runtime = self.log_path.with_name(self.log_path.stem + ".run")
        runtime.mkdir(mode=0o700, exist_ok=True)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        if self.notify:
            address = runtime / "notify.sock"
            address.unlink(missing_ok=True)
            self._notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify_socket.bind(str(address))
            env["NOTIFY_SOCKET"] = str(address)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=env,
            )
        self.started = time.time()
        _LIVE.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self._exited()

    def _exited(self) -> bool:
        """Has the runner exited? Looked at without reaping it, so its pid stays reserved.

        /proc/PID/stat says Z (zombie) until the bench reaps it in stop().
        """
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat[stat.rindex(")") + 2 :].split()[0] == "Z"

    def cpu_s(self) -> float:
        """utime + stime of the runner process itself (all its threads, not its children)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def cpu_ns(self) -> int:
        """Nanoseconds on a CPU of the runner's threads and its children's (schedstat).

        Finer than cpu_s's clock ticks, for telling when start-up is over; children count
        because a runner may load its files in helper processes. Gone tasks count as 0.
        """
        total = 0
        for pid in [self.pid, *self._children()]:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        return total

    def _children(self) -> list[int]:
        found = []
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with contextlib.suppress(OSError, ValueError):
                    text = Path(f"/proc/{self.pid}/task/{tid}/children").read_text()
                    found.extend(int(c) for c in text.split())
        return found

    def memory_kb(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        self.hwm_kb = max(self.hwm_kb, values.get("VmHWM", 0))
        return values.get("VmRSS", 0), values.get("VmHWM", 0)

    def ready_within(self, wait_s: float) -> float | None:
        """Seconds from exec to READY=1 if it comes within wait_s, else None."""
        assert self._notify_socket is not None, "start with notify=True"
        return self.ready_after(deadline=time.time() + wait_s)

    def ready_after(self, *, deadline: float) -> float | None:
        """Seconds from exec to the runner's READY=1 on NOTIFY_SOCKET, or None by the deadline."""
        assert self._notify_socket is not None, "start with notify=True"
        while (left := deadline - time.time()) > 0:
            self._notify_socket.settimeout(left)
            try:
                message = self._notify_socket.recv(4096)
            except TimeoutError:
                break
            if b"READY=1" in message.split(b"\n"):
                # From now on read and drop, as systemd does: a queue left full would make
                # every later message fail.
                threading.Thread(target=_drain, args=(self._notify_socket,), daemon=True).start()
                return time.time() - self.started
        return None

    def wait_settled(
        self, *, deadline: float, quiet_cpu_s: float = 0.02, window_s: float = 0.5
    ) -> bool:
        """Wait until start-up is over: two windows in a row with next to no CPU used.

        Judged from outside (CPU time in /proc), not from the runner's own log.
        """
        time.sleep(min(1.0, max(0.0, deadline - time.time())))
        quiet = 0
        last = self.cpu_s()
        while time.time() < deadline:
            if not self.alive():
                assert self.proc is not None
                tail = " | ".join(
                    self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                )
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during start-up: {tail}"
                )
            time.sleep(window_s)
            now_cpu = self.cpu_s()
            quiet = quiet + 1 if now_cpu - last < quiet_cpu_s else 0
            last = now_cpu
            if quiet >= 2:
                return True
        self.notes.append("start-up had not settled by its deadline")
        return False

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, wait up to grace_s, then SIGKILL the whole process group; always reap."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            # Not reaped yet, so its pid, which is also its process group's id, cannot have
            # been handed to another process: the group signal below reaches only this runner
            # and what it left behind in its group.
            with _suppress_lookup():
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.time() + grace_s
            while not self._exited() and time.time() < deadline:
                time.sleep(0.05)
            if not self._exited():
                self.notes.append(f"did not stop within {grace_s:.0f} s of SIGTERM; killed")
            with _suppress_lookup():
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()
        if self._notify_socket is not None:
            with contextlib.suppress(OSError):
                self._notify_socket.shutdown(socket.SHUT_RDWR)  # ends the drain's recv
            self._notify_socket.close()
            self._notify_socket = None
        _LIVE.discard(self)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(sock: socket.socket) -> None:
    sock.settimeout(None)
    with contextlib.suppress(OSError):  # closed when the runner stops
        while sock.recv(4096):
            pass


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError | PermissionError)


def stop_all() -> None:
    """Stop every daemon still alive (on exit, on Ctrl-C, on SIGTERM)."""
    for daemon in list(_LIVE):
        daemon.stop(grace_s=5.0)


def _on_signal(signum: int, frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


@dataclass(frozen=True)
class Timed:
    wall_s: float
    cpu_s: float
    returncode: int
    stdout: str
    stderr: str


def timed(argv: Sequence[str], *, timeout_s: float) -> Timed:
    """Run a command to its end; wall time from spawn to exit, CPU from the kernel's rusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall, cpu, result.returncode, result.stdout, result.stderr)


# -- time ---------------------------------------------------------------------------------------


def sleep_until(when: float) -> None:
    while (left := when - time.time()) > 0:
        time.sleep(min(left, 0.5))


def next_boundary(period_s: int, *, not_before: float) -> int:
    """The first multiple of period_s (epoch seconds) at or after not_before."""
    return int(math.ceil(not_before / period_s) * period_s)


def wait_for(predicate, *, deadline: float, poll_s: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll predicate() until true or the deadline; return whether it came true."""
    while True:
        if predicate():
            return True
        if time.time() >= deadline:
            return False
        time.sleep(poll_s)


def workdir(prefix: str) -> Path:
    """A fresh temp folder, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix=f"kron-bench-{prefix}-"))
    atexit.register(_rmtree, path)
    return path


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# -- job timestamps -----------------------------------------------------------------------------


def read_starts(path: Path) -> list[tuple[float, str]]:
    """(timestamp, name) lines that jobs appended with `echo $(date +%s.%N) NAME >> FILE`."""
    if not path.exists():
        return []
    starts = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):  # a line torn by a killed job
                starts.append((float(parts[0]), parts[1]))
    return starts


def stamp_command(out: Path, name: str) -> str:
    """A shell command that records when it started, by its own clock read."""
    return f"echo $(date +%s.%N) {name} >> {out}"


def command_floor_ms(out: Path, *, samples: int = 20) -> tuple[float, float]:
    """(median, max) ms from a timer firing to the job command's own timestamp, no scheduler.

    A bare Python loop sleeps until the next quarter second and starts the same command the
    runners start: the part of every latency that belongs to /bin/sh and date, not to a runner.
    """
    latencies = []
    for i in range(samples):
        slot = next_boundary(1, not_before=time.time() * 4 + 1) / 4
        sleep_until(slot)
        subprocess.run(["/bin/sh", "-c", stamp_command(out, f"floor-{i}")], check=True)
        latencies.append(read_starts(out)[-1][0] - slot)
    return median(latencies) * 1000, max(latencies) * 1000


def burst_floor_ms(out: Path, *, jobs: int = 500, samples: int = 3) -> tuple[float, float]:
    """(median, worst) ms from a slot until the last of `jobs` commands started, no scheduler.

    A bare loop starts the burst's command `jobs` times with os.posix_spawn, as fast as the
    machine forks, without pipes, process groups or records: on a small machine the commands'
    own start-up (`/bin/sh`, then `date`) competes for the CPUs, and this is what is left of a
    burst target once that is paid.
    """
    lasts = []
    for k in range(samples):
        slot = next_boundary(1, not_before=time.time() + 0.5)
        sleep_until(slot)
        pids = [
            os.posix_spawn(
                "/bin/sh", ["/bin/sh", "-c", stamp_command(out, f"floor-{k}-{i}")], os.environ
            )
            for i in range(jobs)
        ]
        for pid in pids:
            os.waitpid(pid, 0)
        starts = [ts for ts, name in read_starts(out) if name.startswith(f"floor-{k}-")]
        lasts.append((max(starts) - slot) * 1000)
    return median(lasts), max(lasts)


# -- statistics ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p % of values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
