"""``catneuron evaluate``: is there a face neuron? Score every unit of a trained run on a probe.

Examples::

    catneuron evaluate --run runs/demo/train                     # built-in probe, class "faces"
    catneuron evaluate --run runs/demo/train --part tune         # its tuning part (faces 50-74)
    catneuron evaluate --run runs/demo/train --choose-on tune    # chosen on 50-74, scored on 75-99
    catneuron evaluate --run runs/demo/train --probe probes/cats --positive cats
    catneuron evaluate --run s3://bucket/runs/demo                # a run in an object store

The run (and the dataset its config names) may be a local folder or a URI such as
``s3://bucket/prefix``: both are read, and the result written, through :mod:`pipeline.storage`,
so evaluating needs no folder shared with the training nodes. Writes ``RUN/evaluation.json``
(the layout is fixed by the contract shared with ``catneuron visualize`` and the gallery) and
prints the top stage's best unit against every baseline, then the verdict (is there a face
unit?), with a warning when image statistics alone separate the probe's classes.
Errors (no trained run, unreadable probe, unknown class) are one line with exit status 2.
"""

from __future__ import annotations

import json
import os
import sys

from jobs.errors import ArgumentParser, UserError, command, location
from pipeline import storage


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="catneuron evaluate",
        description="Measure how well single units of a trained run detect a class: Le et "
                    "al.'s 20-threshold protocol and a held-out protocol, against baselines.")
    p.add_argument("--run", type=location, required=True,
                   help="run folder written by catneuron train (a path or a URI such as "
                        "s3://bucket/runs/x)")
    p.add_argument("--probe", type=location, help="folder with one subfolder of images per class "
                                   "[default: the built-in matched-twin probe: faces, "
                                   "non_faces (their twins), backgrounds]")
    p.add_argument("--positive", help="class whose detector is sought [default: faces]")
    p.add_argument("--part", choices=("report", "tune", "all"),
                   help="probe part scored: settings are chosen on 'tune' (built-in probe: "
                        "faces 50-74 and their twins), results reported on 'report' (75-99) "
                        "[report]; a folder probe is all 'report'")
    p.add_argument("--choose-on", choices=("tune",),
                   help="choose each unit, polarity and threshold on this part of the built-in "
                        "probe and score them on the rest (one fixed split of other identities) "
                        "instead of --splits random halves of --part")
    p.add_argument("--filters", type=int, default=1000,
                   help="linear filters drawn from training frames for that baseline [1000]")
    p.add_argument("--splits", type=int, default=20, help="held-out random splits [20]")
    p.add_argument("--seed", type=int, default=0, help="seeds the splits and the filters [0]")
    p.add_argument("--baseline-draws", type=int, default=None, metavar="N",
                   help="draws of each exemplar network, its figure the mean over them and a "
                        "unit's lead over it more than their spread [5]")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--baseline-cache", metavar="DIR",
                       help="folder of baseline tables reused by runs of the same model config, "
                            "data, probe and settings [$XDG_CACHE_HOME/catneuron/baselines]")
    cache.add_argument("--no-baseline-cache", action="store_true",
                       help="compute the baselines, reading and writing no cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


class UsageError(UserError):
    """A one-line error for the user (exit status 2, :mod:`jobs.errors`)."""


def load_run(run: str | os.PathLike):
    """(JobConfig, trained stack) of a finished run folder (a path or a URI:
    :mod:`pipeline.storage`); one whose stages are not all trained is refused."""
    return read_run(run, *check_run_files(run))


def read_run(run: str | os.PathLike, model_path: str, config_path: str):
    """:func:`load_run` from the files :func:`check_run_files` found in ``run``."""
    from cluster.state_io import read_trained_stack
    from jobs.config import ConfigError, load
    try:
        cfg = load(config_path)
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"{config_path}: {exc}") from None
    try:
        stack, trained = read_trained_stack(model_path)  # torch.load(weights_only=True)
    except ValueError as exc:  # models.state_file.UnsafeStateFile: nothing in it ran
        raise UsageError(str(exc)) from None
    if cfg.model != stack.config:
        raise UsageError(f"{config_path} and {model_path} describe different models "
                         f"({', '.join(model_differences(cfg.model, stack.config))}): the run "
                         "folder's files come from different runs; put back the run's own "
                         "config.toml, or train again")
    if trained < stack.n_layers:
        raise UsageError(f"{run} has {trained} of {stack.n_layers} stages trained, and evaluate "
                         f"scores the top stage: finish it with 'catneuron train --resume' or "
                         f"evaluate a run trained with --train.stages={trained} and as many stages")
    return cfg, stack


