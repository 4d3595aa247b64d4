"""``catneuron ingest``: decode videos into a sharded Parquet frame dataset.

Examples::

    catneuron ingest --demo --out runs/demo/data
    catneuron ingest clips/ urls.txt https://example.org/v.mp4 --out data --every 5 --input-size 200
    catneuron ingest clips/ --out data --config le2012 --ingest.decode.every=5
    python -m jobs.ingest "ytsearch3:cat videos" --out data --max-frames 300 --grey

The settings are the ``[ingest]`` section of a job config (``[ingest.decode]``,
``[ingest.shards]``, ``[ingest.fetch]``, ``n_decoders``): library defaults < ``--config``
(``--demo`` reads the shipped demo's) < ``--ingest.key=value`` overrides and the shortcut flags
(``--input-size`` is ``--ingest.decode.input_size=``, ``--grey`` is
``--ingest.decode.channels=1``; a flag and its own key with different values is an
error). The resolved config is written beside the dataset, ``OUT/_config.toml``.

Exit status: 0 when the dataset has at least one frame, 1 when no source gave frames, 2 on usage
errors (bad options, an output folder made with other options or holding files catneuron did
not write, a manifest that lists a path outside its folder, a bucket that does not exist or
refuses writes, a ``..`` in a URI, an unreachable RAY_ADDRESS, a folder another ingest is
writing into), 130 on Ctrl-C (finished videos are committed; the same command continues).
Every error is one line, and every check on the output folder runs before anything is written
into it. A killed ingest (even before its first manifest) continues with the same command.
"""

from __future__ import annotations

import argparse
import math
import sys

from jobs.errors import ArgumentParser, Interrupted, UserError, command, location, user_errors
from pipeline import storage
from pipeline.ingest import (
    IngestConfig,
    check_out,
    downloads_dir,
    run_ingest,
    summary_table,
)
from pipeline.shards import RESOLVED_CONFIG

# shortcut flags -> their key in the job config, and the factor from the flag's unit
SHORTCUTS = {"every": "ingest.decode.every", "max_frames": "ingest.decode.max_frames",
             "input_size": "ingest.decode.input_size", "channels": "ingest.decode.channels",
             "interpolation": "ingest.decode.interpolation",
             "shard_rows": "ingest.shards.max_rows", "shard_mb": "ingest.shards.max_bytes",
             "workers": "ingest.n_decoders", "max_duration": "ingest.fetch.max_duration_s",
             "max_filesize_mb": "ingest.fetch.max_filesize",
             "max_videos": "ingest.fetch.max_videos"}
