"""The set of jobs a jobs directory defines, kept up to date one changed file at a time.

`kron validate` and the daemon share it: a full scan is the first load, `apply()` is a reload.
A file that turns invalid keeps its last good job active; its error stays listed until fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from kron.config.cache import Cached, JobCache, cacheable, still_good
from kron.config.discovery import SETTINGS_NAMES, discover, is_job_file, job_id_for
from kron.config.documents import read_document
from kron.config.graph import check_graph
from kron.config.loader import Loaded, identity_of, in_file_order, internal_error, load_files
from kron.config.parallel import in_parallel, worker_count
from kron.config.schema import compile_job_schema
from kron.config.settings import load_settings
from kron.model.errors import Findings, KronError, Problem, SpecError
from kron.model.job import Job
from kron.model.settings import Settings
from kron.model.units import plural

__all__ = [
    "Catalog",
    "Changes",
    "Entry",
    "JobsDirGone",
    "LoadResult",
    "Reading",
    "internal_error",
    "load_dir",
]

log = logging.getLogger("kron.catalog")


class JobsDirGone(KronError):
    """The jobs directory itself is missing: nothing is read, nothing is unscheduled."""


@dataclass(kw_only=True, slots=True)
class Entry(Findings):
    """One job file: the last good job it defined and what is wrong with it now."""

    path: Path
    job_id: str
    job: Job | None = None  # last good definition
    problems: list[Problem] = field(default_factory=list)
    seen: bytes | None = None  # the file's fingerprint when last read (documents.fingerprint)


@dataclass(kw_only=True, slots=True)
class Changes:
    """What one reload changed in the active job set, and what it found wrong."""

    added: list[Job] = field(default_factory=list)
    updated: list[Job] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    invalid: list[Entry] = field(default_factory=list)  # files whose new version was refused
    fixed: list[Entry] = field(default_factory=list)  # files that were invalid and load again
    settings_changed: bool = False
    settings_problems: list[Problem] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.added
            or self.updated
            or self.removed
            or self.invalid
            or self.fixed
            or self.settings_changed
        )


class Catalog:
    """Every job file below a jobs directory, with the job each one contributes."""

    def __init__(
        self,
        jobs_dir: Path,
        *,
        now: Callable[[], datetime] | None = None,
        cache: Callable[[Settings], JobCache] | None = None,
        first_in_workers: bool = False,
    ) -> None:
        """Args:
        jobs_dir: the jobs directory.
        now: the clock the loader judges `@at` times by (a test pins it).
        cache: where the warm-start cache of this jobs directory is, under given settings
            (the daemon's: in kron's folder of the records); None reads every file.
        first_in_workers: read the files of the first scan in forked workers only, none in
            this process (the daemon's: it keeps neither the schema's compiled validator nor
            the garbage of parsing until a file changes).
        """
        self.jobs_dir = jobs_dir
        self._now = now
        self._cache = cache
        self._first_in_workers = first_in_workers
        self._cached: dict[Path, Cached] = {}  # during the first scan: what the cache offers
        self._kept, self._read_cacheable = 0, False  # of the last load: from the cache, or not
        self._in_workers = False
        self.cache_stale = cache is not None  # the cache file differs from what is loaded
        self.settings = Settings()
        self.settings_problems: list[Problem] = []
        self.settings_seen: bytes | None = None
        self.folder_problems: list[Problem] = []
        self.graph_problems: list[Problem] = []
        self.entries: dict[Path, Entry] = {}
        self.active: dict[str, Job] = {}
        self._owner: dict[str, Path] = {}  # the file whose job is active for an id
        self._generation = 0  # counts the changes to the above, so that a stale reading is seen

    # -- reading in a worker thread, adopting on the loop -------------------------------------

    def read(self, how: Callable[[Catalog], Changes]) -> Reading:
        """Run a reload (`Catalog.scan`, `.apply` or `.refresh`) on a copy of this catalog.

        This reads and parses files and may run in a worker thread: it never changes this
        catalog, which the event loop goes on reading. `adopt` puts the result in force.
        """
        base = self._generation  # before the copy: a change on the loop meanwhile is seen
        shadow = Catalog(self.jobs_dir, now=self._now)
        for name in _STATE:
            value = getattr(self, name)
            setattr(shadow, name, dict(value) if isinstance(value, dict) else value)
        return Reading(catalog=shadow, changes=how(shadow), base=base)

    def adopt(self, reading: Reading) -> Changes | None:
        """Put a reading in force (a few assignments: cheap on the loop); None when this
        catalog changed since it was read, and the reading must be done again."""
        if reading.base != self._generation:
            return None
        for name in _STATE:
            setattr(self, name, getattr(reading.catalog, name))
        self._generation += 1
        return reading.changes

    # -- reading ----------------------------------------------------------------------------

    def scan(self) -> Changes:
        """(Re)read everything: kron.toml, then every job file."""
        self._require_jobs_dir()
        self._generation += 1
        try:
            settings, problems = load_settings(self.jobs_dir)
        except Exception:  # a bug in kron: reported as the settings' problem, never raised
            log.debug("loading the settings of %s raised", self.jobs_dir, exc_info=True)
            path = next(
                (self.jobs_dir / n for n in SETTINGS_NAMES if (self.jobs_dir / n).exists()),
                self.jobs_dir / SETTINGS_NAMES[0],
            )
            settings, problems = Settings(path=path), [internal_error(path)]
        settings_errors = [p for p in problems if p.is_error]
        changes = Changes(settings_problems=problems)
        if not settings_errors or settings.path is None or not self.entries:
            changes.settings_changed = settings != self.settings
            self.settings = settings if not settings_errors else Settings(path=settings.path)
        self.settings_problems = problems
        self.settings_seen = identity_of(settings.path) if settings.path else None
        files, self.folder_problems = discover(self.jobs_dir)
        gone = set(self.entries) - set(files)
        first = not self.entries
        cache = self._cache(self.settings) if first and self._cache is not None else None
        if cache is not None and not settings_errors:
            self._cached = cache.read(self.settings, files)
        self._in_workers = first and self._first_in_workers
        try:
            self._reload(files, gone, changes)
        finally:
            self._cached, self._in_workers = {}, False
        if cache is not None:
            self.cache_stale = self._kept != cache.rows or self._read_cacheable
        return changes

    def apply(self, paths: Iterable[Path]) -> Changes:
        """Re-read only what changed: files, folders (added, removed or renamed), kron.toml."""
        self._require_jobs_dir()
        self._generation += 1
        files: set[Path] = set()
        gone: set[Path] = set()
        tree: list[Path] | None = None
        for raw in paths:
            path = Path(raw)
            try:
                relative = path.relative_to(self.jobs_dir)
            except ValueError:
                continue
            if any(part.startswith(".") for part in relative.parts):
                continue
            if len(relative.parts) == 1 and relative.name in SETTINGS_NAMES:
                return self.scan()  # defaults and zone reach every job: re-merge them all
            if path.is_dir():
                if tree is None:
                    # One walk from the top, as at start-up: a folder reached twice through a
                    # symlink is read once, and under the same ids.
                    tree, self.folder_problems = discover(self.jobs_dir)
                found = [f for f in tree if _is_under(f, path)]
                files.update(found)
                # `p == path`: a job file replaced by a folder of the same name is gone too.
                gone.update(
                    p for p in self.entries if (p == path or _is_under(p, path)) and p not in found
                )
            elif path.exists() and is_job_file(path.name):
                files.add(path)
            else:
                gone.update(p for p in self.entries if p == path or _is_under(p, path))
        changes = Changes()
        self._reload(sorted(files), gone, changes)
        return changes

    def refresh(self) -> Changes:
        """Re-read what changed on disk since it was read (its fingerprint, not its text)."""
        self._require_jobs_dir()
        self._generation += 1
        files, self.folder_problems = discover(self.jobs_dir)
        changed = [
            p for p in files if p not in self.entries or self.entries[p].seen != identity_of(p)
        ]
        gone = set(self.entries) - set(files)
        changes = Changes()
        if self.settings.path is not None and self.settings_seen != identity_of(self.settings.path):
            return self.scan()
        self._reload(changed, gone, changes)
        return changes

    def _time(self) -> datetime | None:
        return self._now() if self._now is not None else None

    def _require_jobs_dir(self) -> None:
        """A jobs directory moved away or unmounted is no reason to unschedule every job."""
        if not self.jobs_dir.is_dir():
            raise JobsDirGone(
                f"the jobs directory {self.jobs_dir} is gone or not a folder; "
                f"what is loaded ({plural(len(self.active), 'job')}) stays scheduled until it is "
                "back"
            )

    def _reload(self, files: Iterable[Path], gone: Iterable[Path], changes: Changes) -> None:
        touched: set[str] = set()
        fresh: set[int] = set()  # entries made here: private to this reload, no copy needed
        for path in gone:
            entry = self.entries.pop(path, None)
            if entry is not None:
                touched.add(entry.job_id)
                self.cache_stale = True
        for path, seen, job, problems in self._load_all(list(files)):
            job_id = job.id if job is not None else job_id_for(path, self.jobs_dir)
            known = self.entries.get(path)
            # A copy, never the entry itself: a reload read in a worker thread must not change
            # what the event loop may be reading (`kron status`) until it is adopted.
            entry = replace(known) if known is not None else Entry(path=path, job_id=job_id)
            if entry.seen != seen:
                self.cache_stale = True
            entry.seen = seen
            was_invalid = known is not None and bool(entry.errors)
            if job is None:
                entry.problems = problems
                changes.invalid.append(entry)
            else:
                entry.job, entry.problems = job, problems
                if was_invalid:
                    changes.fixed.append(entry)
            self.entries[path] = entry
            fresh.add(id(entry))
            touched.add(job_id)
        self._settle(touched, changes, fresh)

    def _load_all(self, files: list[Path]) -> list[Loaded]:
        """Load files, on every core when there are many (a first load, a large checkout);
        those the warm-start cache holds unchanged are taken from it."""
        kept = still_good(self._cached, files, jobs_dir=self.jobs_dir) if self._cached else {}
        rest = [path for path in files if path not in kept] if kept else files
        read = self._read_all(rest) if rest else []
        self._kept = len(kept)
        self._read_cacheable = any(cacheable(job, problems) for _, _, job, problems in read)
        if not kept:
            return read
        by_path = {item[0]: item for item in read}
        return [kept.get(path) or by_path[path] for path in files]  # in the order given

    def _read_all(self, files: list[Path]) -> list[Loaded]:
        workers = worker_count(len(files))
        here = not self._in_workers
        if workers < 2 and here:
            return load_files(files, self.jobs_dir, self.settings, self._time())
        jobs_dir, settings = self.jobs_dir, self.settings
        if here:
            compile_job_schema()  # once, before the forks: each worker inherits it
        chunks = [files[i::workers] for i in range(workers)]
        loaded: list[Loaded] = []
        now = self._time()
        work = lambda chunk: load_files(chunk, jobs_dir, settings, now)  # noqa: E731
        for part in in_parallel(work, chunks, here=here):
            loaded.extend(part)
        return loaded

    @property
    def from_cache(self) -> int:
        """How many files the last load took from the warm-start cache, unread."""
        return self._kept

    def cache_writer(self) -> Callable[[], int] | None:
        """What writes the warm-start cache as things stand now (None: nothing to write), to
        call in a worker thread: every file whose reading its file alone decides. It returns
        how many readings it wrote and raises OSError when it cannot."""
        if self._cache is None or not self.cache_stale:
            return None
        cache, settings = self._cache(self.settings), self.settings
        readings = [(path, e.seen, e.job, e.problems) for path, e in self.entries.items()]
        self.cache_stale = False
        return lambda: cache.write(settings, readings)

    def _settle(self, touched: set[str], changes: Changes, fresh: set[int]) -> None:
        """Decide, for each touched id, which file's job is active; record the difference.

        Entries are copied before they change, but those in `fresh` (ids of entries this
        reload made) are its own already.
        """
        by_id: dict[str, list[Entry]] = {}
        for entry in self.entries.values():
            if entry.job_id in touched:
                by_id.setdefault(entry.job_id, []).append(entry)
        for job_id in touched:
            # Copies, as in _reload; and each list of problems is replaced, never changed.
            candidates = [e if id(e) in fresh else replace(e) for e in by_id.get(job_id, [])]
            owner = self._owner.get(job_id)
            for entry in candidates:
                self.entries[entry.path] = entry
                if any(p.message.startswith("job id ") for p in entry.problems):
                    entry.problems = [
                        p for p in entry.problems if not p.message.startswith("job id ")
                    ]
            if len(candidates) > 1:
                # Two files for one id: the one already active stays; all are reported.
                paths = sorted(e.path for e in candidates)
                for entry in candidates:
                    others = ", ".join(str(p) for p in paths if p != entry.path)
                    also = f"job id {job_id!r} is also defined by {others}"
                    entry.problems = [*entry.problems, Problem(path=str(entry.path), message=also)]
                chosen = next((e for e in candidates if e.path == owner), None)
            else:
                chosen = candidates[0] if candidates else None
            new = chosen.job if chosen else None
            old = self.active.get(job_id)
            if new is None:
                if old is not None:
                    changes.removed.append(job_id)
                    del self.active[job_id]
                    self._owner.pop(job_id, None)
                continue
            assert chosen is not None
            self._owner[job_id] = chosen.path
            self.active[job_id] = new
            if old is None:
                changes.added.append(new)
            elif old.config_sha != new.config_sha or old.path != new.path:
                changes.updated.append(new)
        files_by_id = {e.job_id: e.path for e in self.entries.values()}
        self.graph_problems = [
            self._with_line(p) for p in check_graph(self.active, files_by_id=files_by_id)
        ]

    def _with_line(self, problem: Problem) -> Problem:
        """The problem with its line in its file (the graph is checked after the files are
        read; a file that cannot be read again keeps the problem as it is)."""
        try:
            doc = read_document(Path(problem.path), max_size=self.settings.max_file_size)
        except SpecError:
            return problem
        parts = [part for part in problem.pointer.split("/") if part]
        return doc.problem(parts, problem.message, problem.severity)

    # -- reporting --------------------------------------------------------------------------

    @property
    def problems(self) -> list[Problem]:
        """Everything wrong right now, file by file, each file's in line order."""
        found = list(self.settings_problems) + list(self.folder_problems)
        graph: dict[str, list[Problem]] = {}
        for problem in self.graph_problems:
            graph.setdefault(problem.path, []).append(problem)
        # Sorted are only the files with something to say: 10,000 valid ones cost no sort.
        telling = [p for p, e in self.entries.items() if e.problems or (graph and str(p) in graph)]
        for path in sorted(telling):
            found.extend(in_file_order(self.entries[path].problems + graph.pop(str(path), [])))
        for rest in graph.values():
            found.extend(rest)
        return found

    def kept(self, path: str) -> bool:
        """Whether the job of an invalid file still runs, in its last good version."""
        entry = self.entries.get(Path(path))
        return (
            entry is not None
            and entry.job is not None
            and self._owner.get(entry.job_id) == entry.path
        )

    @property
    def invalid_files(self) -> dict[str, list[Problem]]:
        """Files with errors now (their last good job, if any, is still active)."""
        bad: dict[str, list[Problem]] = {}
        for problem in self.problems:
            if problem.is_error:
                bad.setdefault(problem.path, []).append(problem)
        return bad


