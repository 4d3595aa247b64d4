"""``catneuron submit``: run any catneuron job on a Ray cluster through Ray's job API.

Examples::

    catneuron submit train --config demo --data.path=$PWD/runs/demo/data \
        --run-dir=$PWD/runs/demo/cluster       # the local cluster (127.0.0.1:8265)
    catneuron submit --address http://head:8265 --no-wait ingest urls.txt --out s3://b/data
    catneuron submit --no-pip train --config le2012 --data.path=s3://b/data \
        --run-dir=s3://b/runs/le2012           # the image has the deps

The job runs ``python -m jobs.JOB ARGS`` on the cluster with this source tree as its working
directory and the project's runtime requirements installed by Ray (``--no-pip`` when the
cluster's image already has them). Prints the job id, then follows the logs until the job ends
(``--no-wait``: returns at once); exits 0 when the job SUCCEEDED, 1 when it FAILED or was
STOPPED, 2 on usage errors or when no cluster answers. Ctrl-C while following leaves the job
running (``catneuron jobs stop ID`` stops it).

Before anything is uploaded, every object-store URI among the job's arguments is checked from
this machine (:func:`pipeline.storage.check_location`): no ``..`` in it, its bucket exists, and
the bucket of an output (``--out``, ``--run-dir``, ``--train.run_dir``, ``--run``) takes writes.
An output given as a relative local path (or left at a default that is one: demo's ``--out``,
a train config's ``train.run_dir``) is refused: the job would write it into Ray's copy of the
source tree, deleted with it.
``--no-storage-check`` leaves that to the job, for a cluster that reaches storage this machine
cannot (the job makes the same checks before its own work).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys

from jobs.errors import ArgumentParser, UserError, command, user_errors

JOBS = ("ingest", "train", "visualize", "evaluate", "demo", "plan")
OUTPUT_OPTIONS = ("--out", "--run-dir", "--train.run_dir", "--run")
"""Options whose location a job writes into (ingest, train, evaluate)."""


def add_address(p: argparse.ArgumentParser) -> None:
    """The ``--address`` option of ``catneuron submit`` and ``catneuron jobs``."""
    p.add_argument("--address", help="the Ray dashboard, http://HOST:8265 (default: $RAY_ADDRESS, "
                                     "else http://127.0.0.1:8265)")


def submission_id(text: str) -> str:
    """An ``argparse`` type for ``--submission-id``: :data:`cluster.submission.JOB_ID` (an id
    Ray's job API can look up again), not empty (Ray would silently make one up)."""
    from cluster.submission import JOB_ID

    if not JOB_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an id Ray can look up again: use 1 to 128 letters, digits and "
            ". _ - : (not starting with . - or :)")
    return text


def job_id_arg(text: str) -> str:
    """An ``argparse`` type for the ID of ``catneuron jobs``: not blank, and nothing Ray's job
    API cannot look up (:data:`cluster.submission.UNADDRESSABLE`): an empty id would ask Ray
    for its list of jobs and a ``#`` cut the id short."""
    from cluster.submission import UNADDRESSABLE

    if not text.strip():
        raise argparse.ArgumentTypeError("an empty job id: give one that 'catneuron jobs list' "
                                         "shows")
    bad = UNADDRESSABLE.search(text)
    if bad:
        raise argparse.ArgumentTypeError(
            f"{text!r}: Ray's job API cannot look up an id holding {bad.group()!r}")
    return text


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="catneuron submit",
        description="Submit a catneuron job (" + ", ".join(JOBS) + ") to a Ray cluster.")
    add_address(p)
    p.add_argument("--no-wait", action="store_true", help="print the job id and return")
    p.add_argument("--no-pip", action="store_true",
                   help="do not install the runtime requirements (the cluster's image has them)")
    p.add_argument("--submission-id", type=submission_id,
                   help="the job's id: letters, digits and . _ - : (default: one Ray makes up)")
    p.add_argument("--no-storage-check", action="store_true",
                   help="do not check the job's s3:// locations from this machine (the cluster "
                        "reaches storage this machine cannot)")
    p.add_argument("job", metavar="JOB", nargs="?", help="one of: " + ", ".join(JOBS))
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="the job's own options")
    return p


@command("catneuron submit")
def main(argv: list[str] | None = None) -> int:
    """Submit; 0/1 = the job's outcome, 2 = usage error or no cluster (:mod:`jobs.errors`)."""
    from cluster.submission import connect, entrypoint, runtime_env, server_error

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.job is None:
        parser.error("name the JOB to submit: one of " + ", ".join(JOBS))
    misplaced = own_options(parser) & {a.split("=", 1)[0] for a in args.args}
    if misplaced:
        parser.error(f"{', '.join(sorted(misplaced))} is an option of submit itself: put it "
                     f"before JOB (catneuron submit {sorted(misplaced)[0]} ... {args.job} ...)")
    if args.job not in JOBS or importlib.util.find_spec(f"jobs.{args.job}") is None:
        raise UserError(f"unknown job {args.job!r}; jobs: {', '.join(JOBS)}")
    lost = relative_location(args.job, args.args)
    if lost:
        raise UserError(
            f"{lost} is a relative path: the job runs in Ray's temporary copy of this source "
            "tree, where it names a folder of that copy (an output lost with it, a dataset "
            "never there); give an absolute path that every node sees, or an s3:// URI")
    try:
        if not args.no_storage_check:
            check_storage_arguments(args.args)
    except ValueError as exc:
        raise UserError(f"{exc} (checked from this machine before submitting; "
                        "--no-storage-check leaves it to the job)") from None
    with user_errors(ValueError, FileNotFoundError):
        env = runtime_env(pip=not args.no_pip)
        client = connect(args.address)  # ClusterUnreachable: a user error (jobs.errors)
        try:
            job_id = client.submit_job(entrypoint=entrypoint(args.job, args.args),
                                       runtime_env=env, submission_id=args.submission_id)
        except RuntimeError as exc:  # the job server refused the submission
            raise UserError(f"the cluster refused the job: {server_error(str(exc))}") from None
    print(job_id, flush=True)
    if args.no_wait:
        return 0
    return follow(client, job_id, "catneuron submit")


