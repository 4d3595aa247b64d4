"""``catneuron train``: greedy layer-wise training of the RBM stack on Ray parameter servers.

Examples::

    catneuron train --config demo
    catneuron train --config demo --workers 4 --ps-shards 2 --mode sync
    catneuron train --config demo --train.steps=50 --update.learning_rate=0.002
    catneuron train --run-dir runs/demo/train --resume       # same command after a crash

Any config field can be overridden as ``--section.key=value`` (values are TOML:
``--model.stages[0].n_maps=4``, ``--data.path="runs/x/data"``). A shortcut flag (``--workers``)
and its field (``--train.n_workers=``) given with different values is an error. The config and
the dataset are validated before Ray starts (``jobs.preflight``); every problem exits with status
2 and one line naming the fix. ``--resume`` continues a run with its own ``RUN/config.toml``
(``jobs.resume``: only fields that leave its checkpoints valid may change). Ctrl-C exits 130 with
the command that continues the run. On a cluster: ``ray job submit -- python -m jobs.train ...``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import textwrap
from argparse import RawDescriptionHelpFormatter

from cluster.runlog import read_metrics, refuse_existing_run
from jobs.errors import ArgumentParser, Interrupted, command, location, user_errors
from jobs.resume import SAFE_ON_RESUME
from pipeline import storage

SHORTCUTS = {"workers": "train.n_workers", "ps_shards": "train.n_ps_shards",
             "mode": "train.mode", "run_dir": "train.run_dir", "steps": "train.steps"}

EPILOG = "\n\n".join(textwrap.fill(t, 92) for t in (
    "precedence: library defaults < --config FILE (default: the shipped demo) < "
    "--section.key=value and the shortcut "
    "flags (--workers, --ps-shards, --mode, --steps, --run-dir). A shortcut and its own field "
    "given with different values (--workers 3 --train.n_workers=2) is an error (exit 2).",
    "--resume: continues RUN (--run-dir, required) with RUN/config.toml, the run's own "
    "resolved config; --config is refused. Only these may change on resume: "
    f"{', '.join(SAFE_ON_RESUME)} (and --steps). Any other change, or a RUN that holds no run, "
    "exits 2 before anything is written.",
    "Ctrl-C: exits 130 with the command that continues the run; the last checkpoint is intact. "
    "A run that diverges, or that waits longer than train.placement_timeout_s for an actor Ray "
    "cannot place (a lost node), exits 1 with one line naming the stage, the step and the fix.",
    "Ray: a local run starts its own Ray, listening on 127.0.0.1 only; --ray-address or "
    "RAY_ADDRESS joins a cluster (one that does not answer fails in seconds).",
))


def build_parser() -> ArgumentParser:
    """The train job's options (overrides are the unknown ``--section.key=value`` args)."""
    p = ArgumentParser(
        prog="catneuron train", epilog=EPILOG, formatter_class=RawDescriptionHelpFormatter,
        description="Train the stacked RBM with parameter-server workers on Ray (local "
                    "simulation or a Ray cluster). Extra --section.key=value args override "
                    "any config field.")
    p.add_argument("--config", type=location,
                   help="TOML config, or a shipped one by name: demo, le2012 "
                        "(default: demo; not with --resume, which uses RUN_DIR/config.toml)")
    p.add_argument("--workers", type=int, help="worker replicas (train.n_workers)")
    p.add_argument("--ps-shards", type=int, help="parameter-server shards (train.n_ps_shards)")
    p.add_argument("--mode", choices=("async", "sync"), help="Downpour async or reproducible sync")
    p.add_argument("--steps", type=int, help="steps per stage (train.steps)")
    p.add_argument("--run-dir", type=location,
                   help="run folder (train.run_dir): a path, or a URI such as "
                        "s3://bucket/runs/x that every node reaches")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint, with its own "
                        "config")
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS, else a "
                                         "local Ray of this process on 127.0.0.1)")
    p.add_argument("--quiet", action="store_true", help="no event lines on stdout")
    return p


def _overrides(parser: ArgumentParser, args, rest: list[str]) -> list[str]:
    """``--section.key=value`` args plus the shortcut flags as overrides; ConfigError when a
    shortcut and its own field are both given with different values."""
    from jobs.config import shortcut_overrides

    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        parser.error(f"unrecognised arguments {bad}; config overrides are --section.key=value")
    return shortcut_overrides(SHORTCUTS, vars(args), rest)