MB = {"shard_mb", "max_filesize_mb"}
RESOLVED = RESOLVED_CONFIG


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="catneuron ingest",
        description="Decode videos (files, folders, globs, source-list .txt files, any URL "
        "yt-dlp handles) with a pool of Ray actors into Parquet shards + _manifest.json. "
        "Re-running the same command resumes: finished videos are skipped.",
    )
    p.add_argument("sources", nargs="*", help="video files, folders, globs, .txt lists, URLs")
    p.add_argument("--out", type=location, required=True,
                   help="dataset folder (created/resumed): a path, or a URI such as "
                   "s3://bucket/prefix that every node of a cluster reaches")
    p.add_argument("--demo", action="store_true",
                   help="generate the embedded demo corpus into OUT/_videos and ingest it "
                   "with the shipped demo config's [ingest] settings")
    p.add_argument("--config", type=location,
                   help="job config whose [ingest] section to use: a .toml file or a shipped "
                        "name (demo, le2012) [library defaults; demo with --demo]")
    p.add_argument("--every", type=int, metavar="K", help="keep every K-th frame [1]")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="at most N frames per video, spread over the whole video")
    p.add_argument("--input-size", type=int, default=None, metavar="S",
                   help="square output side (centre crop + resize); 0 keeps the native frame "
                   "[default 64; Le et al. 2012 used 200]")
    colour = p.add_mutually_exclusive_group()
    colour.add_argument("--grey", "--gray", dest="channels", action="store_const", const=1,
                        default=None, help="store one grey channel (channels=1) [default]")
    colour.add_argument("--colour", "--color", dest="channels", action="store_const", const=3,
                        help="store three RGB channels (channels=3)")
    p.add_argument("--interpolation", choices=["box_linear", "area", "linear", "nearest"],
                   help="resize filter: box_linear = integer box mean then bilinear (cheap, "
                   "little aliasing) [default]; area = cv2.INTER_AREA (exact, costlier)")
    p.add_argument("--shard-rows", type=int, default=None, metavar="R",
                   help="max frames per shard [default 4096; demo 100]")
    p.add_argument("--shard-mb", type=float, help="max pixel MB per shard [128]")
    p.add_argument("--workers", type=int, default=None, metavar="W",
                   help="decode actors [default: one per CPU]; 0 decodes in this process")
    p.add_argument("--max-duration", type=float,
                   help="yt-dlp: skip videos longer than this many seconds [1800]")
    p.add_argument("--max-filesize-mb", type=float,
                   help="yt-dlp: skip downloads larger than this many MB [500]")
    p.add_argument("--max-videos", type=int,
                   help="yt-dlp: at most this many entries per playlist/channel/search [50]")
    p.add_argument("--seed", type=int, default=0, help="demo corpus seed [0]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@command("catneuron ingest", interrupted="interrupted; run the same command again to continue")
def main(argv: list[str] | None = None) -> int:
    """Run ``catneuron ingest``; returns the exit status (0 ok, 1 no frames, 2 usage error,
    130 on Ctrl-C: :mod:`jobs.errors`)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        parser.error(f"unrecognised arguments {bad}; config overrides are --ingest.key=value")
    if not args.sources and not args.demo:
        raise UserError("give at least one source, or --demo")
    problem = _out_problem(args.out, args.demo)
    if problem:
        raise UserError(problem)
    with user_errors(ValueError, FileNotFoundError):  # ConfigError is a ValueError
        job = resolve(args, rest)
        config = job.ingest
        if config.n_decoders is not None and config.n_decoders < 0:
            raise UserError(f"ingest.n_decoders={config.n_decoders}: must be >= 0")
        check_out(args.out, config)  # before the demo corpus or any download is written
    try:
        return _ingest(args, config, job)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the videos finished so far are kept in {args.out}: "
                          "run the same command again to continue") from None


def resolve(args: argparse.Namespace, rest: list[str]):
    """The job config (``JobConfig``) this run uses: ``--config`` (the demo's with ``--demo``),
    then the overrides and shortcut flags."""
    from jobs.config import load, shortcut_overrides

    values = {name: getattr(args, name) for name in SHORTCUTS}
    for name in MB & {k for k, v in values.items() if v is not None}:
        if not (math.isfinite(values[name]) and values[name] > 0):
            raise UserError(f"--{name.replace('_', '-')}={values[name]}: must be a positive "
                            "number of MB")
        values[name] = int(values[name] * (1 << 20))
    overrides = shortcut_overrides(SHORTCUTS, values, rest)
    return load(args.config or ("demo" if args.demo else None), overrides)


def _out_problem(location: str, demo: bool) -> str | None:
    """Why a local ``--out`` cannot be a folder (checked before anything is written), or None;
    the rest is :func:`pipeline.ingest.check_out`'s."""
    if storage.is_local(location):
        out = storage.local_path(location)
        for folder in (out, *out.parents):
            if folder.exists() and not folder.is_dir():
                return f"--out {out}: {folder} is a file, not a folder; give a folder path"
        if demo and (out / "_videos").is_symlink():
            return (f"--out {out}: {out / '_videos'} is a symlink; --demo writes its videos "
                    "only into a real folder inside OUT: remove the link")
    return None


def _ingest(args: argparse.Namespace, config: IngestConfig, job) -> int:
    """Write the demo corpus if asked, ingest, save the resolved config beside the dataset,
    print the summary; the exit status."""
    from jobs.config import dumps

    sources = list(args.sources)
    if args.demo:
        from pipeline.demo_corpus import write_demo_videos

        with user_errors(ValueError):  # a downloads folder that is not this user's alone
            videos = (storage.local_path(args.out) / "_videos" if storage.is_local(args.out)
                      else downloads_dir(args.out) / "_videos")
        paths = write_demo_videos(videos, seed=args.seed)
        print(f"demo corpus: {len(paths)} videos in {videos}", file=sys.stderr)
        sources.append(str(videos))
    with user_errors(ValueError):  # OptionsMismatch too; RayUnreachable is a user error
        report = run_ingest(sources, args.out, config, progress=not args.quiet)
    storage.write_text(storage.join(args.out, RESOLVED), dumps(job))
    print(summary_table(report))
    if report.exit_code():
        print("catneuron ingest: no source gave any frame; see the reasons above", file=sys.stderr)
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
