"""Schedule math: cron fields, macros, ISC cron's DST rules, catch-up windows and jitter."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kron.model.errors import ValueProblem
from kron.model.schedule import (
    AtSchedule,
    CronSchedule,
    EverySchedule,
    Schedule,
    ScheduleKind,
    jitter_offset,
    parse_schedule,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
CHATHAM = ZoneInfo("Pacific/Chatham")
ZONE_UTC = ZoneInfo("UTC")


def fires(expr: str, zone: ZoneInfo, after: str, count: int) -> list[str]:
    """Chain next_fire `count` times from `after`; each fire as 'UTC | local' ISO strings."""
    schedule = parse_schedule(expr, zone)
    moment = datetime.fromisoformat(after)
    shown = []
    for _ in range(count):
        slot = schedule.next_fire(moment)
        assert slot is not None
        shown.append(f"{slot.isoformat()} | {slot.astimezone(zone).isoformat()}")
        moment = slot
    return shown


def utc_fires(expr: str, after: str, count: int) -> list[str]:
    """Chain next_fire in UTC and return the fires as UTC ISO strings."""
    return [shown.split(" | ")[0] for shown in fires(expr, ZONE_UTC, after, count)]


# Each row: zone, expression, `after` (local), then consecutive fires as "UTC | local".
DST_TABLE = [
    pytest.param(
        # Europe/Berlin 2026-03-29 02:00 CET (+01:00) -> 03:00 CEST (+02:00), at 01:00 UTC.
        # A fixed-time 02:30 slot does not exist that day: it runs once as the gap ends.
        BERLIN,
        "30 2 * * *",
        "2026-03-28T00:00:00+01:00",
        [
            "2026-03-28T01:30:00+00:00 | 2026-03-28T02:30:00+01:00",
            "2026-03-29T01:00:00+00:00 | 2026-03-29T03:00:00+02:00",
            "2026-03-30T00:30:00+00:00 | 2026-03-30T02:30:00+02:00",
        ],
        id="berlin-spring-fixed-time-runs-at-gap-end",
    ),
    pytest.param(
        # Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST: periodic slots 02:00 and 02:30
        # do not exist and are skipped; firing continues every 30 real minutes.
        BERLIN,
        "*/30 * * * *",
        "2026-03-29T01:00:00+01:00",
        [
            "2026-03-29T00:30:00+00:00 | 2026-03-29T01:30:00+01:00",
            "2026-03-29T01:00:00+00:00 | 2026-03-29T03:00:00+02:00",
            "2026-03-29T01:30:00+00:00 | 2026-03-29T03:30:00+02:00",
        ],
        id="berlin-spring-periodic-skips-the-gap",
    ),
    pytest.param(
        # Europe/Berlin 2026-10-25 03:00 CEST (+02:00) -> 02:00 CET (+01:00), at 01:00 UTC.
        # 02:30 happens twice; a fixed-time slot runs at the first occurrence only.
        BERLIN,
        "30 2 * * *",
        "2026-10-25T00:00:00+02:00",
        [
            "2026-10-25T00:30:00+00:00 | 2026-10-25T02:30:00+02:00",
            "2026-10-26T01:30:00+00:00 | 2026-10-26T02:30:00+01:00",
        ],
        id="berlin-autumn-fixed-time-runs-once",
    ),
    pytest.param(
        # Europe/Berlin 2026-10-25 03:00 CEST -> 02:00 CET: periodic slots run in both 02:xx hours.
        BERLIN,
        "*/30 * * * *",
        "2026-10-25T01:45:00+02:00",
        [
            "2026-10-25T00:00:00+00:00 | 2026-10-25T02:00:00+02:00",
            "2026-10-25T00:30:00+00:00 | 2026-10-25T02:30:00+02:00",
            "2026-10-25T01:00:00+00:00 | 2026-10-25T02:00:00+01:00",
            "2026-10-25T01:30:00+00:00 | 2026-10-25T02:30:00+01:00",
            "2026-10-25T02:00:00+00:00 | 2026-10-25T03:00:00+01:00",
        ],
        id="berlin-autumn-periodic-runs-in-both-hours",
    ),
    pytest.param(
        # America/New_York 2025-03-09 02:00 EST (-05:00) -> 03:00 EDT (-04:00), at 07:00 UTC.
        # `30 2 * * *` fires exactly once that day, at 03:00 local.
        NEW_YORK,
        "30 2 * * *",
        "2025-03-08T12:00:00-05:00",
        [
            "2025-03-09T07:00:00+00:00 | 2025-03-09T03:00:00-04:00",
            "2025-03-10T06:30:00+00:00 | 2025-03-10T02:30:00-04:00",
        ],
        id="new-york-spring-fixed-time-fires-once-at-three",
    ),
    pytest.param(
        # America/New_York 2025-03-09 02:00 EST -> 03:00 EDT: every 15 real minutes, 02:xx skipped.
        NEW_YORK,
        "*/15 * * * *",
        "2025-03-09T01:30:00-05:00",
        [
            "2025-03-09T06:45:00+00:00 | 2025-03-09T01:45:00-05:00",
            "2025-03-09T07:00:00+00:00 | 2025-03-09T03:00:00-04:00",
            "2025-03-09T07:15:00+00:00 | 2025-03-09T03:15:00-04:00",
        ],
        id="new-york-spring-periodic-skips-the-gap",
    ),
    pytest.param(
        # America/New_York 2025-11-02 02:00 EDT (-04:00) -> 01:00 EST (-05:00), at 06:00 UTC.
        # `30 1 * * *` fires once, at the first 01:30.
        NEW_YORK,
        "30 1 * * *",
        "2025-11-01T12:00:00-04:00",
        [
            "2025-11-02T05:30:00+00:00 | 2025-11-02T01:30:00-04:00",
            "2025-11-03T06:30:00+00:00 | 2025-11-03T01:30:00-05:00",
        ],
        id="new-york-autumn-fixed-time-fires-once",
    ),
    pytest.param(
        # America/New_York 2025-11-02 02:00 EDT -> 01:00 EST: `*/15` keeps firing every
        # 15 real minutes through both 01:xx hours.
        NEW_YORK,
        "*/15 * * * *",
        "2025-11-02T00:50:00-04:00",
        [
            "2025-11-02T05:00:00+00:00 | 2025-11-02T01:00:00-04:00",
            "2025-11-02T05:15:00+00:00 | 2025-11-02T01:15:00-04:00",
            "2025-11-02T05:30:00+00:00 | 2025-11-02T01:30:00-04:00",
            "2025-11-02T05:45:00+00:00 | 2025-11-02T01:45:00-04:00",
            "2025-11-02T06:00:00+00:00 | 2025-11-02T01:00:00-05:00",
            "2025-11-02T06:15:00+00:00 | 2025-11-02T01:15:00-05:00",
            "2025-11-02T06:30:00+00:00 | 2025-11-02T01:30:00-05:00",
            "2025-11-02T06:45:00+00:00 | 2025-11-02T01:45:00-05:00",
            "2025-11-02T07:00:00+00:00 | 2025-11-02T02:00:00-05:00",
        ],
        id="new-york-autumn-periodic-fires-through-both-hours",
    ),
    pytest.param(
        # Australia/Lord_Howe 2025-10-05 (first Sunday of October) 02:00 LHST (+10:30) ->
        # 02:30 LHDT (+11:00), at 2025-10-04 15:30 UTC: a 30-minute gap.
        LORD_HOWE,
        "0 2 * * *",
        "2025-10-04T12:00:00+10:30",
        [
            "2025-10-04T15:30:00+00:00 | 2025-10-05T02:30:00+11:00",
            "2025-10-05T15:00:00+00:00 | 2025-10-06T02:00:00+11:00",
        ],
        id="lord-howe-spring-fixed-time-runs-at-gap-end",
    ),
    pytest.param(
        # Australia/Lord_Howe 2025-10-05 02:00 LHST -> 02:30 LHDT: 02:00 and 02:15 are skipped.
        LORD_HOWE,
        "*/15 * * * *",
        "2025-10-05T01:40:00+10:30",
        [
            "2025-10-04T15:15:00+00:00 | 2025-10-05T01:45:00+10:30",
            "2025-10-04T15:30:00+00:00 | 2025-10-05T02:30:00+11:00",
            "2025-10-04T15:45:00+00:00 | 2025-10-05T02:45:00+11:00",
        ],
        id="lord-howe-spring-periodic-skips-the-half-hour-gap",
    ),
    pytest.param(
        # Australia/Lord_Howe 2026-04-05 (first Sunday of April) 02:00 LHDT (+11:00) ->
        # 01:30 LHST (+10:30), at 2026-04-04 15:00 UTC: 01:30-02:00 happens twice.
        LORD_HOWE,
        "45 1 * * *",
        "2026-04-04T12:00:00+11:00",
        [
            "2026-04-04T14:45:00+00:00 | 2026-04-05T01:45:00+11:00",
            "2026-04-05T15:15:00+00:00 | 2026-04-06T01:45:00+10:30",
        ],
        id="lord-howe-autumn-fixed-time-runs-once",
    ),
    pytest.param(
        # Australia/Lord_Howe 2026-04-05 02:00 LHDT -> 01:30 LHST: 01:30 and 01:45 run twice.
        LORD_HOWE,
        "*/15 * * * *",
        "2026-04-05T01:20:00+11:00",
        [
            "2026-04-04T14:30:00+00:00 | 2026-04-05T01:30:00+11:00",
            "2026-04-04T14:45:00+00:00 | 2026-04-05T01:45:00+11:00",
            "2026-04-04T15:00:00+00:00 | 2026-04-05T01:30:00+10:30",
            "2026-04-04T15:15:00+00:00 | 2026-04-05T01:45:00+10:30",
            "2026-04-04T15:30:00+00:00 | 2026-04-05T02:00:00+10:30",
        ],
        id="lord-howe-autumn-periodic-runs-in-both-half-hours",
    ),
    pytest.param(
        # Europe/Berlin 2026-10-25 03:00 CEST -> 02:00 CET. The minute field begins with `*`:
        # an ISC wildcard job although the hours are fixed, so both 02:xx hours run.
        BERLIN,
        "*/30 1-3 * * *",
        "2026-10-25T01:45:00+02:00",
        [
            "2026-10-25T00:00:00+00:00 | 2026-10-25T02:00:00+02:00",
            "2026-10-25T00:30:00+00:00 | 2026-10-25T02:30:00+02:00",
            "2026-10-25T01:00:00+00:00 | 2026-10-25T02:00:00+01:00",
            "2026-10-25T01:30:00+00:00 | 2026-10-25T02:30:00+01:00",
            "2026-10-25T02:00:00+00:00 | 2026-10-25T03:00:00+01:00",
        ],
        id="berlin-autumn-star-minute-runs-in-both-hours",
    ),
    pytest.param(
        # Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST. `* 2 * * *` is a wildcard job (its
        # minute is `*`): the hour 02 does not exist that day, so nothing runs until the next.
        BERLIN,
        "* 2 * * *",
        "2026-03-29T01:58:00+01:00",
        [
            "2026-03-30T00:00:00+00:00 | 2026-03-30T02:00:00+02:00",
            "2026-03-30T00:01:00+00:00 | 2026-03-30T02:01:00+02:00",
        ],
        id="berlin-spring-star-minute-skips-the-gap",
    ),
    pytest.param(
        # America/New_York 2025-11-02 02:00 EDT -> 01:00 EST: `*/30 1` runs in both 01:xx hours.
        NEW_YORK,
        "*/30 1 * * *",
        "2025-11-02T00:45:00-04:00",
        [
            "2025-11-02T05:00:00+00:00 | 2025-11-02T01:00:00-04:00",
            "2025-11-02T05:30:00+00:00 | 2025-11-02T01:30:00-04:00",
            "2025-11-02T06:00:00+00:00 | 2025-11-02T01:00:00-05:00",
            "2025-11-02T06:30:00+00:00 | 2025-11-02T01:30:00-05:00",
            "2025-11-03T06:00:00+00:00 | 2025-11-03T01:00:00-05:00",
        ],
        id="new-york-autumn-star-minute-runs-in-both-hours",
    ),
    pytest.param(
        # America/New_York 2025-03-09 02:00 EST -> 03:00 EDT: `* 2 * * *` skips the lost hour.
        NEW_YORK,
        "* 2 * * *",
        "2025-03-09T01:58:00-05:00",
        [
            "2025-03-10T06:00:00+00:00 | 2025-03-10T02:00:00-04:00",
            "2025-03-10T06:01:00+00:00 | 2025-03-10T02:01:00-04:00",
        ],
        id="new-york-spring-star-minute-skips-the-gap",
    ),
    pytest.param(
        # Australia/Lord_Howe 2026-04-05 02:00 LHDT -> 01:30 LHST: `*/15 1` runs 01:30 and
        # 01:45 twice.
        LORD_HOWE,
        "*/15 1 * * *",
        "2026-04-05T01:20:00+11:00",
        [
            "2026-04-04T14:30:00+00:00 | 2026-04-05T01:30:00+11:00",
            "2026-04-04T14:45:00+00:00 | 2026-04-05T01:45:00+11:00",
            "2026-04-04T15:00:00+00:00 | 2026-04-05T01:30:00+10:30",
            "2026-04-04T15:15:00+00:00 | 2026-04-05T01:45:00+10:30",
            "2026-04-05T14:30:00+00:00 | 2026-04-06T01:00:00+10:30",
        ],
        id="lord-howe-autumn-star-minute-runs-in-both-half-hours",
    ),
    pytest.param(
        # Australia/Lord_Howe 2025-10-05 02:00 LHST -> 02:30 LHDT: `*/15 2` loses 02:00, 02:15.
        LORD_HOWE,
        "*/15 2 * * *",
        "2025-10-05T01:50:00+10:30",
        [
            "2025-10-04T15:30:00+00:00 | 2025-10-05T02:30:00+11:00",
            "2025-10-04T15:45:00+00:00 | 2025-10-05T02:45:00+11:00",
            "2025-10-05T15:00:00+00:00 | 2025-10-06T02:00:00+11:00",
        ],
        id="lord-howe-spring-star-minute-skips-the-gap",
    ),
    pytest.param(
        # Pacific/Chatham 2026-04-05 03:45 CHADT (+13:45) -> 02:45 CHAST (+12:45), at
        # 2026-04-04 14:00 UTC: 02:45-03:45 happens twice; `*/30 3` runs in both.
        CHATHAM,
        "*/30 3 * * *",
        "2026-04-05T02:00:00+13:45",
        [
            "2026-04-04T13:15:00+00:00 | 2026-04-05T03:00:00+13:45",
            "2026-04-04T13:45:00+00:00 | 2026-04-05T03:30:00+13:45",
            "2026-04-04T14:15:00+00:00 | 2026-04-05T03:00:00+12:45",
            "2026-04-04T14:45:00+00:00 | 2026-04-05T03:30:00+12:45",
            "2026-04-05T14:15:00+00:00 | 2026-04-06T03:00:00+12:45",
        ],
        id="chatham-autumn-star-minute-runs-in-both-hours",
    ),
    pytest.param(
        # Pacific/Chatham 2026-04-05 03:45 CHADT -> 02:45 CHAST: a fixed 03:30 runs once.
        CHATHAM,
        "30 3 * * *",
        "2026-04-05T02:00:00+13:45",
        [
            "2026-04-04T13:45:00+00:00 | 2026-04-05T03:30:00+13:45",
            "2026-04-05T14:45:00+00:00 | 2026-04-06T03:30:00+12:45",
        ],
        id="chatham-autumn-fixed-time-runs-once",
    ),
    pytest.param(
        # Pacific/Chatham 2026-09-27 02:45 CHAST (+12:45) -> 03:45 CHADT (+13:45), at
        # 2026-09-26 14:00 UTC: `*/30 3` has no 03:00 or 03:30 that day.
        CHATHAM,
        "*/30 3 * * *",
        "2026-09-27T02:00:00+12:45",
        [
            "2026-09-27T13:15:00+00:00 | 2026-09-28T03:00:00+13:45",
            "2026-09-27T13:45:00+00:00 | 2026-09-28T03:30:00+13:45",
        ],
        id="chatham-spring-star-minute-skips-the-gap",
    ),
    pytest.param(
        # Pacific/Chatham 2026-09-27 02:45 CHAST -> 03:45 CHADT: a fixed 03:00 runs at 03:45.
        CHATHAM,
        "0 3 * * *",
        "2026-09-27T02:00:00+12:45",
        [
            "2026-09-26T14:00:00+00:00 | 2026-09-27T03:45:00+13:45",
            "2026-09-27T13:15:00+00:00 | 2026-09-28T03:00:00+13:45",
        ],
        id="chatham-spring-fixed-time-runs-at-gap-end",
    ),
]


@pytest.mark.parametrize(("zone", "expr", "after", "expected"), DST_TABLE)
def test_fires_across_real_dst_transitions_as_isc_cron_does(
    zone: ZoneInfo, expr: str, after: str, expected: list[str]
) -> None:
    assert fires(expr, zone, after, len(expected)) == expected


def test_fixed_time_slots_in_one_gap_coalesce_into_one_fire() -> None:
    # Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST: 02:00 and 02:30 both run at 03:00, once.
    assert fires("0,30 2 * * *", BERLIN, "2026-03-29T00:00:00+01:00", 3) == [
        "2026-03-29T01:00:00+00:00 | 2026-03-29T03:00:00+02:00",
        "2026-03-30T00:00:00+00:00 | 2026-03-30T02:00:00+02:00",
        "2026-03-30T00:30:00+00:00 | 2026-03-30T02:30:00+02:00",
    ]


def test_a_fixed_time_slot_in_the_gap_is_not_repeated_when_asked_again_at_the_gap_end() -> None:
    # Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST.
    schedule = parse_schedule("* * 2 * * *", BERLIN)  # every second of 02:xx, fixed hour
    slot = schedule.next_fire(datetime.fromisoformat("2026-03-29T03:00:00+02:00"))
    assert slot is not None
    assert slot.isoformat() == "2026-03-30T00:00:00+00:00"


def test_hourly_skips_the_hour_that_does_not_exist() -> None:
    # Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST: there is no 02:00.
    assert fires("@hourly", BERLIN, "2026-03-29T00:30:00+01:00", 3) == [
        "2026-03-29T00:00:00+00:00 | 2026-03-29T01:00:00+01:00",
        "2026-03-29T01:00:00+00:00 | 2026-03-29T03:00:00+02:00",
        "2026-03-29T02:00:00+00:00 | 2026-03-29T04:00:00+02:00",
    ]


def test_seconds_slots_resume_at_the_end_of_the_gap() -> None:
    # Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST.
    assert fires("*/20 * * * * *", BERLIN, "2026-03-29T01:59:50+01:00", 2) == [
        "2026-03-29T01:00:00+00:00 | 2026-03-29T03:00:00+02:00",
        "2026-03-29T01:00:20+00:00 | 2026-03-29T03:00:20+02:00",
    ]


def test_after_inside_the_second_occurrence_gives_the_next_periodic_slot_in_it() -> None:
    # America/New_York 2025-11-02 02:00 EDT -> 01:00 EST; 01:20 EST is the second 01:20.
    assert fires("*/15 * * * *", NEW_YORK, "2025-11-02T01:20:00-05:00", 2) == [
        "2025-11-02T06:30:00+00:00 | 2025-11-02T01:30:00-05:00",
        "2025-11-02T06:45:00+00:00 | 2025-11-02T01:45:00-05:00",
    ]


def test_after_inside_the_second_occurrence_skips_a_fixed_slot_already_run() -> None:
    # America/New_York 2025-11-02 02:00 EDT -> 01:00 EST: 01:30 EDT already ran the job.
    assert fires("30 1 * * *", NEW_YORK, "2025-11-02T01:10:00-05:00", 1) == [
        "2025-11-03T06:30:00+00:00 | 2025-11-03T01:30:00-05:00",
    ]


def test_late_in_the_first_occurrence_the_next_periodic_slot_is_the_repeat() -> None:
    # America/New_York 2025-11-02 02:00 EDT -> 01:00 EST: after 01:50 EDT the clock shows
    # 01:00 again before it shows 02:00.
    assert fires("*/15 * * * *", NEW_YORK, "2025-11-02T01:50:00-04:00", 2) == [
        "2025-11-02T06:00:00+00:00 | 2025-11-02T01:00:00-05:00",
        "2025-11-02T06:15:00+00:00 | 2025-11-02T01:15:00-05:00",
    ]


def test_a_step_written_without_a_star_is_fixed_time_as_in_isc_cron() -> None:
    # America/New_York 2025-11-02 02:00 EDT -> 01:00 EST. ISC cron flags a wildcard job by the
    # first character of its minute and hour fields only: `1-23/2` is fixed-time, so the
    # repeated 01:30 runs once.
    assert fires("30 1-23/2 * * *", NEW_YORK, "2025-11-02T00:00:00-04:00", 3) == [
        "2025-11-02T05:30:00+00:00 | 2025-11-02T01:30:00-04:00",
        "2025-11-02T08:30:00+00:00 | 2025-11-02T03:30:00-05:00",
        "2025-11-02T10:30:00+00:00 | 2025-11-02T05:30:00-05:00",
    ]
    assert fires("30 1-3 * * *", NEW_YORK, "2025-11-02T00:00:00-04:00", 3) == [
        "2025-11-02T05:30:00+00:00 | 2025-11-02T01:30:00-04:00",
        "2025-11-02T07:30:00+00:00 | 2025-11-02T02:30:00-05:00",
        "2025-11-02T08:30:00+00:00 | 2025-11-02T03:30:00-05:00",
    ]


@pytest.mark.parametrize(
    ("zone", "expr", "day"),
    [
        (BERLIN, "*/15 * * * *", "2026-10-25"),
        (BERLIN, "0,30 2 * * *", "2026-03-29"),
        (NEW_YORK, "*/5 1 * * *", "2025-11-02"),
        (NEW_YORK, "10,40 0-3 * * *", "2025-03-09"),
        (LORD_HOWE, "*/10 * * * *", "2026-04-05"),
        (LORD_HOWE, "0,20,40 2 * * *", "2025-10-05"),
    ],
)
def test_next_fire_from_any_instant_is_the_next_of_the_chained_fires(
    zone: ZoneInfo, expr: str, day: str
) -> None:
    schedule = parse_schedule(expr, zone)
    start = datetime.fromisoformat(day).replace(tzinfo=zone) - timedelta(hours=6)
    end = start + timedelta(hours=36)
    chained = list(schedule.slots_between(start, end + timedelta(days=2)))
    moment = start
    while moment < end:
        assert schedule.next_fire(moment) == next(slot for slot in chained if slot > moment)
        moment += timedelta(minutes=7, seconds=13, microseconds=500_000)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # 2026-01-01 is a Thursday; 2026-02-01 a Sunday.
    assert utc_fires("0 0 1 * MON", "2025-12-31T12:00:00+00:00", 7) == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-05T00:00:00+00:00",
        "2026-01-12T00:00:00+00:00",
        "2026-01-19T00:00:00+00:00",
        "2026-01-26T00:00:00+00:00",
        "2026-02-01T00:00:00+00:00",
        "2026-02-02T00:00:00+00:00",
    ]


def test_a_day_field_starting_with_star_makes_the_day_fields_an_and() -> None:
    # Vixie cron: `*/2` starts with `*`, so only Mondays with an odd day of month.
    assert utc_fires("0 0 */2 * MON", "2026-01-01T00:00:00+00:00", 6) == [
        "2026-01-05T00:00:00+00:00",
        "2026-01-19T00:00:00+00:00",
        "2026-02-09T00:00:00+00:00",
        "2026-02-23T00:00:00+00:00",
        "2026-03-09T00:00:00+00:00",
        "2026-03-23T00:00:00+00:00",
    ]


def test_l_is_the_last_day_of_the_month() -> None:
    assert utc_fires("0 0 L * *", "2026-01-01T00:00:00+00:00", 4) == [
        "2026-01-31T00:00:00+00:00",
        "2026-02-28T00:00:00+00:00",
        "2026-03-31T00:00:00+00:00",
        "2026-04-30T00:00:00+00:00",
    ]
    assert utc_fires("0 0 L 2 *", "2027-03-01T00:00:00+00:00", 1) == ["2028-02-29T00:00:00+00:00"]


def test_5l_is_the_last_friday_of_the_month() -> None:
    assert utc_fires("0 0 * * 5L", "2026-01-01T00:00:00+00:00", 4) == [
        "2026-01-30T00:00:00+00:00",
        "2026-02-27T00:00:00+00:00",
        "2026-03-27T00:00:00+00:00",
        "2026-04-24T00:00:00+00:00",
    ]
    assert utc_fires("0 0 * * FRIL", "2026-01-01T00:00:00+00:00", 1) == [
        "2026-01-30T00:00:00+00:00"
    ]


def test_mon_hash_2_is_the_second_monday_of_the_month() -> None:
    assert utc_fires("0 0 * * MON#2", "2026-01-01T00:00:00+00:00", 4) == [
        "2026-01-12T00:00:00+00:00",
        "2026-02-09T00:00:00+00:00",
        "2026-03-09T00:00:00+00:00",
        "2026-04-13T00:00:00+00:00",
    ]


def test_month_and_weekday_names_in_any_case() -> None:
    # Sundays: 2026-01-25 is the last in January; 2026-07-05 the first in July.
    assert utc_fires("0 9 * jan,JUL Sun", "2026-01-25T10:00:00+00:00", 2) == [
        "2026-07-05T09:00:00+00:00",
        "2026-07-12T09:00:00+00:00",
    ]


def test_seven_is_sunday_as_in_vixie_cron() -> None:
    assert utc_fires("0 0 * * 7", "2026-01-01T00:00:00+00:00", 1) == ["2026-01-04T00:00:00+00:00"]


def test_a_leading_sixth_field_is_seconds() -> None:
    assert utc_fires("*/10 * * * * *", "2026-01-01T00:00:05+00:00", 3) == [
        "2026-01-01T00:00:10+00:00",
        "2026-01-01T00:00:20+00:00",
        "2026-01-01T00:00:30+00:00",
    ]
    assert utc_fires("30 0 12 * * *", "2026-01-01T00:00:00+00:00", 1) == [
        "2026-01-01T12:00:30+00:00"
    ]


def test_after_with_microseconds_gives_the_next_whole_second() -> None:
    schedule = parse_schedule("*/10 * * * * *", ZONE_UTC)
    just_before = datetime(2026, 1, 1, 0, 0, 9, 999_999, tzinfo=UTC)
    just_after = datetime(2026, 1, 1, 0, 0, 10, 1, tzinfo=UTC)
    assert schedule.next_fire(just_before) == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert schedule.next_fire(just_after) == datetime(2026, 1, 1, 0, 0, 20, tzinfo=UTC)


def test_next_fire_is_strictly_after_and_in_utc_for_an_after_in_any_zone() -> None:
    schedule = parse_schedule("0 12 * * *", BERLIN)
    slot = schedule.next_fire(datetime.fromisoformat("2026-06-10T06:00:00-04:00"))  # 12:00 Berlin
    assert slot is not None
    assert slot.tzinfo is UTC
    assert slot.isoformat() == "2026-06-11T10:00:00+00:00"


def test_next_fire_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        parse_schedule("0 * * * *", ZONE_UTC).next_fire(datetime(2026, 1, 1))  # noqa: DTZ001 - the point


@pytest.mark.parametrize(
    ("macro", "first_fire"),
    [
        ("@yearly", "2027-01-01T00:00:00+00:00"),
        ("@annually", "2027-01-01T00:00:00+00:00"),
        ("@monthly", "2026-04-01T00:00:00+00:00"),
        ("@weekly", "2026-03-15T00:00:00+00:00"),  # Sunday
        ("@daily", "2026-03-12T00:00:00+00:00"),
        ("@midnight", "2026-03-12T00:00:00+00:00"),
        ("@hourly", "2026-03-11T15:00:00+00:00"),
    ],
)
def test_macros_fire_as_their_cron_expressions(macro: str, first_fire: str) -> None:
    assert utc_fires(macro, "2026-03-11T14:30:00+00:00", 1) == [first_fire]


def test_every_is_aligned_to_the_unix_epoch() -> None:
    # 2026-01-01T00:00:00Z is 1767225600 s after the epoch, a multiple of 90.
    schedule = parse_schedule("@every 90s", ZONE_UTC)
    assert isinstance(schedule, EverySchedule)
    assert schedule.next_fire(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 1, 30, tzinfo=UTC
    )
    assert utc_fires("@every 90s", "2026-01-01T00:00:45+00:00", 3) == [
        "2026-01-01T00:01:30+00:00",
        "2026-01-01T00:03:00+00:00",
        "2026-01-01T00:04:30+00:00",
    ]


def test_every_gives_the_same_slots_after_a_restart_and_in_any_zone() -> None:
    after = datetime(2026, 5, 17, 8, 11, 3, 250_000, tzinfo=UTC)
    before_restart = parse_schedule("@every 7m", BERLIN).next_fire(after)
    fresh = EverySchedule(
        expr="@every 7m", zone=NEW_YORK, kind=ScheduleKind.EVERY, interval=timedelta(minutes=7)
    )
    # 2026-05-17T00:00Z is 1778976000 s after the epoch, 60 s past a multiple of 420 s, so
    # slots fall at 00:06 + k * 7 min; the first after 08:11:03 is 08:16.
    assert before_restart == fresh.next_fire(after) == datetime(2026, 5, 17, 8, 16, tzinfo=UTC)
    assert fresh.next_fire(after.astimezone(NEW_YORK)) == before_restart


def test_at_without_offset_is_in_the_job_zone() -> None:
    schedule = parse_schedule("@at 2026-12-01T10:00", BERLIN)
    assert isinstance(schedule, AtSchedule)
    slot = schedule.next_fire(datetime(2026, 1, 1, tzinfo=UTC))
    assert slot is not None
    assert slot.isoformat() == "2026-12-01T09:00:00+00:00"


@pytest.mark.parametrize(
    ("expr", "slot"),
    [
        ("@at 2026-12-01T10:00:30Z", "2026-12-01T10:00:30+00:00"),
        ("@at 2026-12-01T10:00:30+05:30", "2026-12-01T04:30:30+00:00"),
        ("@at 2026-12-01 10:00:30-05:00", "2026-12-01T15:00:30+00:00"),
    ],
)
def test_at_with_an_explicit_offset_ignores_the_job_zone(expr: str, slot: str) -> None:
    fired = parse_schedule(expr, BERLIN).next_fire(datetime(2026, 1, 1, tzinfo=UTC))
    assert fired is not None
    assert fired.isoformat() == slot


def test_at_in_a_gap_or_a_repeated_hour_resolves_like_a_fixed_time_slot() -> None:
    # Europe/Berlin 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    in_gap = parse_schedule("@at 2026-03-29T02:30", BERLIN).next_fire(start)
    repeated = parse_schedule("@at 2026-10-25T02:30", BERLIN).next_fire(start)
    assert in_gap is not None
    assert repeated is not None
    assert in_gap.isoformat() == "2026-03-29T01:00:00+00:00"
    assert repeated.isoformat() == "2026-10-25T00:30:00+00:00"


def test_at_already_past_or_exactly_now_never_fires() -> None:
    schedule = parse_schedule("@at 2026-12-01T10:00Z", ZONE_UTC)
    assert schedule.next_fire(datetime(2026, 12, 1, 10, 0, tzinfo=UTC)) is None
    assert schedule.next_fire(datetime(2027, 1, 1, tzinfo=UTC)) is None
    assert (
        list(
            schedule.slots_between(
                datetime(2027, 1, 1, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("expr", "kind"), [("@manual", ScheduleKind.MANUAL), ("@reboot", ScheduleKind.REBOOT)]
)
def test_manual_and_reboot_never_fire_from_next_fire(expr: str, kind: ScheduleKind) -> None:
    schedule = parse_schedule(expr, ZONE_UTC)
    assert type(schedule) is Schedule
    assert schedule.kind is kind
    assert schedule.next_fire(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert schedule.min_interval() is None


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4,6 *", "0 0 31 2 *"])
def test_a_schedule_that_can_never_fire_is_an_error(expr: str) -> None:
    with pytest.raises(ValueProblem) as caught:
        parse_schedule(expr, ZONE_UTC)
    assert str(caught.value) == f"never fires: no date matches {expr!r}"


def test_an_impossible_day_of_month_still_fires_on_its_day_of_week() -> None:
    # Both day fields restricted: Feb 30th never comes, but Mondays in February do.
    assert utc_fires("0 0 30 2 MON", "2026-01-01T00:00:00+00:00", 1) == [
        "2026-02-02T00:00:00+00:00"
    ]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * * * * *", "cron expressions have 5 fields (or 6 with leading seconds); got 7"),
        ("* * * *", "cron expressions have 5 fields (or 6 with leading seconds); got 4"),
        ("0 25 * * *", "hour field '25' is not valid; expected 0-23"),
        ("61 * * * *", "minute field '61' is not valid; expected 0-59"),
        ("60 * * * * *", "second field '60' is not valid; expected 0-59"),
        ("0 0 0 * *", "day-of-month field '0' is not valid; expected 1-31 or L"),
        ("0 0 15W * *", "day-of-month field '15W' is not valid; expected 1-31 or L"),
        ("0 0 * 13 *", "month field '13' is not valid; expected 1-12 or JAN-DEC"),
        ("0 0 * XYZ *", "month field 'XYZ' is not valid; expected 1-12 or JAN-DEC"),
        (
            "0 0 * * FOO",
            "day-of-week field 'FOO' is not valid; expected 0-7 or SUN-SAT, with 5L or MON#2",
        ),
        (
            "0 0 * * MON#6",
            "day-of-week field 'MON#6' is not valid; expected 0-7 or SUN-SAT, with 5L or MON#2",
        ),
        ("H * * * *", "minute field 'H' is not valid; expected 0-59"),
        ("*/0 * * * *", "minute field '*/0' is not valid; expected 0-59"),
        ("", "schedule is empty"),
        (
            "@fortnightly",
            "unknown macro '@fortnightly'; known: @yearly, @annually, @monthly, @weekly, "
            "@daily, @midnight, @hourly, @every, @at, @manual, @reboot",
        ),
        ("@daily at 3", "@daily takes no argument; got 'at 3'"),
        ("@every", "@every needs an interval, e.g. '@every 90s'"),
        ("@every 0s", "@every '0s': the interval must be whole seconds, at least 1s"),
        ("@every 1500ms", "@every '1500ms': the interval must be whole seconds, at least 1s"),
        (
            "@every soon",
            "@every: 'soon' is not a duration; write e.g. '30s', '5m', '1h30m', '500ms', '7d'",
        ),
        (
            "@at 2026-12-01",
            "@at needs a time as well as a date; write e.g. '@at 2026-12-01T10:00' or "
            "'@at 2026-12-01T10:00:00+01:00'",
        ),
        (
            "@at tomorrow",
            "@at 'tomorrow' is not an ISO date-time; write e.g. '@at 2026-12-01T10:00' or "
            "'@at 2026-12-01T10:00:00+01:00'",
        ),
        ("@at 2026-12-01T10:00:00.5", "@at '2026-12-01T10:00:00.5': give whole seconds"),
    ],
)
def test_a_bad_expression_names_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(ValueProblem) as caught:
        parse_schedule(expr, ZONE_UTC)
    assert str(caught.value) == message


def test_slots_between_covers_an_open_closed_window_oldest_first() -> None:
    schedule = parse_schedule("0 * * * *", ZONE_UTC)
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    window = schedule.slots_between(start, start + timedelta(hours=3))
    assert [slot.isoformat() for slot in window] == [
        "2026-01-01T01:00:00+00:00",
        "2026-01-01T02:00:00+00:00",
        "2026-01-01T03:00:00+00:00",
    ]


def test_slots_between_counts_the_repeated_hour_for_a_periodic_job() -> None:
    # Europe/Berlin 2026-10-25 03:00 CEST -> 02:00 CET: four real hours from 00:00 to 03:00 CET.
    schedule = parse_schedule("@hourly", BERLIN)
    window = schedule.slots_between(
        datetime.fromisoformat("2026-10-25T00:30:00+02:00"),
        datetime.fromisoformat("2026-10-25T03:00:00+01:00"),
    )
    assert [slot.astimezone(BERLIN).isoformat() for slot in window] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


@pytest.mark.parametrize(
    ("expr", "interval"),
    [
        ("*/10 * * * * *", timedelta(seconds=10)),
        ("0,30 2 * * *", timedelta(minutes=30)),
        ("0 9 * * MON-FRI", timedelta(days=1)),
        ("@yearly", timedelta(days=365)),
        ("@every 90s", timedelta(seconds=90)),
        ("@at 2026-12-01T10:00", None),
    ],
)
def test_min_interval_is_the_smallest_gap_between_slots(
    expr: str, interval: timedelta | None
) -> None:
    assert parse_schedule(expr, BERLIN).min_interval() == interval


def test_parse_is_cached_so_equal_inputs_share_one_object() -> None:
    first = parse_schedule("*/5 9-17 * * MON-FRI", BERLIN)
    assert parse_schedule("*/5 9-17 * * MON-FRI", ZoneInfo("Europe/Berlin")) is first
    assert parse_schedule(expr="*/5 9-17 * * MON-FRI", zone=BERLIN) is first
    assert parse_schedule("*/5 9-17 * * MON-FRI", NEW_YORK) is not first


def test_parse_keeps_the_expression_as_written_and_the_zone() -> None:
    schedule = parse_schedule("  0 3 * * *", NEW_YORK)
    assert isinstance(schedule, CronSchedule)
    assert (schedule.expr, schedule.zone, schedule.kind) == (
        "  0 3 * * *",
        NEW_YORK,
        ScheduleKind.CRON,
    )
    assert (schedule.periodic, schedule.day_or, schedule.with_seconds) == (False, False, False)


def test_jitter_is_deterministic_and_inside_the_window() -> None:
    assert jitter_offset("backup-nightly", timedelta(minutes=10)) == timedelta(
        minutes=9, seconds=55, microseconds=859_367
    )
    assert jitter_offset("reports/weekly", timedelta(minutes=10)) == timedelta(
        minutes=4, seconds=8, microseconds=436_958
    )
    assert jitter_offset("backup-nightly", timedelta(0)) == timedelta(0)


def test_jitter_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from datetime import timedelta; from kron.model.schedule import jitter_offset; "
        "print(jitter_offset('backup-nightly', timedelta(minutes=10)) // timedelta(microseconds=1))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    )
    assert int(result.stdout) == jitter_offset(
        "backup-nightly", timedelta(minutes=10)
    ) // timedelta(microseconds=1)


def test_jitter_spreads_different_ids_across_the_window() -> None:
    window = timedelta(hours=1)
    offsets = [jitter_offset(f"job-{n}", window) for n in range(200)]
    assert len(set(offsets)) == 200
    assert all(timedelta(0) <= offset < window for offset in offsets)
    quarters = {offset // (window / 4) for offset in offsets}
    assert quarters == {0, 1, 2, 3}


def test_jitter_refuses_a_negative_window() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        jitter_offset("job", timedelta(seconds=-1))
