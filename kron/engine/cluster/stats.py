"""What a node counts of its cluster work, for `kron status` and `/metrics`: claims won and lost,
round trips to the database and their time, errors, and whether the database answers."""

from __future__ import annotations

import bisect
import time

__all__ = ["ROUND_TRIP_BUCKETS_S", "ClusterStats"]

# From a unix-socket round trip on the same host (≈ 0.2 ms) to a statement the timeout cut.
ROUND_TRIP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class ClusterStats:
    """Counters since the daemon started; read when Prometheus scrapes or status is asked."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.claims_won = 0
        self.claims_lost = 0
        self.errors = 0
        self.last_error = ""
        self.buckets = [0] * len(ROUND_TRIP_BUCKETS_S)  # not cumulative; the metric sums them
        self.round_trips = 0
        self.round_trip_s = 0.0
        self.up = False
        self.down_since: float | None = None  # time.time() when it stopped answering
        self._down_at: float | None = None  # time.monotonic() of the same

    def round_trip(self, seconds: float) -> None:
        self.round_trips += 1
        self.round_trip_s += seconds
        index = bisect.bisect_left(ROUND_TRIP_BUCKETS_S, seconds)
        if index < len(self.buckets):
            self.buckets[index] += 1

    def error(self, said: str) -> None:
        self.errors += 1
        self.last_error = said

    def reachable(self, up: bool, error: str = "") -> None:
        if up:
            self.up, self.down_since, self._down_at = True, None, None
        elif self.up or self.down_since is None:
            self.up = False
            self.down_since, self._down_at = time.time(), time.monotonic()
            self.last_error = error or self.last_error

    def down_for(self) -> float:
        """Seconds the database has been out of reach (0 while it answers)."""
        return time.monotonic() - self._down_at if self._down_at is not None else 0.0
