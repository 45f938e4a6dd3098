"""kron export kubernetes as a whole: the example jobs' golden output, kron mode's ConfigMap and
Secrets, the command line (-o, --check, paths), and bad input."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .conftest import run_cli
from .kube import CONTAINER, IMAGE, POD, check, cron_job, dig, export, objects

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden" / "kubernetes"
BERLIN = 'schedule = "0 3 * * *"\ntimezone = "Europe/Berlin"\n'


def test_the_example_jobs_export_as_the_golden_files() -> None:
    exported = export(ROOT / "jobs.d")
    if os.environ.get("KRON_UPDATE_GOLDEN") == "1":  # after a deliberate change of the mapping
        for stale in GOLDEN.glob("*.yaml"):
            stale.unlink()
        for name, text in exported.files.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
    golden = {path.name: path.read_text(encoding="utf-8") for path in GOLDEN.glob("*.yaml")}
    assert exported.files == golden
    assert [str(p) for p in exported.problems] == [
        f"{ROOT}/jobs.d/follow-ups/cert-renewal-check.yaml:6:1: warning: schedule: @at "
        "2027-06-07T09:00: a CronJob has no year; exported as '0 9 7 6 *' in Europe/Berlin; kron "
        "in the pod runs only the slot of 2027, and an export after that time suspends it",
        f"{ROOT}/jobs.d/probes/disk.toml:5:1: schedule: refused: a seconds field: a CronJob fires "
        "at most once a minute",
        f"{ROOT}/jobs.d/weekly/changes-summary.toml:9:1: warning: agent: agent budgets count the "
        "runs of one pod only: each pod starts with a full day's budget",
    ]
    assert exported.lines == [
        "backups/nightly -> cronjob/backups-nightly (kron): cwd, retry",
        "follow-ups/cert-renewal-check -> cronjob/follow-ups-cert-renewal-check (kron): schedule",
        "maintenance/rotate-logs -> cronjob/maintenance-rotate-logs (native)",
        "probes/disk: refused",
        "weekly/changes-summary -> cronjob/weekly-changes-summary (kron): agent",
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("*.yaml")))
def test_every_golden_manifest_is_valid_kubernetes(name: str) -> None:
    body = yaml.safe_load((GOLDEN / name).read_text(encoding="utf-8"))
    if name == "kustomization.yaml":
        listed = sorted(p.name for p in GOLDEN.glob("*.yaml") if p.name != name)
        assert body == {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": listed,
        }
    else:
        check(body)


def test_kron_mode_mounts_the_job_files_and_env_files_and_names_its_secrets(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("kron.toml", 'timezone = "Europe/Berlin"\n')
    write(
        "etl/extract.toml",
        BERLIN
        + 'command = ["extract"]\ntriggers = ["etl/load"]\n'
        + '[[notify]]\ntelegram = { bot_token_env = "TG_TOKEN", chat_id = "1" }\n',
    )
    write(
        "etl/load.toml",
        'schedule = "@manual"\ncommand = ["load"]\nenv_file = "load.env"\n'
        + '[[notify]]\nemail = { to = ["ops@example.org"], host = "smtp.example.org", '
        + 'username = "kron", password_env = "SMTP_PASSWORD" }\n',
    )
    (jobs_dir / "etl" / "load.env").write_text("DB_PASSWORD=hunter2\n", encoding="utf-8")
    exported = export(jobs_dir)
    assert exported.problems == []
    assert "hunter2" not in "".join(exported.files.values())
    extract = cron_job(exported, "etl-extract")
    assert dig(extract, f"{POD}.volumes") == [
        {
            "name": "jobs",
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {
                        "configMap": {
                            "name": "etl-extract",
                            "items": [
                                {"key": "etl.extract.toml", "path": "etl/extract.toml"},
                                {"key": "etl.load.toml", "path": "etl/load.toml"},
                                {"key": "kron.toml", "path": "kron.toml"},
                            ],
                        }
                    },
                    {
                        "secret": {
                            "name": "etl-load-env-file",
                            "items": [{"key": "env_file", "path": "etl/load.env"}],
                        }
                    },
                ],
            },
        }
    ]
    assert dig(extract, f"{CONTAINER}.env")[1:] == [
        {
            "name": "TG_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": "etl-extract-env", "key": "TG_TOKEN", "optional": True}
            },
        },
        {
            "name": "SMTP_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {"name": "etl-load-env", "key": "SMTP_PASSWORD", "optional": True}
            },
        },
    ]
    maps = {b["metadata"]["name"]: b for b in objects(exported) if b["kind"] == "ConfigMap"}
    assert sorted(maps) == ["etl-extract", "etl-load"]
    assert maps["etl-extract"]["data"] == {
        "etl.extract.toml": (jobs_dir / "etl" / "extract.toml").read_text(encoding="utf-8"),
        "etl.load.toml": (jobs_dir / "etl" / "load.toml").read_text(encoding="utf-8"),
        "kron.toml": 'timezone = "Europe/Berlin"\n',
    }
    assert sorted(maps["etl-load"]["data"]) == ["etl.load.toml", "kron.toml"]


def test_an_env_file_outside_the_jobs_directory_is_refused_in_kron_mode(
    tmp_path: Path, jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    (tmp_path / "outside.env").write_text("A=1\n", encoding="utf-8")
    write("j.toml", BERLIN + 'command = ["true"]\nenv_file = "../outside.env"\n')
    exported = export(jobs_dir)
    assert [str(p) for p in exported.problems] == [
        f"{jobs_dir}/j.toml:4:1: env_file: refused in kron mode: the pod mounts only the jobs "
        "directory, and this env_file is outside it",
    ]
    assert exported.refused == ["j"]


def test_x_kubernetes_export_false_leaves_a_job_out(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write(
        "fast.toml",
        'schedule = "*/5 * * * * *"\ncommand = ["true"]\n[x-kubernetes]\nexport = false\n',
    )
    write("j.toml", BERLIN + 'command = ["true"]\n')
    exported = export(jobs_dir)
    assert (exported.refused, exported.problems) == ([], [])
    assert exported.lines == [
        "fast: left out (x-kubernetes.export = false)",
        "j -> cronjob/j (native)",
    ]
    assert sorted(exported.files) == ["j.cronjob.yaml", "kustomization.yaml"]


def test_paths_export_part_of_the_jobs_under_the_same_names(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("a-b.toml", BERLIN + 'command = ["true"]\n')
    write("a_b.toml", BERLIN + 'command = ["true"]\n')
    write("other/c.toml", BERLIN + 'command = ["true"]\n')
    assert sorted(export(jobs_dir, [jobs_dir / "a_b.toml"]).files) == [
        "a-b-648fa9b3.cronjob.yaml",
        "kustomization.yaml",
    ]
    assert sorted(export(jobs_dir, [jobs_dir / "other"]).files) == [
        "kustomization.yaml",
        "other-c.cronjob.yaml",
    ]


def _cli(jobs_dir: Path, *args: object) -> tuple[int, str, str]:
    result = run_cli("export", "kubernetes", "--jobs-dir", jobs_dir, "--image", IMAGE, *args)
    return result.code, result.out, result.err


def test_output_writes_a_folder_and_check_passes_on_it_then_fails_after_an_edit(
    tmp_path: Path, jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("a.toml", BERLIN + 'command = ["true"]\n')
    write("b.toml", BERLIN + 'command = ["true"]\njitter = "1m"\n')
    manifests = tmp_path / "deploy"
    code, out, err = _cli(jobs_dir, "-o", manifests)
    assert (code, out) == (0, "")
    assert err.splitlines() == [
        "a -> cronjob/a (native)",
        "b -> cronjob/b (kron): jitter",
        f"{manifests}: 4 files written, 0 removed, 0 unchanged",
        "2 jobs exported (1 native, 1 kron), 0 refused, 0 warnings",
    ]
    assert sorted(p.name for p in manifests.iterdir()) == [
        "a.cronjob.yaml",
        "b.configmap.yaml",
        "b.cronjob.yaml",
        "kustomization.yaml",
    ]
    code, out, err = _cli(jobs_dir, "--check", manifests)
    assert (code, out, err.splitlines()[-2]) == (0, "", f"{manifests} is what the job files export")

    write("a.toml", 'schedule = "0 4 * * *"\ntimezone = "Europe/Berlin"\ncommand = ["true"]\n')
    code, out, err = _cli(jobs_dir, "--check", manifests)
    assert code == 1
    diff = out.splitlines()
    assert diff[:2] == [
        f"--- {manifests}/a.cronjob.yaml (committed)",
        f"+++ {manifests}/a.cronjob.yaml (exported)",
    ]
    assert "-  schedule: 0 3 * * *" in diff
    assert "+  schedule: 0 4 * * *" in diff
    assert (
        err.splitlines()[-2] == f"{manifests} differs from what the job files export (diff above)"
    )


def test_a_removed_job_s_manifests_are_removed_and_check_shows_them_gone(
    tmp_path: Path, jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("a.toml", BERLIN + 'command = ["true"]\n')
    write("b.toml", BERLIN + 'command = ["true"]\n')
    manifests = tmp_path / "deploy"
    assert _cli(jobs_dir, "-o", manifests)[0] == 0
    (manifests / "notes.yaml").write_text("# mine\n", encoding="utf-8")
    (jobs_dir / "b.toml").unlink()
    code, out, _ = _cli(jobs_dir, "--check", manifests)
    assert code == 1
    assert out.splitlines()[:2] == [f"--- {manifests}/b.cronjob.yaml (committed)", "+++ /dev/null"]
    code, _, err = _cli(jobs_dir, "-o", manifests)
    assert code == 0
    assert f"{manifests}: 1 file written, 1 removed, 1 unchanged" in err.splitlines()
    assert sorted(p.name for p in manifests.iterdir()) == [
        "a.cronjob.yaml",
        "kustomization.yaml",
        "notes.yaml",  # not written by an export: left alone
    ]
    assert _cli(jobs_dir, "--check", manifests)[:2] == (0, "")


def test_without_output_the_objects_go_to_stdout_as_one_stream(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("a.toml", BERLIN + 'command = ["true"]\n')
    write("b.toml", BERLIN + 'command = ["true"]\njitter = "1m"\n')
    code, out, _ = _cli(jobs_dir, "--namespace", "batch")
    assert code == 0
    bodies = list(yaml.safe_load_all(out))
    for body in bodies:
        check(body)
    assert [(b["kind"], b["metadata"]["name"]) for b in bodies] == [
        ("CronJob", "a"),
        ("CronJob", "b"),
        ("ConfigMap", "b"),
    ]
    assert out.startswith("# Generated by `kron export kubernetes` from a.toml.\n")


def test_a_refused_job_makes_the_export_fail_but_the_others_are_written(
    tmp_path: Path, jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("fast.toml", 'schedule = "*/5 * * * * *"\ncommand = ["true"]\n')
    write("ok.toml", BERLIN + 'command = ["true"]\n')
    code, _, err = _cli(jobs_dir, "-o", tmp_path / "deploy")
    assert code == 1
    assert err.splitlines()[0] == (
        f"{jobs_dir}/fast.toml:1:1: schedule: refused: a seconds field: a CronJob fires at most "
        "once a minute"
    )
    assert err.splitlines()[-1] == "1 job exported (1 native, 0 kron), 1 refused, 0 warnings"
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == [
        "kustomization.yaml",
        "ok.cronjob.yaml",
    ]


def test_an_invalid_job_file_stops_the_export_before_anything_is_written(
    tmp_path: Path, jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("ok.toml", BERLIN + 'command = ["true"]\n')
    write("bad.toml", 'schedule = "0 3 * *"\ncommand = ["true"]\n')
    code, out, err = _cli(jobs_dir, "-o", tmp_path / "deploy")
    assert (code, out) == (1, "")
    assert err == (
        f"{jobs_dir}/bad.toml:1:1: schedule: cron expressions have 5 fields (or 6 with leading "
        "seconds); got 4\n"
    )
    assert not (tmp_path / "deploy").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-o", "x", "--check", "y"],
            "kron export kubernetes: give --output or --check, not both",
        ),
        (
            ["--namespace", "Batch_Jobs"],
            "kron export kubernetes: --namespace 'Batch_Jobs' is not a DNS-1123 label",
        ),
        (["/etc/hostname"], "kron export: /etc/hostname is not in the jobs directory {jobs_dir}"),
        (["{jobs_dir}/nope.toml"], "kron export: no job file at {jobs_dir}/nope.toml"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    jobs_dir: Path, write: Callable[[str, str], Path], args: list[str], message: str
) -> None:
    write("ok.toml", BERLIN + 'command = ["true"]\n')
    code, out, err = _cli(jobs_dir, *(a.format(jobs_dir=jobs_dir) for a in args))
    assert (code, out, err) == (2, "", message.format(jobs_dir=jobs_dir) + "\n")


def test_export_without_image_or_target_is_a_usage_error(jobs_dir: Path) -> None:
    assert run_cli("export", "--jobs-dir", jobs_dir).code == 2
    missing = run_cli("export", "kubernetes", "--jobs-dir", jobs_dir)
    assert missing.code == 2
    assert "--image" in missing.err


def test_a_config_map_holds_each_job_file_byte_for_byte(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    texts = {
        "crlf.toml": 'schedule = "0 3 * * *"   \r\ncommand = ["true"]\t\r\njitter = "1m"',
        "pay$day.toml": '  # indented\nschedule = "0 3 * * *"\ncommand = ["echo", "ü ✓ $HOME"]\n'
        'jitter = "1m"\n\n\n',
    }
    for name, text in texts.items():
        (jobs_dir / name).write_bytes(text.encode())
    exported = export(jobs_dir)
    assert exported.problems == []
    maps = {b["metadata"]["name"]: b["data"] for b in objects(exported) if b["kind"] == "ConfigMap"}
    assert maps == {
        "crlf": {"crlf.toml": texts["crlf.toml"]},
        "pay-day": {"pay_day.toml": texts["pay$day.toml"]},
    }
    # Kubernetes turns `$$` back into `$` in args
    assert dig(cron_job(exported, "pay-day"), f"{CONTAINER}.args")[1] == "pay$$day"


def test_hostile_x_kubernetes_tables_refuse_the_job_with_their_lines(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("xs.toml", BERLIN + 'command = ["true"]\nx-kubernetes = "big"\n')
    write(
        "xr.toml",
        BERLIN
        + 'command = ["true"]\n[x-kubernetes.resources]\nlimits = { memory = "lots", cpu = [1] }\n',
    )
    exported = export(jobs_dir)
    assert [str(p).removeprefix(f"{jobs_dir}/") for p in exported.problems] == [
        'xr.toml:5:12: x-kubernetes.resources.limits.memory: "lots" does not match '
        "^[+-]?[0-9.]+([eE][+-]?[0-9]+|[a-zA-Z]{0,2})$",
        "xr.toml:5:29: x-kubernetes.resources.limits.cpu: expected a string or an integer or a "
        "number, got [1]",
        'xs.toml:4:1: x-kubernetes: expected a table, got "big"',
    ]
    assert (exported.refused, exported.lines) == (["xr", "xs"], ["xr: refused", "xs: refused"])


def test_an_output_that_cannot_be_written_is_an_error_without_a_traceback(
    tmp_path: Path, jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("ok.toml", BERLIN + 'command = ["true"]\n')
    taken = tmp_path / "a-file"
    taken.write_text("", encoding="utf-8")
    code, out, err = _cli(jobs_dir, "-o", taken)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == f"kron: cannot write {taken}: File exists"


def test_notification_secrets_in_a_job_file_are_refused_or_flagged_in_kron_mode(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write(
        "tg.toml",
        BERLIN
        + 'command = ["true"]\n[[notify]]\ntelegram = { bot_token = "123:abc", chat_id = "1" }\n',
    )
    write(
        "hook.toml",
        BERLIN
        + 'command = ["true"]\n[[notify]]\n'
        + 'webhook = { url = "http://127.0.0.1:9/", headers = { Authorization = "Bearer x" } }\n',
    )
    exported = export(jobs_dir)
    assert [str(p).removeprefix(f"{jobs_dir}/") for p in exported.problems] == [
        "hook.toml:5:42: warning: notify.0.webhook.headers: these headers go into a ConfigMap with "
        "the job file: whoever may read ConfigMaps in the namespace reads them",
        "tg.toml:5:14: notify.0.telegram.bot_token: refused in kron mode: the token would go into "
        "a ConfigMap with the job file; use bot_token_env, which the pod reads from a Secret",
    ]
    assert exported.refused == ["tg"]
    assert "123:abc" not in "".join(exported.files.values())
