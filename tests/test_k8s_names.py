"""Names for Kubernetes (DNS-1123, label values, ConfigMap keys), a Job's slot read back from its
name, and the retry delays a CronJob carries natively."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kron.config.kubernetes.carry import k8s_retry_delays, kron_retry_delays
from kron.config.kubernetes.names import (
    config_map_keys,
    label_value,
    slot_of_job_name,
    unique_names,
)
from kron.engine.retries import retry_timeline

from .harness import make_job


@pytest.mark.parametrize(
    ("ids", "names"),
    [
        (["backups/nightly"], {"backups/nightly": "backups-nightly"}),
        (["Weekly/Changes_Summary"], {"Weekly/Changes_Summary": "weekly-changes-summary"}),
        (["a//b--c__d"], {"a//b--c__d": "a-b-c-d"}),
        (["-x-"], {"-x-": "x"}),
        (["é"], {"é": "job-4a99557e"}),  # nothing left of the id
        # `a-b` is its own plain name, so it keeps it; the others get sha256(id)[:8]
        (
            ["a_b", "a-b"],
            {"a-b": "a-b", "a_b": "a-b-648fa9b3"},
        ),
        (
            ["x/y", "x_y"],
            {"x/y": "x-y-bd3c9047", "x_y": "x-y-f9068e81"},
        ),
    ],
)
def test_job_ids_become_unique_dns_labels(ids: list[str], names: dict[str, str]) -> None:
    assert unique_names(ids)[0] == names


def test_a_name_does_not_depend_on_the_jobs_beside_it_unless_they_collide() -> None:
    alone, _ = unique_names(["reports/daily"])
    crowded, renamed = unique_names(["reports/daily", "reports/weekly", "ops/daily"])
    assert alone["reports/daily"] == crowded["reports/daily"] == "reports-daily"
    assert renamed == []


def test_label_values_are_checked_as_the_api_server_does() -> None:
    assert label_value("backups.nightly") == "backups.nightly"
    assert label_value("") == ""
    assert label_value("a" * 63) == "a" * 63
    assert label_value("a" * 64) is None
    assert label_value("Jane Doe") is None
    assert label_value("-x") is None
    assert label_value("x.") is None


def test_config_map_keys_flatten_paths_and_stay_unique() -> None:
    assert config_map_keys(["kron.toml", "backups/nightly.toml", "a b/ü.yaml"]) == {
        "kron.toml": "kron.toml",
        "backups/nightly.toml": "backups.nightly.toml",
        "a b/ü.yaml": "a_b._.yaml",
    }
    keys = config_map_keys(["backups.nightly.toml", "backups/nightly.toml"])
    assert keys["backups.nightly.toml"] == "backups.nightly.toml"
    assert keys["backups/nightly.toml"] == "backups.nightly.toml-de3c75a1"


@pytest.mark.parametrize(
    ("job_name", "cronjob", "slot"),
    [
        # 29,000,000 minutes after the epoch is 2025-02-19T21:20:00Z
        ("backups-nightly-29000000", "backups-nightly", datetime(2025, 2, 19, 21, 20, tzinfo=UTC)),
        ("backups-nightly-29000000", "backups", None),  # another CronJob's Job
        ("backups-nightly-manual-x", "backups-nightly", None),  # kubectl create job --from
        ("backups-nightly-", "backups-nightly", None),
        ("backups-nightly-٣", "backups-nightly", None),  # an Arabic-Indic digit
        ("backups-nightly-" + "9" * 40, "backups-nightly", None),
        ("", "backups-nightly", None),
    ],
)
def test_the_slot_is_read_back_from_the_name_the_controller_gives_a_job(
    job_name: str, cronjob: str, slot: datetime | None
) -> None:
    assert slot_of_job_name(job_name, cronjob) == slot


def test_the_job_controller_retries_a_pod_after_10s_doubling_up_to_6_minutes() -> None:
    assert k8s_retry_delays(7) == [timedelta(seconds=s) for s in (10, 20, 40, 80, 160, 320, 360)]


@pytest.mark.parametrize(
    "retry",
    [
        "attempts = 4",
        'attempts = 5\ndelay = "1m"\nmax_delay = "3m"',
        'attempts = 3\nbackoff = "fixed"\ndelay = "30s"',
        'attempts = 3\nbackoff = "fixed"\ndelay = "10m"\nmax_delay = "1m"',
    ],
)
def test_kron_s_retry_delays_are_the_engine_s(tmp_path, retry: str) -> None:  # type: ignore[no-untyped-def]
    job = make_job(
        tmp_path, "j.toml", f'schedule = "@daily"\ncommand = ["true"]\n[retry]\n{retry}\n'
    )
    assert [d.total_seconds() for d in kron_retry_delays(job)] == retry_timeline(job.retry)
