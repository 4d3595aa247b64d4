"""The ``catneuron`` command line: one subcommand per job module.

Each subcommand lives in ``jobs/<name>.py`` (or the package ``jobs/<name>/``) and exposes
``main(argv: list[str] | None) -> int``, so ``catneuron train ...`` and ``python -m jobs.train
...`` (what ``ray job submit`` runs on a cluster) are the same code. Every ``main`` reports
errors through :mod:`jobs.errors` (one line; exit 2 for a usage error, 1 for a failed job, 130
on Ctrl-C). Modules are imported lazily so ``catneuron --help`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys

from jobs.errors import UserError, command

# name -> one-line help. A name appears here once its module exists.
SUBCOMMANDS: dict[str, str] = {
    "demo": "run the whole experiment on the embedded corpus, no network",
    "ingest": "decode videos (files, folders, URL lists, yt-dlp URLs) into Parquet shards",
    "train": "train the stacked RBM with parameter-server workers on Ray",
    "visualize": "render the neuron gallery for a trained run",
    "gallery": "rebuild a run's gallery from its files alone (no scan, no retraining)",
    "evaluate": "measure neuron selectivity on a labelled probe set",
    "submit": "submit a job to a Ray cluster",
    "jobs": "list, watch and stop jobs on a Ray cluster",
    "plan": "size a config on N nodes: parameters, memory, FLOPs, bytes per step",
}


# subcommands whose module is not jobs/<name>.py (``jobs.jobs`` would read as the package)
MODULES: dict[str, str] = {"jobs": "jobs.control"}


def _module(name: str) -> str:
    return MODULES.get(name, f"jobs.{name}")


def _available() -> dict[str, str]:
    """Subcommands whose module is importable in this checkout."""
    found = {}
    for name, text in SUBCOMMANDS.items():
        if importlib.util.find_spec(_module(name)) is not None:
            found[name] = text
    return found


def _usage(available: dict[str, str]) -> str:
    lines = ["usage: catneuron <command> [options]", "", "commands:"]
    width = max((len(n) for n in available), default=0)
    lines += [f"  {name:<{width}}  {text}" for name, text in available.items()]
    lines += ["", "Run 'catneuron <command> --help' for a command's options."]
    return "\n".join(lines)


@command("catneuron")
def main(argv: list[str] | None = None) -> int:
    """Dispatch to ``jobs.<name>.main``; its exit status (:mod:`jobs.errors`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    available = _available()
    if not argv:  # a usage error: the usage goes where errors go, as argparse's does
        print(_usage(available), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(_usage(available))
        return 0
    if argv[0] == "--version":
        from importlib.metadata import version

        print(f"catneuron {version('catneuron')}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown command {name!r}; {hint}commands: {', '.join(available)} "
                        "(catneuron --help)")
    module = importlib.import_module(_module(name))
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
