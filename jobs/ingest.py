"""``catneuron ingest``: decode videos into a sharded Parquet frame dataset.

Examples::

    catneuron ingest --demo --out runs/demo/data
    catneuron ingest clips/ urls.txt https://example.org/v.mp4 --out data --every 5 --size 200
    python -m jobs.ingest "ytsearch3:cat videos" --out data --max-frames 300 --grey

Exit status: 0 when the dataset has at least one frame, 1 when no source gave frames, 2 on usage
errors (bad options, an output folder made with other options, a manifest that lists a path
outside its folder, an unreachable RAY_ADDRESS), 130 on Ctrl-C (finished videos are committed;
the same command continues). Every error is one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.decode import DecodeConfig
from pipeline.fetch import FetchConfig
from pipeline.ingest import IngestConfig, OptionsMismatch, run_ingest, summary_table
from pipeline.shards import MANIFEST, read_manifest
from pipeline.work import ShardConfig

DEMO_DEFAULTS = {"size": 64, "grey": True, "shard_rows": 100}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="catneuron ingest",
        description="Decode videos (files, folders, globs, source-list .txt files, any URL "
        "yt-dlp handles) with a pool of Ray actors into Parquet shards + _manifest.json. "
        "Re-running the same command resumes: finished videos are skipped.",
    )
    p.add_argument("sources", nargs="*", help="video files, folders, globs, .txt lists, URLs")
    p.add_argument("--out", required=True, type=Path, help="dataset folder (created/resumed)")
    p.add_argument("--demo", action="store_true",
                   help="generate the embedded demo corpus into OUT/_videos and ingest it "
                   "(defaults then: --size 64 --grey --shard-rows 100)")
    p.add_argument("--every", type=int, default=1, metavar="K", help="keep every K-th frame [1]")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="at most N frames per video, spread over the whole video")
    p.add_argument("--size", type=int, default=None, metavar="S",
                   help="square output side (centre crop + resize); 0 keeps the native frame "
                   "[default 64; Le et al. 2012 used 200]")
    colour = p.add_mutually_exclusive_group()
    colour.add_argument("--grey", "--gray", dest="grey", action="store_true", default=None,
                        help="store one grey channel [default]")
    colour.add_argument("--colour", "--color", dest="grey", action="store_false",
                        help="store three RGB channels")
    p.add_argument("--interpolation", choices=["box_linear", "area", "linear", "nearest"],
                   default="box_linear",
                   help="resize filter: box_linear = integer box mean then bilinear (cheap, "
                   "little aliasing) [default]; area = cv2.INTER_AREA (exact, ~5x the cost)")
    p.add_argument("--shard-rows", type=int, default=None, metavar="R",
                   help="max frames per shard [default 4096; demo 100]")
    p.add_argument("--shard-mb", type=float, default=128.0, help="max pixel MB per shard [128]")
    p.add_argument("--workers", type=int, default=None, metavar="W",
                   help="decode actors [default: one per CPU]; 0 decodes in this process")
    p.add_argument("--max-duration", type=float, default=1800.0,
                   help="yt-dlp: skip videos longer than this many seconds [1800]")
    p.add_argument("--max-filesize-mb", type=float, default=500.0,
                   help="yt-dlp: skip downloads larger than this many MB [500]")
    p.add_argument("--max-videos", type=int, default=50,
                   help="yt-dlp: at most this many entries per playlist/channel/search [50]")
    p.add_argument("--seed", type=int, default=0, help="demo corpus seed [0]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``catneuron ingest``; returns the exit status (0 ok, 1 no frames, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): return the code, don't exit
        return int(e.code or 0)
    if not args.sources and not args.demo:
        parser.print_usage(sys.stderr)
        print("catneuron ingest: error: give at least one source, or --demo", file=sys.stderr)
        return 2
    problem = _out_problem(args.out, args.demo)
    if problem:
        print(f"catneuron ingest: error: {problem}", file=sys.stderr)
        return 2
    demo = DEMO_DEFAULTS if args.demo else {}
    size = args.size if args.size is not None else demo.get("size", 64)
    grey = args.grey if args.grey is not None else True
    shard_rows = args.shard_rows if args.shard_rows is not None else demo.get("shard_rows", 4096)
    try:
        config = IngestConfig(
            decode=DecodeConfig(every=args.every, max_frames=args.max_frames, size=size,
                                grey=grey, interpolation=args.interpolation),
            shards=ShardConfig(max_rows=shard_rows, max_bytes=int(args.shard_mb * (1 << 20))),
            fetch=FetchConfig(max_duration_s=args.max_duration,
                              max_filesize=int(args.max_filesize_mb * (1 << 20)),
                              max_videos=args.max_videos),
            workers=args.workers,
        )
        if config.workers is not None and config.workers < 0:
            raise ValueError(f"--workers {config.workers}: must be >= 0")
    except ValueError as e:
        print(f"catneuron ingest: error: {e}", file=sys.stderr)
        return 2
    try:
        return _ingest(args, config)
    except KeyboardInterrupt:
        print(f"catneuron ingest: interrupted; the videos finished so far are kept in {args.out}: "
              "run the same command again to continue", file=sys.stderr)
        return 130


def _out_problem(out: Path, demo: bool) -> str | None:
    """Why ``--out`` cannot be used (checked before anything is written), or None."""
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            return f"--out {out}: {folder} is a file, not a folder; give a folder path"
    if demo and (out / "_videos").is_symlink():
        return (f"--out {out}: {out / '_videos'} is a symlink; --demo writes its videos only "
                "into a real folder inside OUT: remove the link")
    if (out / MANIFEST).exists():
        try:
            read_manifest(out)  # damaged, or lists a path outside OUT: refuse, touch nothing
        except ValueError as e:
            return str(e)
    return None


def _ingest(args: argparse.Namespace, config: IngestConfig) -> int:
    """Write the demo corpus if asked, ingest, print the summary; the exit status."""
    from pipeline.pool import RayUnreachable

    sources = list(args.sources)
    if args.demo:
        from pipeline.demo_corpus import write_demo_videos

        videos = args.out / "_videos"
        paths = write_demo_videos(videos, seed=args.seed)
        print(f"demo corpus: {len(paths)} videos in {videos}", file=sys.stderr)
        sources.append(str(videos))
    try:
        report = run_ingest(sources, args.out, config, progress=not args.quiet)
    except (OptionsMismatch, RayUnreachable, ValueError) as e:
        print(f"catneuron ingest: error: {e}", file=sys.stderr)
        return 2
    print(summary_table(report))
    if report.exit_code():
        print("catneuron ingest: no source gave any frame; see the reasons above", file=sys.stderr)
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
