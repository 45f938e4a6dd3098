"""File trust, as cron's: kron reads only files that nobody but a trusted owner can change.

Whoever can write a job file can run code as the daemon's user, so a job file, `kron.toml` or an
env_file that is writable by group or others, or owned by an untrusted user, is refused (cron
logs "WRONG FILE OWNER" / "BAD FILE MODE" and skips such crontabs). Trusted owners are the
daemon's own user and root: root can change any file anyway, and root-owned files under /etc
are how packages and configuration management install configuration for a `User=kron` daemon.
A daemon running as root trusts root's files only.

A file system mounted read-only cannot be written by anyone, whatever the modes say, so write
bits there do not count (a Kubernetes ConfigMap volume's folder is mode 0777, mounted read-only).

Folders count too (as OpenSSH's StrictModes checks the path to authorized_keys): a folder
between the jobs directory and a file, the jobs directory included, that someone else can write
lets them replace the file, so it is refused the same way.

`KRON_TRUST=off` turns the checks off for development, with a warning; it is read from the
environment, which only the user starting kron controls.
"""

from __future__ import annotations

import functools
import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "Trust",
    "folder_refusals",
    "refusals",
    "secret_refusals",
    "stat_refusals",
]

log = logging.getLogger("kron.trust")

ENV_VAR = "KRON_TRUST"
_OFF = ("off", "0", "no", "false")
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
_warned_off = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Trust:
    """Whose files kron reads: those of `uid` and of root; nothing is checked when disabled."""

    uid: int
    enabled: bool = True

    @classmethod
    def current(cls) -> Trust:
        """The running process's effective user, and `$KRON_TRUST`."""
        global _warned_off  # noqa: PLW0603 - one warning per process, not one per file
        enabled = os.environ.get(ENV_VAR, "on").strip().lower() not in _OFF
        if not enabled and not _warned_off:
            log.warning(
                "%s=off: file owner and mode checks are disabled; "
                "anyone who can write a job file can run commands as this user",
                ENV_VAR,
            )
            _warned_off = True
        return cls(uid=os.geteuid(), enabled=enabled)

    def owner_trusted(self, uid: int) -> bool:
        return uid in (0, self.uid)


def refusals(
    path: Path,
    *,
    root: Path | None = None,
    label: str | None = None,
    trust: Trust | None = None,
    folders_seen: dict[str, list[str]] | None = None,
) -> list[str]:
    """Why kron must not read `path`, one message per reason with its fix; [] when it may.

    Args:
        path: the file (a symlink is judged by its target).
        root: the jobs directory; the folders from the file's up to it are checked too.
        label: how to name the file in the message (`env_file x.env`); None for the file the
            message is reported against.
        trust: whose files to accept (default: this process's user, and `$KRON_TRUST`).
        folders_seen: folder verdicts already reached in this load (10,000 files share a few
            folders); the caller makes one per load, so a chmod is seen at the next.

    Returns:
        Messages like "refused: writable by group (mode 0664); run chmod g-w jobs.d/x.toml".
        A file that cannot be read at all is not refused here; the reader reports it.
    """
    trust = trust or Trust.current()
    if not trust.enabled:
        return []
    found = _check(path, label, trust)
    found.extend(folder_refusals(path, root=root, trust=trust, folders_seen=folders_seen))
    return found


def folder_refusals(
    path: Path,
    *,
    root: Path | None,
    trust: Trust,
    folders_seen: dict[str, list[str]] | None = None,
) -> list[str]:
    """Why the folders from `path`'s up to `root` make it untrustworthy; see `refusals`."""
    if not trust.enabled:
        return []
    found: list[str] = []
    for folder in _folders(path, root):
        if folders_seen is None:
            found.extend(_check(Path(folder), f"folder {folder}", trust))
            continue
        if folder not in folders_seen:
            folders_seen[folder] = _check(Path(folder), f"folder {folder}", trust)
        found.extend(folders_seen[folder])
    return found


def stat_refusals(
    st: os.stat_result, path: Path, *, trust: Trust, label: str | None = None
) -> list[str]:
    """Why kron must not read the file `st` describes, judged from a stat the caller holds.

    A reader that has the file open passes its `fstat`: one system call serves the trust check
    and the reading, and the file judged is the file read.
    """
    if not trust.enabled:
        return []
    return _judge(st, path, label, trust)