def check_run_files(run: str | os.PathLike) -> tuple[str, str]:
    """``(model.pt, config.toml)`` of ``run``, or a one-line refusal when either is missing or
    the location is unusable. Needs neither torch nor the model: ``main`` calls it before the
    scoring's imports, so a mistyped ``--run`` is refused at once."""
    try:  # a URI with '..', a missing bucket, or one that would refuse evaluation.json
        storage.check_location(run, write=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model_path, config_path = storage.join(run, "model.pt"), storage.join(run, "config.toml")
    if not storage.exists(model_path) or not storage.exists(config_path):
        raise UsageError(f"{run} is not a finished run (needs model.pt and config.toml): "
                         "train one with 'catneuron train' first")
    return model_path, config_path


def model_differences(written, trained) -> list[str]:
    """The first few ``model.*`` fields whose values differ between two StackConfigs, each as
    ``model.field: a vs b``."""
    from jobs.resume import flat_fields

    a = flat_fields({"model": written.to_dict()})
    b = flat_fields({"model": trained.to_dict()})
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys[:3]]


def load_probe(args, cfg):
    """The probe through the dataset's own decode options (built-in when no --probe)."""
    from pipeline.decode import DecodeConfig
    from pipeline.probe import ProbeError, builtin_probe, load_probe_folder
    from pipeline.shards import read_manifest

    m = cfg.model
    decode = DecodeConfig(input_size=m.input_size, channels=m.channels)
    try:
        opts = read_manifest(cfg.data.path).get("options", {})
        decode = DecodeConfig(input_size=m.input_size, channels=m.channels,
                              interpolation=opts.get("interpolation", "box_linear"))
    except (OSError, ValueError):
        pass  # dataset gone: the stack's geometry still fixes size and channels
    if args.probe is None:
        return builtin_probe(decode)
    try:
        return load_probe_folder(args.probe, decode)
    except ProbeError as exc:
        raise UsageError(str(exc)) from None


def training_frames(cfg, limit: int = 20000):
    """Training frames (for the filter baselines and the corpus share), their demo-corpus
    kinds and appearances (``pipeline.demo_corpus.corpus_labels``; None when the videos have
    no corpus record), or (None, None, None) with a note if unreadable."""
    import pyarrow.parquet as pq

    from pipeline.demo_corpus import corpus_labels
    from pipeline.reader import list_shards, read_frames

    try:
        frames = read_frames(cfg.data.path, limit=limit)
    except (OSError, ValueError) as exc:
        print(f"note: no training frames ({exc}); the linear_filters, exemplar_filters and "
              "spread_exemplar_filters baselines are skipped", file=sys.stderr)
        return None, None, None
    sources, index = [], []
    try:
        for path in list_shards(cfg.data.path):
            fs, inner = storage.resolve(path)
            t = pq.read_table(inner, columns=["source", "frame_index"], filesystem=fs)
            sources += t.column("source").to_pylist()
            index += t.column("frame_index").to_pylist()
            if len(sources) >= len(frames):
                break
    except (OSError, ValueError, KeyError):
        return frames, None, None
    sources, index = sources[:len(frames)], index[:len(frames)]
    return (frames, *corpus_labels(sources, index, cfg.data.path))


def table(result: dict) -> str:
    """The top stage's best unit against every baseline, one line each."""
    rows = [("top stage best unit", result["best_neuron"])]
    rows += [(name, s) for name, s in result["baselines"].items()]
    rows += [(f"reference: {name}", s) for name, s in result["reference"].items() if s]
    rows += [(f"stage {e['stage']} {e['layer']}", e["best"]) for e in result["stages"]]
    head = f"{'units':30s} {'held-out BA':>14s} {'held-out AUC':>12s} {'BA (Le)':>8s} {'AUC':>6s}"
    lines = [head, "-" * len(head)]
    for name, s in rows:
        ba = f"{s['heldout_balanced_accuracy']:.3f}±{s['heldout_balanced_accuracy_std']:.3f}"
        lines.append(f"{name:30s} {ba:>14s} {s['heldout_auc']:12.3f} "
                     f"{s['balanced_accuracy']:8.3f} {s['auc']:6.3f}")
    r = result["linear_readout"]
    lines.append("linear read-out (5-fold BA): "
                 + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if v is not None))
    return "\n".join(lines)


