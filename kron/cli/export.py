"""`kron export kubernetes`: the same job files as CronJobs, for a cluster's GitOps."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kron.cli.common import EXIT_BAD, EXIT_OK
from kron.model.errors import KronError, UsageError
from kron.model.units import plural

if TYPE_CHECKING:
    from kron.config.kubernetes.export import Exported

__all__ = ["add_parser", "export"]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DESCRIPTION = """\
Render each job as a Kubernetes CronJob (and, for jobs run by kron in the pod, a ConfigMap of
the job files), with a kustomization.yaml listing them. A job a CronJob cannot carry is refused
with its reason. See docs/kubernetes.md.

modes: native runs the job's own command in the container; kron runs `kron run JOB --here` on
the job files, keeping waits, triggers, notifications, retry delays and records. Without
--mode, each job gets native unless it needs kron.
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `export kubernetes` to the command line's subcommands."""
    p = sub.add_parser(
        "export", parents=[common], help="render the jobs for another scheduler (kubernetes)"
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True, parser_class=type(p))
    k = targets.add_parser(
        "kubernetes",
        parents=[common],
        help="CronJob manifests for a cluster",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    k.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="job files or folders in the jobs directory (default: every job)",
    )
    k.add_argument(
        "--image",
        required=True,
        help="the container image: a kron image (see Dockerfile) with what the jobs need; "
        "docker jobs run their own image",
    )
    k.add_argument("--namespace", help="set on every object (default: none, kubectl's)")
    k.add_argument(
        "-o",
        "--output",
        metavar="DIR|-",
        help="a folder for the manifests and kustomization.yaml (files from an earlier export "
        "that are gone are removed), or - for one YAML stream on stdout (the default)",
    )
    k.add_argument(
        "--mode",
        choices=["native", "kron"],
        help="native: the job's command runs in the container; kron: `kron run JOB --here` "
        "does (default: native unless the job needs kron)",
    )
    k.add_argument(
        "--check",
        type=Path,
        metavar="DIR",
        help="write nothing; exit 1 and print a diff when DIR's manifests differ from what "
        "the job files export",
    )


def export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.kubernetes.export import export_jobs
    from kron.config.kubernetes.manifests import Mode

    if args.check is not None and args.output is not None:
        raise UsageError("kron export kubernetes: give --output or --check, not both")
    if args.namespace is not None and not _DNS_LABEL.fullmatch(args.namespace):
        raise UsageError(
            f"kron export kubernetes: --namespace {args.namespace!r} is not a DNS-1123 label"
        )
    if not args.image.strip():
        raise UsageError("kron export kubernetes: --image is empty")
    if not args.jobs_dir.is_dir():
        raise UsageError(
            f"kron export kubernetes: no jobs directory at {args.jobs_dir} (give --jobs-dir)"
        )
    exported = export_jobs(
        args.paths,
        jobs_dir=args.jobs_dir,
        image=args.image,
        namespace=args.namespace,
        mode=Mode(args.mode) if args.mode else None,
        now=datetime.now(UTC),
    )
    for problem in exported.problems:
        print(problem, file=err)
    for line in exported.lines:
        print(line, file=err)
    status = EXIT_BAD if exported.refused else EXIT_OK
    try:
        status = _emit(exported, args, out, err, status)
    except OSError as exc:
        where = f"read {args.check}" if args.check is not None else f"write {args.output}"
        raise KronError(f"cannot {where}: {exc.strerror or exc}") from None
    native = sum(1 for mode in exported.modes.values() if mode is Mode.NATIVE)
    kron = len(exported.modes) - native
    print(
        f"{plural(native + kron, 'job')} exported ({native} native, {kron} kron), "
        f"{len(exported.refused)} refused, {plural(len(exported.warnings), 'warning')}",
        file=err,
    )
    return status


def _emit(
    exported: Exported, args: argparse.Namespace, out: TextIO, err: TextIO, status: int
) -> int:
    """Print, write or check the manifests; return the exit status."""
    from kron.config.kubernetes.files import check_dir, stream, write_dir

    if args.check is not None:
        diff = check_dir(exported, args.check)
        if diff:
            out.write(diff)
            print(f"{args.check} differs from what the job files export (diff above)", file=err)
            status = EXIT_BAD
        else:
            print(f"{args.check} is what the job files export", file=err)
    elif args.output is None or str(args.output) == "-":
        out.write(stream(exported))
    else:
        written, removed = write_dir(exported, Path(args.output))
        print(
            f"{args.output}: {plural(len(written), 'file')} written, {len(removed)} removed, "
            f"{len(exported.files) - len(written)} unchanged",
            file=err,
        )
    return status
