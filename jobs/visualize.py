"""``catneuron visualize --run RUN``: what the neurons of a trained run respond to.

Examples::

    catneuron visualize --run runs/demo/train
    catneuron visualize --run runs/demo/train --top-k 16 --units 32 --selective 8 --invariance 8

For every trained stage it writes ``RUN/visualize/stage{k}.json`` and PNGs (``jobs/RUN_FILES.md``).
Per stage the ``--selective`` most selective units (``RUN/evaluation.json`` when present, else by
activation variance) and ``--units`` more drawn at random are shown in detail: weights (stage 0) or
their linear projection to pixels (above), the top-k frames of the whole dataset with the exciting
patch marked (the top stage's from ``RUN/corpus_tops.json`` when ``catneuron train`` or
``catneuron evaluate`` wrote it for this model and dataset; the rest scanned, by Ray actors over
the shards when they pay; frames of one video at least ``--min-gap`` frames apart where the unit's
pool of 10 x ``--top-k`` allows: :mod:`jobs.report.distinct_frames`), the optimal stimulus (Le et
al. 2012, section 4.3, searched for stage 0 too: its pooled unit L2-pools several hidden fields and
is contrast-normalised, so it is no monotone function of one ``w . x`` whose optimum would be
``w / ||w||``) and, for the ``--invariance`` most selective, invariance curves. Stage 0 also lists
every other unit (index, map, position, selectivity; ``null`` pictures) and draws all of them in
its mosaic. Plus the training curves and ``RUN/visualize/index.json``. The folder is rebuilt beside
the old one and swapped in at the end, so a re-run replaces it cleanly. Finally the gallery is
built (``jobs.gallery``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from jobs.errors import ArgumentParser, UserError, command, location, user_errors
from jobs.report.distinct_frames import CANDIDATES, DEFAULT_GAP
from pipeline.storage import is_uri


class UsageError(UserError):
    """A problem the user fixes (exit status 2, one line)."""


def build_parser() -> ArgumentParser:
    """The visualize job's options."""
    p = ArgumentParser(prog="catneuron visualize",
                                description="Render what the units of a trained run respond to "
                                            "into RUN/visualize/ (PNGs and JSON).")
    p.add_argument("--run", type=location, required=True,
                   help="run folder written by 'catneuron train' (a local folder: the pictures "
                        "are written into it; copy an s3:// run down first)")
    p.add_argument("--top-k", type=int, default=9, help="top frames per unit (default 9)")
    p.add_argument("--min-gap", type=int, default=DEFAULT_GAP, metavar="FRAMES",
                   help="a unit's top frames of one video at least this many frames apart, "
                        f"picked from its top {CANDIDATES} x --top-k (0: the plain top-k; "
                        f"default {DEFAULT_GAP})")
    p.add_argument("--units", type=int, default=4,
                   help="units per stage drawn at random for detail, besides the most "
                        "selective (default 4)")
    p.add_argument("--selective", type=int, default=8,
                   help="most selective units per stage shown in detail (default 8)")
    p.add_argument("--invariance", type=int, default=3,
                   help="most selective units per stage with invariance curves, over their "
                        "first 4 top frames (default 3)")
    p.add_argument("--starts", type=int, default=2,
                   help="optimal stimulus: random starts (default 2)")
    p.add_argument("--steps", type=int, default=20,
                   help="optimal stimulus: ascent steps (default 20)")
    p.add_argument("--actors", type=int, default=0, help="top-k actors (0: one per Ray CPU)")
    p.add_argument("--sample-frames", type=int, default=512,
                   help="frames for the activation variance when there is no evaluation.json "
                        "(default 512)")
    p.add_argument("--data", type=location,
                   help="dataset folder (default: data.path of RUN/config.toml)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the random sample of units and the random starts, from 0 to "
                        "2**32 - 1 (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


#: The least value of each numeric flag (``--actors 0``: one per Ray CPU; ``--steps 0``: the
#: random starts as they are; ``--units``, ``--selective``, ``--invariance`` 0: none).
MINIMUM = {"--top-k": 1, "--min-gap": 0, "--units": 0, "--selective": 0, "--invariance": 0,
           "--starts": 1, "--steps": 0, "--actors": 0, "--sample-frames": 1, "--seed": 0}


#: ``--seed`` is below this, as in ``catneuron train`` and ``evaluate``: ``seed + stage`` seeds
#: a torch generator, which takes no more than 64 bits.
SEED_LIMIT = 2**32


def check_counts(args) -> None:
    """Every numeric flag is at least its :data:`MINIMUM`, and ``--seed`` below
    :data:`SEED_LIMIT`, refused before the model is read (a negative count, or a seed too large
    for a torch generator, would fail deep in the job, minutes in)."""
    for flag, least in MINIMUM.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < least:
            raise UsageError(f"{flag} {value}: must be >= {least}")
    if args.seed >= SEED_LIMIT:
        raise UsageError(f"--seed {args.seed}: must be from 0 to 2**32 - 1")


def check_run(given: str) -> None:
    """The run is a local folder holding its model."""
    run = Path(given)
    if is_uri(given):
        raise UsageError(f"--run {given}: visualize writes into the run folder, so it takes a "
                         "local one; copy the run down first")
    if not run.is_dir():
        raise UsageError(f"run folder {run} not found; pass --run RUN_DIR of a "
                         "'catneuron train' run")
    if not (run / "model.pt").is_file():
        raise UsageError(f"{run / 'model.pt'} not found; train first ('catneuron train "
                         f"--run-dir {run}') and wait for stage 0 to finish")


#: What ``catneuron visualize`` writes into ``RUN/visualize/`` (``jobs/RUN_FILES.md``), which
#: a run replaces whole.
OWN_FILES = re.compile(r"index\.json|stage\d+\.json|curves/\w+\.png|stage\d+/\w+\.png")
OWN_FOLDERS = re.compile(r"stage\d+|curves")


def check_replaceable(run: Path) -> None:
    """Refuse, in one line naming the file, to replace a ``RUN/visualize/`` that holds anything
    visualize did not write: the new one replaces it whole."""
    from jobs.gallery.build import foreign_file  # torch and matplotlib: after the cheap checks

    folder = run / "visualize"
    path = foreign_file(folder, OWN_FILES, OWN_FOLDERS)
    if path == folder:
        raise UsageError(f"{folder} is not a folder visualize wrote; move it away and run again")
    if path is not None:
        raise UsageError(f"{path} was not written by catneuron visualize, which replaces "
                         f"{folder} whole; move it out and run again")


def dataset_root(run: Path, override: str | None) -> Path:
    """``--data``, else ``data.path`` of ``RUN/config.toml``; must hold a dataset manifest."""
    if override:
        root = Path(override)
    else:
        from jobs.config import load

        try:
            root = Path(load(run / "config.toml").data.path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{run / 'config.toml'} has no readable data.path ({exc}); "
                             "pass --data DATASET_DIR") from None
    if not (root / "_manifest.json").is_file():
        raise UsageError(f"dataset {root} not found (no _manifest.json); pass --data "
                         "DATASET_DIR or re-run 'catneuron ingest'")
    return root


@command("catneuron visualize")
def main(argv: list[str] | None = None) -> int:
    """Run the job; 0 on success, 2 on a usage error (:mod:`jobs.errors`)."""
    args = build_parser().parse_args(argv)
    with user_errors(FileNotFoundError, ValueError):
        check_counts(args)
        check_run(args.run)
        run = Path(args.run)
        root = dataset_root(run, args.data)
        check_replaceable(run)  # before the model is read: a refusal costs nothing
        from jobs.report.visualization import Options, Visualization

        vis = Visualization(run, root, Options.from_args(args))
    index = vis.write()
    print(f"catneuron visualize: {index}")
    print("catneuron visualize: time: " + ", ".join(f"{k} {v:.1f} s"
                                                    for k, v in vis.timings.items()))
    from jobs.gallery import build_gallery

    print(f"catneuron visualize: gallery {build_gallery(run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