def evaluate(args, files: tuple[str, str]) -> dict:
    """Load the run from ``files`` (:func:`check_run_files`), score, write
    ``RUN/evaluation.json``; returns the result."""
    import torch
    from tqdm import tqdm

    from jobs.report import corpus_tops as ct
    from jobs.report.baseline_cache import BaselineCache, default_folder
    from jobs.report.evaluation import EXEMPLAR_DRAWS, TOP_FRAMES, report
    from models.kernels.arithmetic import fingerprint

    if args.choose_on is not None and args.part not in (None, "all"):
        raise UsageError("--choose-on scores the probe's other parts: leave out --part")
    part = args.part or ("all" if args.choose_on else "report")
    cfg, stack = read_run(args.run, *files)
    probe = load_probe(args, cfg).part(part)
    if args.choose_on is not None and (probe.parts is None
                                       or not (probe.parts == args.choose_on).any()):
        raise UsageError(f"--choose-on {args.choose_on} needs a probe with that part (the "
                         "built-in probe)")
    positive = args.positive or "faces"
    if positive not in probe.classes:
        raise UsageError(f"class {positive!r} is not in the probe (classes: "
                         f"{', '.join(probe.classes)}): pass --positive CLASS")
    check_splittable(probe, positive)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    quiet = args.quiet or not sys.stderr.isatty()
    frames, kinds, appearances = training_frames(cfg)
    top, tops = stack.n_layers - 1, None
    dataset = dataset_rows(cfg.data.path)  # (shards, rows): the frames visualize would scan
    whole = frames is not None and dataset is not None and sum(dataset[1]) == len(frames)
    trained = None  # the training workers' ranking of the dataset (catneuron train)
    if whole and storage.is_local(args.run):
        trained = ct.read_rows(storage.local_path(args.run), *dataset, top, TOP_FRAMES)
    if frames is not None and (kinds is not None or whole):  # the corpus share, visualize
        tops = trained or ct.corpus_tops(stack, frames, top, TOP_FRAMES)
    cache = None if args.no_baseline_cache else BaselineCache(args.baseline_cache
                                                              or default_folder())
    try:
        result = report(stack, probe, positive, frames, frame_kinds=kinds,
                        frame_appearances=appearances, tops=tops,
                        n_filters=args.filters, part=part, choose_on=args.choose_on,
                        draws=args.baseline_draws or EXEMPLAR_DRAWS,  # main refuses 0
                        protocol={"n_splits": args.splits, "n_thresholds": 20,
                                  "seed": args.seed},
                        baseline_cache=cache,
                        progress=lambda it, **kw: tqdm(it, disable=quiet, **kw))
    except ValueError as exc:  # e.g. a class too small to split in two
        raise UsageError(f"cannot score this probe: {exc}") from None
    if cache is not None and cache.status == "read":
        print(f"baselines read from {cache.path} (--no-baseline-cache computes them)",
              file=sys.stderr)
    result["arithmetic"] = fingerprint()  # figures repeat bit for bit only where it is equal
    # atomic on a disk (temporary name, rename) and in an object store (whole upload)
    storage.write_text(storage.join(args.run, "evaluation.json"),
                       json.dumps(result, indent=1, allow_nan=False))
    if tops and whole and not trained:  # RUN/corpus_tops.json: visualize need not scan again
        model = ct.model_digest(storage.join(args.run, "model.pt"))
        storage.write_text(storage.join(args.run, ct.FILE),
                           ct.to_json(top, tops, *dataset, model))
    return result


def check_splittable(probe, positive: str) -> None:
    """Refuse, before any feature is computed, a probe that no held-out split can score: each
    half of a split needs the positive class and another, so each side needs two groups (images
    of one group stay on one side; without groups every image is its own)."""
    import numpy as np

    groups = probe.groups if probe.groups is not None else np.arange(len(probe.labels))
    pos = probe.labels == probe.classes.index(positive)
    for name, mask in ((f"class {positive!r}", pos), ("the other classes", ~pos)):
        if len(np.unique(groups[mask])) < 2:
            raise UsageError(f"cannot score this probe: fewer than 2 images (or groups) of "
                             f"{name}, and each half of a held-out split needs both sides")


def dataset_rows(data: str) -> tuple[list[str], list[int]] | None:
    """The dataset's shards and their frame counts (None if they cannot be read)."""
    from cluster.topk import shard_row_counts
    from pipeline.reader import list_shards

    try:
        shards = list_shards(data)
        return shards, shard_row_counts(shards)
    except (OSError, ValueError, KeyError):
        return None


@command("catneuron evaluate")
def main(argv: list[str] | None = None) -> int:
    """Score the run; 0 on success, 2 on a usage error (:mod:`jobs.errors`)."""
    args = build_parser().parse_args(argv)
    draws = 1 if args.baseline_draws is None else args.baseline_draws
    if min(args.filters, args.splits, draws) < 1:
        raise UsageError("--filters, --splits and --baseline-draws must be >= 1")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed {args.seed}: must be from 0 to 2**32 - 1")
    try:
        files = check_run_files(args.run)  # before evaluate's imports: a wrong --run is cheap
        result = evaluate(args, files)
    except OSError as exc:  # a store that cannot be reached or read (endpoint, credentials)
        raise UsageError(f"{exc}: check the run's location and, for an object store, the "
                         "AWS_* settings") from None
    print(table(result))
    if result["probe"]["confound_warning"]:
        print(f"warning: on this probe, image statistics alone score "
              f"{result['probe']['confound_balanced_accuracy']:.3f} balanced accuracy (above "
              f"{result['probe']['confound_limit']:.2f}): a unit's score may be theirs",
              file=sys.stderr)
    print(result["verdict"]["text"])
    print(f"wrote {storage.join(args.run, 'evaluation.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