def own_options(parser: ArgumentParser) -> set[str]:
    """The option strings of ``catneuron submit`` itself (no job takes them): after JOB they
    would silently go to the job instead."""
    return {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}


def storage_arguments(args: list[str]) -> list[tuple[str, bool]]:
    """``(uri, written)`` for every object-store URI among a job's arguments, as ``--opt URI``,
    ``--opt=URI`` or ``--section.key="URI"`` (TOML-quoted); ``written`` for the values of
    :data:`OUTPUT_OPTIONS`."""
    from pipeline.storage import OBJECT_STORES

    found = []
    for i, arg in enumerate(args):
        option, value = "", arg
        if arg.startswith("--") and "=" in arg:
            option, value = arg.split("=", 1)
        elif i and args[i - 1].startswith("--"):
            option = args[i - 1]
        value = value.strip().strip("\"'")
        if "://" in value and value.split("://", 1)[0] in OBJECT_STORES:
            found.append((value, option in OUTPUT_OPTIONS))
    return found


def _is_relative_path(value: str) -> bool:
    return "://" not in value and not os.path.isabs(value)  # '~' too: no shell expands it


def relative_location(job: str, args: list[str]) -> str | None:
    """``OPTION VALUE`` of a folder the job would write (or a train job read) given as a
    relative local path (one of :data:`OUTPUT_OPTIONS`, demo's default ``--out runs/demo``, or
    the run folder of the train config it names, ``runs/demo/train`` for the shipped demo),
    else None. A job runs in Ray's copy of the source tree, so such a folder would land in that
    copy and be lost with it; the same holds for the dataset a train job reads
    (``data.path``), which that copy does not hold. A train job whose arguments do not resolve
    is left alone: it reports them itself."""
    for i, arg in enumerate(args):
        option, sep, value = arg.partition("=")
        if option not in OUTPUT_OPTIONS:
            continue
        if not sep:
            value = args[i + 1] if i + 1 < len(args) else ""
        value = value.strip().strip("\"'")  # --train.run_dir="runs/x": a TOML string
        if value and _is_relative_path(value):
            return f"{option} {value}"
    if {"-h", "--help"} & set(args):
        return None
    if job == "demo" and not any(a.partition("=")[0] == "--out" for a in args):
        return "demo's default --out runs/demo"
    if job == "train":
        from jobs import train

        try:
            with contextlib.redirect_stderr(io.StringIO()):
                config, parsed = train.resolve(list(args))
        except Exception:  # a bad option or config: the job reports it, as it did
            return None
        if parsed.resume:  # the run's own config.toml, read on the cluster
            return None
        if _is_relative_path(config.train.run_dir):
            return f"the config's train.run_dir {config.train.run_dir} (--run-dir sets it)"
        if _is_relative_path(config.data.path):  # Ray's copy leaves runs/ out
            return f"the config's data.path {config.data.path} (--data.path sets it)"
    return None


def check_storage_arguments(args: list[str]) -> None:
    """:func:`pipeline.storage.check_location` of every object-store URI in ``args``."""
    from pipeline import storage

    for location, written in storage_arguments(args):
        storage.check_location(location, write=written)


def unknown_job(job_id: str) -> UserError:
    """The error of a job id the cluster does not know (exit status 1)."""
    return UserError(f"no job {job_id!r} on this cluster ('catneuron jobs list')", status=1)


def follow(client, job_id: str, prog: str) -> int:
    """Stream a job's logs to stdout until it ends; 0 if it SUCCEEDED, 1 if not, 130 on Ctrl-C
    (the job keeps running)."""
    import aiohttp

    from cluster.submission import brief_message, follow_logs, wait_terminal

    try:
        follow_logs(client, job_id, lambda text: print(text, end="", flush=True))
        status = wait_terminal(client, job_id)
    except KeyboardInterrupt:
        print(f"\n{prog}: stopped following; job {job_id} keeps running "
              f"(catneuron jobs stop {job_id})", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, aiohttp.ClientError) as exc:
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 404:
            raise unknown_job(job_id) from None  # the log stream of a job the server lacks
        print(f"{prog}: lost the job's logs ({str(exc)[:300]}); follow it with "
              f"'catneuron jobs logs {job_id} --follow'", file=sys.stderr)
        return 1
    info = client.get_job_info(job_id)
    # the first sentence: Ray appends the whole log to a failure's message, streamed above
    detail = f": {brief_message(info.message)}" if status != "SUCCEEDED" and info.message else ""
    print(f"{prog}: job {job_id} {status}{detail}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
