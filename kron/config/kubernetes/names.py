"""Kubernetes names for kron's jobs: derived from job ids the same way every time, and unique.

A CronJob's name is a DNS-1123 label of at most 52 characters: the controller names each Job
`<cronjob>-<minutes since the epoch>` and a Job's name must fit a 63-character label. A job id
(`backups/nightly`) becomes `backups-nightly`; an id that loses characters to that, or that
lands on a name another id also lands on, gets a hash of the id as a suffix, so the name never
depends on which other jobs exist, except for the report of the collision itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "CRONJOB_NAME_MAX",
    "Renamed",
    "config_map_keys",
    "label_value",
    "slot_of_job_name",
    "unique_names",
]

CRONJOB_NAME_MAX = 52
_LABEL_MAX = 63
_HASH_LEN = 8
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_NOT_KEY = re.compile(r"[^-._A-Za-z0-9]")


@dataclass(frozen=True, kw_only=True, slots=True)
class Renamed:
    """Ids whose plain name was taken or too long, and the names they got instead."""

    plain: str  # the name the id would have had
    names: dict[str, str]  # job id -> the name it got
    collided: tuple[str, ...]  # every id that wanted `plain`, when more than one did


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def dns_label(text: str) -> str:
    """Lower-case `text` and keep letters, digits and single dashes; "" when nothing is left."""
    return _DASHES.sub("-", _NOT_DNS.sub("-", text.lower())).strip("-")


def _with_hash(base: str, key: str, limit: int) -> str:
    head = base[: limit - _HASH_LEN - 1].rstrip("-") or "job"
    return f"{head}-{_digest(key)}"


def unique_names(
    keys: Iterable[str],
    *,
    limit: int = CRONJOB_NAME_MAX,
    plain: Callable[[str], str] = dns_label,
) -> tuple[dict[str, str], list[Renamed]]:
    """Give each key a unique name of at most `limit` characters.

    A key keeps its plain name when no other key wants it, or when the key itself is that name
    (`a-b` keeps `a-b` beside `a_b`); the others get `-<8 hex digits of sha256(key)>`.

    Returns:
        The name of each key, and what was renamed, for the report.
    """
    wanted: dict[str, list[str]] = {}
    for key in sorted(set(keys)):
        wanted.setdefault(plain(key), []).append(key)
    names: dict[str, str] = {}
    renamed: list[Renamed] = []
    for base, owners in sorted(wanted.items()):
        exact = base if base in owners and base and len(base) <= limit else None
        changed = {}
        for key in owners:
            if key == exact or (len(owners) == 1 and base and len(base) <= limit):
                names[key] = base
            else:
                names[key] = changed[key] = _with_hash(base, key, limit)
        if changed:
            collided = tuple(owners) if len(owners) > 1 else ()
            renamed.append(Renamed(plain=base, names=changed, collided=collided))
    if len(set(names.values())) != len(names):  # two sha256 prefixes met: never in practice
        raise ValueError(f"names are not unique: {sorted(names.values())}")
    return names, renamed


def label_value(text: str) -> str | None:
    """`text` when it is a valid label value (63 characters, alphanumeric ends), else None."""
    if len(text) <= _LABEL_MAX and _LABEL_VALUE.fullmatch(text):
        return text
    return None


def config_map_keys(paths: Iterable[str]) -> dict[str, str]:
    """A ConfigMap key for each relative file path (`backups/nightly.toml` ->
    `backups.nightly.toml`): keys allow only letters, digits, `-`, `_` and `.`."""

    def plain(path: str) -> str:
        return _NOT_KEY.sub("_", path.replace("/", "."))

    keys, _ = unique_names(paths, limit=253, plain=plain)
    return keys


def slot_of_job_name(job_name: str, cronjob: str) -> datetime | None:
    """The slot a CronJob controller created a Job for, read from the Job's name.

    The controller names a Job `<cronjob>-<scheduled time in minutes since the epoch>`
    (`getJobName` in pkg/controller/cronjob/utils.go); a Job made by hand
    (`kubectl create job --from=cronjob/...`) has another name, and gives None.
    """
    prefix = f"{cronjob}-"
    minutes = job_name.removeprefix(prefix)
    if not job_name.startswith(prefix) or not (minutes.isascii() and minutes.isdigit()):
        return None
    try:
        return datetime.fromtimestamp(int(minutes) * 60, UTC)
    except (OverflowError, OSError, ValueError):
        return None
