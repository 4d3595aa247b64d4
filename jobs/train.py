"""``catneuron train``: greedy layer-wise training of the RBM stack on Ray parameter servers.

Examples::

    catneuron train --config configs/demo.toml
    catneuron train --config configs/demo.toml --workers 4 --ps-shards 2 --mode sync
    catneuron train --config configs/demo.toml --train.steps=50 --update.learning_rate=0.002
    catneuron train --run-dir runs/demo/train --resume       # same command after a crash

Any config field can be overridden as ``--section.key=value`` (values are TOML:
``--model.stages[0].n_maps=4``, ``--data.path="runs/x/data"``). The config is validated before
Ray starts; unknown keys, wrong types and impossible geometry exit with status 2 and a message
naming the field. On a cluster: ``ray job submit -- python -m jobs.train --config ...``.
"""

from __future__ import annotations

import argparse
import json
import sys

SHORTCUTS = {"workers": "train.n_workers", "ps_shards": "train.n_ps_shards",
             "mode": "train.mode", "run_dir": "train.run_dir", "steps": "train.steps"}


def build_parser() -> argparse.ArgumentParser:
    """The train job's options (overrides are the unknown ``--section.key=value`` args)."""
    p = argparse.ArgumentParser(
        prog="catneuron train",
        description="Train the stacked RBM with parameter-server workers on Ray (local "
                    "simulation or a Ray cluster). Extra --section.key=value args override "
                    "any config field.")
    p.add_argument("--config", help="TOML config (default: RUN_DIR/config.toml with --resume, "
                                     "else the built-in demo defaults)")
    p.add_argument("--workers", type=int, help="worker replicas (train.n_workers)")
    p.add_argument("--ps-shards", type=int, help="parameter-server shards (train.n_ps_shards)")
    p.add_argument("--mode", choices=("async", "sync"), help="Downpour async or reproducible sync")
    p.add_argument("--steps", type=int, help="steps per stage (train.steps)")
    p.add_argument("--run-dir", help="run folder (train.run_dir): a path, or a URI such as "
                                     "s3://bucket/runs/x that every node reaches")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no event lines on stdout")
    return p


def resolve(argv: list[str] | None):
    """Parse arguments into (JobConfig, args); raises ConfigError / FileNotFoundError."""
    from jobs.config import load

    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        parser.error(f"unrecognised arguments {bad}; config overrides are --section.key=value")
    overrides = list(rest)
    for name, key in SHORTCUTS.items():
        value = getattr(args, name)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    config_path = args.config
    if config_path is None and args.resume and args.run_dir:
        from pipeline import storage

        candidate = storage.join(args.run_dir, "config.toml")
        if storage.exists(candidate):
            config_path = candidate
    return load(config_path, overrides), args


def main(argv: list[str] | None = None) -> int:
    """Run the job; 0 on success, 2 on a bad config, 1 on a training failure."""
    from jobs.config import ConfigError, dumps

    try:
        config, args = resolve(argv)
        from cluster.trainer import check_data

        check_data(config)  # dataset present, enough shards, frame size = model input
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"catneuron train: {exc}", file=sys.stderr)
        return 2
    from cluster.trainer import Trainer

    trainer = Trainer(config, dumps(config), resume=args.resume,
                      echo=None if args.quiet else print)
    try:
        summary = trainer.train()
    except FileExistsError as exc:
        print(f"catneuron train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