def resolve(argv: list[str] | None):
    """Parse arguments into (JobConfig, args); raises ConfigError / FileNotFoundError."""
    from jobs.config import ConfigError, load
    from jobs.resume import load_run_config

    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = _overrides(parser, args, rest)
    if not args.resume:
        return load(args.config or "demo", overrides), args
    if args.run_dir is None:
        raise ConfigError("--resume needs --run-dir RUN: the run folder to continue")
    if args.config is not None:
        raise ConfigError(f"--resume continues {args.run_dir} with its own config "
                          f"({storage.join(args.run_dir, 'config.toml')}): drop --config")
    return load_run_config(args.run_dir, overrides), args


def where_interrupted(run_dir: str, n_stages: int | None = None) -> tuple[int, int]:
    """(stage, step) the run was at: the last metrics record's, unless ``events.log`` says its
    stage was done (``stage k done`` is logged once ``model.pt`` holds stage k): then stage
    k + 1 (if the run has ``n_stages`` > k + 1) was being set up, at step 0. (0, 0) when there
    is neither."""
    stage = step = 0
    for record in read_metrics(run_dir):
        try:
            stage, step = int(record["stage"]), int(record["step"])
        except (ValueError, TypeError):
            continue
    events = storage.join(run_dir, "events.log")
    text = storage.read_text(events) if storage.exists(events) else ""
    done = [int(k) for k in re.findall(r"\bstage (\d+) done: ", text)]
    if done and max(done) >= stage and (n_stages is None or max(done) + 1 < n_stages):
        stage, step = max(done) + 1, 0
    return stage, step


@command("catneuron train")
def main(argv: list[str] | None = None) -> int:
    """Run the job; 0 on success, 2 on a bad config or dataset, 1 when training fails (one
    line: it diverged, or an actor it needs could not be placed), 130 on Ctrl-C (the line names
    the command that continues the run). Errors reach the user through :mod:`jobs.errors`."""
    from jobs.config import dumps
    from jobs.preflight import preflight

    with user_errors(FileNotFoundError, FileExistsError, ValueError):
        config, args = resolve(argv)
        storage.check_location(config.train.run_dir)  # a store that answers, before a listing
        refuse_existing_run(config.train.run_dir, args.resume)  # before Ray starts
        preflight(config, args.ray_address or _env_address())
    run_dir = config.train.run_dir
    try:
        return _train(config, dumps(config), args)
    except KeyboardInterrupt:
        stage, step = where_interrupted(run_dir, config.n_stages)
        again = f"catneuron train --run-dir {shlex.quote(str(run_dir))} --resume"
        raise Interrupted(f"interrupted at stage {stage} step {step}; continue with "
                          f"`{again}`") from None


def _env_address() -> str | None:
    return os.environ.get("RAY_ADDRESS") or None


def _as_ctrl_c(signum, frame) -> None:
    """SIGTERM (``kill``, ``timeout``, a scheduler) stops the run as Ctrl-C does: the line
    that names the command continuing it, instead of Ray's stack dump."""
    raise KeyboardInterrupt


def _train(config, config_text: str, args) -> int:
    """Start (or join) Ray, train, print the summary. A run that fails (it diverged, or an actor
    it needs could not be placed) raises :class:`cluster.failures.TrainingFailed`, whose one
    line names the stage, the step and the setting to change (exit 1)."""
    from cluster.checkpoint import CheckpointError
    from cluster.trainer import Trainer
    from jobs.report import corpus_tops as ct
    from jobs.report.evaluation import TOP_FRAMES
    from pipeline import storage
    from pipeline.pool import ensure_ray

    ensure_ray(int(config.sim.num_cpus) or None, args.ray_address)  # RayUnreachable: exit 2
    signal.signal(signal.SIGTERM, _as_ctrl_c)  # after Ray's own handler: ours wins
    # the dropped steps' results freed after training ends, as the process exits, are not
    # logged either (cluster.trainer.dropped_results_unlogged says why)
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    trainer = Trainer(config, config_text, resume=args.resume,
                      echo=None if args.quiet else print, top_frames=(TOP_FRAMES, ct.MAX_UNITS))
    with user_errors(FileExistsError, CheckpointError):
        summary = trainer.train()
    tops = trainer.corpus_tops  # after model.pt: evaluate and visualize take it as current
    if tops is not None:
        storage.write_text(storage.join(trainer.run_dir, ct.FILE),
                           ct.to_json(tops.stage, tops.tops, tops.shards, tops.rows,
                                      trainer.model_sha256, kept=TOP_FRAMES))
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
