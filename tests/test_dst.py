"""Daylight-saving changes as a schedule meets them (kron.model.dst), on real transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kron.model.dst import Shift, is_second_pass, shifts, slots_in_shifts
from kron.model.schedule import parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")
YEAR_2026 = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
# Europe/Berlin in 2026: 29 March 01:00 UTC, 02:00 CET -> 03:00 CEST (02:00-03:00 skipped);
# 25 October 01:00 UTC, 03:00 CEST -> 02:00 CET (02:00-03:00 repeated).
SPRING = Shift(
    at=datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    wall_start=datetime(2026, 3, 29, 2, 0),  # noqa: DTZ001 - a wall time
    length=timedelta(hours=1),
    repeated=False,
)
AUTUMN = Shift(
    at=datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    wall_start=datetime(2026, 10, 25, 2, 0),  # noqa: DTZ001 - a wall time
    length=timedelta(hours=1),
    repeated=True,
)


def test_shifts_are_the_zone_s_offset_changes_with_the_hour_they_skip_or_repeat() -> None:
    assert shifts(BERLIN, *YEAR_2026) == (SPRING, AUTUMN)
    assert shifts(ZoneInfo("Asia/Tokyo"), *YEAR_2026) == ()
    # Lord Howe Island moves its clocks by half an hour: 2 a.m. -> 1:30 a.m. on 5 April 2026.
    lord_howe = shifts(ZoneInfo("Australia/Lord_Howe"), *YEAR_2026)
    assert [(s.at.isoformat(), s.length, s.repeated) for s in lord_howe] == [
        ("2026-04-04T15:00:00+00:00", timedelta(minutes=30), True),
        ("2026-10-03T15:30:00+00:00", timedelta(minutes=30), False),
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("30 2 * * *", [(SPRING, "2026-03-29T02:30:00"), (AUTUMN, "2026-10-25T02:30:00")]),
        ("0 1-3 * * *", [(SPRING, "2026-03-29T02:00:00"), (AUTUMN, "2026-10-25T02:00:00")]),
        ("15 3 * * *", []),  # 03:15 is neither skipped nor repeated
        ("*/15 * * * *", []),  # periodic: ISC cron and the CronJob controller agree
        ("30 2 * * MON", []),  # both changes fall on a Sunday
        ("@reboot", []),
    ],
)
def test_fixed_time_slots_in_a_skipped_or_repeated_hour_are_found(
    expr: str, expected: list[tuple[Shift, str]]
) -> None:
    found = slots_in_shifts(parse_schedule(expr, BERLIN), *YEAR_2026)
    assert [(shift, wall.isoformat()) for shift, wall in found] == expected


def test_the_second_pass_of_a_repeated_hour_is_told_from_the_first() -> None:
    daily = parse_schedule("30 2 * * *", BERLIN)
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST (+02:00)
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET (+01:00)
    assert first.astimezone(BERLIN).isoformat() == "2026-10-25T02:30:00+02:00"
    assert second.astimezone(BERLIN).isoformat() == "2026-10-25T02:30:00+01:00"
    assert is_second_pass(daily, first) is False
    assert is_second_pass(daily, second) is True
    assert is_second_pass(daily, datetime(2026, 10, 26, 1, 30, tzinfo=UTC)) is False
    assert is_second_pass(parse_schedule("30 * * * *", BERLIN), second) is False
    assert is_second_pass(parse_schedule("45 2 * * *", BERLIN), second) is False