# What a reload changes, and `read` copies and `adopt` puts in force (dicts are copied; the
# lists and settings are replaced by a reload, never changed in place).
_STATE = (
    "settings",
    "settings_problems",
    "settings_seen",
    "folder_problems",
    "graph_problems",
    "entries",
    "active",
    "_owner",
    "cache_stale",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Reading:
    """A reload read from disk and not yet in force: the catalog it makes, and the changes."""

    catalog: Catalog
    changes: Changes
    base: int  # the generation of the catalog it was read from


def _is_under(path: Path, folder: Path) -> bool:
    return folder in path.parents


@dataclass(kw_only=True, slots=True)
class LoadResult(Findings):
    """A whole jobs directory: the jobs that loaded and every problem found."""

    jobs_dir: Path
    settings: Settings
    jobs: dict[str, Job] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def load_dir(jobs_dir: Path, *, now: datetime | None = None) -> LoadResult:
    """Load every job file below jobs_dir; one bad file never stops the others."""
    catalog = Catalog(jobs_dir, now=(lambda: now) if now else None)
    catalog.scan()
    valid = {e.job_id for e in catalog.entries.values() if not e.errors}
    return LoadResult(
        jobs_dir=jobs_dir,
        settings=catalog.settings,
        jobs={k: j for k, j in sorted(catalog.active.items()) if k in valid},
        problems=catalog.problems,
        files=sorted(catalog.entries),
    )
