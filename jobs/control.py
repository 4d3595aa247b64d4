"""``catneuron jobs``: list, inspect, follow and stop jobs on a Ray cluster.

Examples::

    catneuron jobs list
    catneuron jobs status raysubmit_abc123
    catneuron jobs logs raysubmit_abc123 --follow
    catneuron jobs stop raysubmit_abc123 --address http://head:8265

Every command takes ``--address`` (default: ``$RAY_ADDRESS``, else http://127.0.0.1:8265).
Exit status: 0 on success (``status``: the job SUCCEEDED or is still running; 1 if it FAILED or
was STOPPED), 1 for an unknown job id, 2 on usage errors or when no cluster answers.
"""

from __future__ import annotations

import sys

from jobs.errors import ArgumentParser, UserError, command, user_errors
from jobs.submit import add_address, job_id_arg, unknown_job

PROG = "catneuron jobs"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Watch and control catneuron jobs on a Ray "
                                              "cluster.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    address = ArgumentParser(add_help=False)
    add_address(address)
    sub.add_parser("list", parents=[address], help="every job the cluster knows, newest last")
    for name, text in (("status", "a job's status and details; exit 1 when it FAILED or was "
                                  "STOPPED, so a script can test it"),
                       ("stop", "stop a running job")):
        sub.add_parser(name, parents=[address], help=text).add_argument("id", metavar="ID",
                                                                        type=job_id_arg)
    logs = sub.add_parser("logs", parents=[address], help="a job's logs")
    logs.add_argument("id", metavar="ID", type=job_id_arg)
    logs.add_argument("--follow", "-f", action="store_true", help="keep streaming until it ends")
    return p


def _list(client, args) -> int:
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
    print(f"{'id':<32} {'status':<10} entrypoint")
    for job in jobs:
        print(f"{job.submission_id or job.job_id:<32} {job.status.value:<10} {job.entrypoint}")
    return 0


def _status(client, args) -> int:
    from cluster.submission import describe

    info = client.get_job_info(args.id)
    print("\n".join(describe(info)))
    return 1 if info.status.value in ("FAILED", "STOPPED") else 0


def _logs(client, args) -> int:
    if args.follow:
        from jobs.submit import follow

        client.get_job_info(args.id)  # an unknown id: "no job" (the log stream gives a 404)
        return follow(client, args.id, PROG)
    print(client.get_job_logs(args.id), end="")
    return 0


def _stop(client, args) -> int:
    from cluster.submission import wait_terminal

    if not client.stop_job(args.id):
        status = client.get_job_status(args.id).value
        print(f"{PROG}: job {args.id} is not running ({status})", file=sys.stderr)
        return 0
    status = wait_terminal(client, args.id, poll_s=0.5, timeout_s=60)
    print(f"job {args.id} {status}")
    return 0


COMMANDS = {"list": _list, "status": _status, "logs": _logs, "stop": _stop}


@command(PROG)
def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (module docstring, :mod:`jobs.errors`)."""
    from cluster.submission import connect, server_error

    args = build_parser().parse_args(argv)
    with user_errors(ValueError):
        client = connect(args.address)  # ClusterUnreachable: a user error (jobs.errors)
    try:
        return COMMANDS[args.command](client, args)
    except RuntimeError as exc:  # Ray's client: unknown job id, or the server failed
        text = str(exc)
        if "does not exist" in text or "404" in text:
            raise unknown_job(args.id) from None
        raise UserError(server_error(text), status=1) from None
    except TimeoutError as exc:
        raise UserError(str(exc), status=1) from None


if __name__ == "__main__":
    sys.exit(main())
