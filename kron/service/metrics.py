"""Prometheus metrics of one daemon: run counters and durations from the scheduler's events,
the daemon's state (jobs, invalid files, next fires) read at scrape time.

Each daemon has a registry of its own, so two daemons in one process (the tests) never share a
sample. Counters count from 0 when the daemon starts; `docs/metrics.md` lists every name.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from kron import __version__
from kron.model.run import Event, Outcome, RunEnded
from kron.service.view import DaemonView

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS_S", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# From a 50 ms health probe to a six-hour backup; a job's runs spread over a few of these.
DURATION_BUCKETS_S = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600)
# Every loaded job shows these at 0 before its first run, so that `increase()` sees the first
# failure too (a series born at 1 has no increase to show).
PRESET_OUTCOMES = (Outcome.SUCCEEDED.value, Outcome.FAILED.value)


class Metrics:
    """The daemon's metrics; call it with every scheduler event, `render()` it on a scrape."""

    def __init__(self, view: DaemonView) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "kron_runs",
            "Run records written since the daemon started, by job and outcome "
            "(each attempt of a retried run is one).",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "kron_run_duration_seconds",
            "Wall-clock time of runs that started, from start to end.",
            ["job"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._view = view
        self.registry.register(_DaemonState(view))

    def __call__(self, event: Event) -> None:
        if not isinstance(event, RunEnded):
            return
        self.runs.labels(event.job, event.outcome.value).inc()
        if event.duration_s is not None:
            self.duration.labels(event.job).observe(event.duration_s)

    def render(self) -> bytes:
        """The Prometheus text format (0.0.4) of every metric, as of now."""
        for job_id in self._view.job_ids():
            for outcome in PRESET_OUTCOMES:
                self.runs.labels(job_id, outcome)
        return generate_latest(_WithoutCreated(self.registry))


class _DaemonState(Collector):
    """Gauges read from the daemon when Prometheus scrapes: never stale, nothing to update."""

    def __init__(self, view: DaemonView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        view = self._view
        info = GaugeMetricFamily(
            "kron_build_info",
            "Always 1; the labels say which kron and which Python run the daemon.",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        if view.stats.started_at is not None:
            yield GaugeMetricFamily(
                "kron_start_time_seconds",
                "When the daemon started, in seconds since the epoch (counters start at 0 then).",
                value=view.stats.started_at.timestamp(),
            )
        yield GaugeMetricFamily(
            "kron_invalid_files",
            "Job files that failed to load (a job keeps running its last good version).",
            value=len(view.invalid_files()),
        )
        failures = view.store.failures
        yield CounterMetricFamily(
            "kron_record_write_errors",
            "Run records that could not be written (a full disk, a read-only folder) since the "
            "daemon started; the runs themselves went on.",
            value=failures.total,
        )
        yield GaugeMetricFamily(
            "kron_records_failing",
            "Records files that cannot be written now.",
            value=len(failures.failing),
        )
        jobs = view.jobs()
        yield GaugeMetricFamily("kron_jobs_loaded", "Jobs the daemon has loaded.", value=len(jobs))
        yield GaugeMetricFamily(
            "kron_running_runs",
            "Runs alive now: running, queued for max_concurrent, or waiting to retry.",
            value=len(running := view.running()),
        )
        yield GaugeMetricFamily(
            "kron_runs_stuck",
            "Runs alive past their expected_duration (or 3x the p95 of recent successes).",
            value=sum(1 for run in running if run.stuck),
        )
        yield _per_job(
            "kron_next_fire_timestamp_seconds",
            "When the job fires next by its schedule, in seconds since the epoch "
            "(no sample while paused, disabled or with nothing left to fire).",
            ((job.id, job.next_fire.timestamp()) for job in jobs if job.next_fire is not None),
        )
        if view.cluster is not None:
            yield from _cluster(view)
        yield _per_job(
            "kron_last_success_timestamp_seconds",
            "When the job's last succeeded run ended, in seconds since the epoch.",
            (
                (job.id, job.last_success_at.timestamp())
                for job in jobs
                if job.last_success_at is not None
            ),
        )


def _cluster(view: DaemonView) -> Iterator[Metric]:
    """A cluster node's figures (docs/cluster.md lists them)."""
    from kron.engine.cluster.stats import ROUND_TRIP_BUCKETS_S  # no psycopg in it

    cluster = view.cluster
    assert cluster is not None
    stats = cluster.stats
    claims = CounterMetricFamily(
        "kron_cluster_claims",
        "Launches this node claimed since it started, by result: won (its to run or record) or "
        "lost (another node's, or a paused job).",
        labels=["node", "result"],
    )
    claims.add_metric([stats.node, "won"], stats.claims_won)
    claims.add_metric([stats.node, "lost"], stats.claims_lost)
    yield claims
    cumulative, total = [], 0
    for bound, count in zip(ROUND_TRIP_BUCKETS_S, stats.buckets, strict=True):
        total += count
        cumulative.append((repr(float(bound)), total))
    cumulative.append(("+Inf", stats.round_trips))
    round_trip = HistogramMetricFamily(
        "kron_cluster_database_round_trip_seconds",
        "Time of each statement to the cluster database: claims, heartbeats, record writes.",
        labels=["node"],
    )
    round_trip.add_metric([stats.node], cumulative, sum_value=stats.round_trip_s)
    yield round_trip
    yield _labelled(
        CounterMetricFamily(
            "kron_cluster_database_errors",
            "Statements to the cluster database that failed (a cut connection, the database "
            "out of reach) since the node started.",
            labels=["node"],
        ),
        stats.node,
        stats.errors,
    )
    yield _labelled(
        GaugeMetricFamily(
            "kron_cluster_database_up",
            "1 while the cluster database answers; 0 while it does not (nothing fires here).",
            labels=["node"],
        ),
        stats.node,
        1 if stats.up else 0,
    )
    coordinator = cluster.coordinator
    live = sum(1 for p in coordinator.peers() if p.alive and not coordinator.dead(p.node))
    yield _labelled(
        GaugeMetricFamily(
            "kron_cluster_nodes_live",
            "Nodes of the cluster alive as this node sees them (itself included).",
            labels=["node"],
        ),
        stats.node,
        live,
    )


def _labelled(
    family: CounterMetricFamily | GaugeMetricFamily, node: str, value: float
) -> CounterMetricFamily | GaugeMetricFamily:
    family.add_metric([node], value)
    return family


def _per_job(name: str, documentation: str, values: Iterable[tuple[str, float]]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["job"])
    for job_id, value in values:
        family.add_metric([job_id], value)
    return family


class _WithoutCreated(Collector):
    """The registry without the `_created` series prometheus_client adds to every counter and
    histogram: one extra series per label set that nothing here reads (a restart shows in
    `kron_start_time_seconds`). The library can only turn them off for the whole process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