def secret_refusals(
    st: os.stat_result, path: Path, *, trust: Trust, label: str | None = None
) -> list[str]:
    """Why kron must not take a secret from the file `st` describes: an untrusted owner, or any
    access by group or others. A token file is 0600 (or 0400), as ssh wants a private key: one
    that others can read is no longer a secret, one they can write lets them choose it.
    """
    if not trust.enabled:
        return []
    found = []
    if not trust.owner_trusted(st.st_uid):
        found.append(
            _refuse(label, _owner_reason(st.st_uid, trust), f"chown {_user(trust.uid)}", path)
        )
    mode = st.st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        octal = f"{stat.S_IMODE(mode):04o}"
        ways = []
        for verb, group_bit, other_bit in (
            ("readable", stat.S_IRGRP, stat.S_IROTH),
            ("writable", stat.S_IWGRP, stat.S_IWOTH),
        ):
            who = [w for w, bit in (("group", group_bit), ("others", other_bit)) if mode & bit]
            if who:
                ways.append(f"{verb} by {' and '.join(who)}")
        said = " and ".join(ways) or "open to group or others"
        found.append(_refuse(label, f"{said} (mode {octal}), not 0600", "chmod 600", path))
    return found


def _folders(path: Path, root: Path | None) -> tuple[str, ...]:
    """The folders from the file's up to `root`, both included; none when outside `root`."""
    if root is None:
        return ()
    # Strings, not pathlib: this runs for every job file of every load.
    return _folder_chain(os.path.dirname(path), os.fspath(root))


@functools.lru_cache(maxsize=1024)
def _folder_chain(parent: str, root: str) -> tuple[str, ...]:
    """`_folders` by name alone (no file system access), so 10,000 files in one folder share it."""
    top = os.path.normpath(root)
    folder = os.path.normpath(parent)
    if folder != top and not folder.startswith(top.rstrip(os.sep) + os.sep):
        return ()
    folders = [folder]
    while folder != top:
        folder = os.path.dirname(folder)
        folders.append(folder)
    return tuple(folders)


def _check(path: Path, label: str | None, trust: Trust) -> list[str]:
    try:
        st = os.stat(path)
    except OSError:
        return []
    return _judge(st, path, label, trust)


def _judge(st: os.stat_result, path: Path, label: str | None, trust: Trust) -> list[str]:
    if st.st_uid in (0, trust.uid) and not st.st_mode & _WRITABLE_BY_OTHERS:
        return []  # the common case, answered without building messages
    mode = st.st_mode
    if mode & _WRITABLE_BY_OTHERS and _read_only(path):
        mode &= ~_WRITABLE_BY_OTHERS
        if st.st_uid in (0, trust.uid):
            return []
    found = []
    if not trust.owner_trusted(st.st_uid):
        found.append(
            _refuse(label, _owner_reason(st.st_uid, trust), f"chown {_user(trust.uid)}", path)
        )
    writers = [
        who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit
    ]
    if writers:
        octal = f"{stat.S_IMODE(st.st_mode):04o}"
        flags = "".join(who[0] for who in writers)
        found.append(
            _refuse(
                label,
                f"writable by {' and '.join(writers)} (mode {octal})",
                f"chmod {flags}-w",
                path,
            )
        )
    return found


def _read_only(path: Path) -> bool:
    """Whether `path` is on a file system mounted read-only, which nobody can write whatever
    the modes say: a Kubernetes ConfigMap volume's folder is mode 0777 on a read-only mount."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _refuse(label: str | None, reason: str, command: str, path: Path) -> str:
    subject = f"{label} is " if label else ""
    return f"refused: {subject}{reason}; run {command} {path}"


def _owner_reason(uid: int, trust: Trust) -> str:
    owner = f"owned by {_name(uid)}"
    if trust.uid == 0:
        return f"{owner}; kron runs as root and reads only root's files"
    return f"{owner}; kron runs as {_name(trust.uid)} and reads only its own files and root's"


def _user(uid: int) -> str:
    """A user name for a command line (`chown kron`), or the number."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _name(uid: int) -> str:
    """A user for a message: `alice (uid 1000)`, or `uid 1000` when it has no name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
