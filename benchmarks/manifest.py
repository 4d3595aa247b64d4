"""The ingest driver's manifest cost: group commits against a write after every video.

The driver records each finished video in ``_manifest.json`` (:mod:`pipeline.manifest_commits`).
For N videos this times the records and writes as an ingest makes them (a local folder, each
write a temporary file, fsync and rename), two ways in the same run:

- ``grouped``: :class:`pipeline.manifest_commits.ManifestCommits` as shipped (``GROWTH``);
- ``every_video``: the same class with ``growth=0``, one write a video (the reference).

Each video's record has the fields an ingest writes and one shard, with a YouTube-style source
name. Figures: seconds in all, the slowest single record (how long the driver stops taking
results), writes, and bytes written; ``every_video`` runs only up to ``--reference-max`` videos
(it grows as N^2).

    python benchmarks/manifest.py --videos 1000 4000 20000 --out benchmarks/results/manifest.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from results_file import cli, command_line, emit

import pipeline.manifest_commits as commits_module
from pipeline.manifest_commits import GROWTH, ManifestCommits
from pipeline.shards import MANIFEST, ShardInfo, empty_manifest


def _record(i: int) -> tuple[dict, list[ShardInfo]]:
    record = {"source": f"https://www.youtube.com/watch?v={i:011d}", "status": "ok",
              "frames": 300, "error": None, "frames_decoded": 300, "seconds": 1.234,
              "cpu_seconds": 1.2}
    return record, [ShardInfo(f"watch_v_{i:011d}-{i:010x}-00000.parquet", 300, f"{i:064x}")]


def run(n: int, growth: float) -> dict:
    """Record ``n`` videos with ``growth``; the timings and what was written."""
    sizes: list[int] = []
    real = commits_module.write_manifest

    def measured(root, manifest):
        real(root, manifest)
        sizes.append(os.path.getsize(Path(root) / MANIFEST))

    commits_module.write_manifest = measured
    try:
        with tempfile.TemporaryDirectory() as root:
            commits = ManifestCommits(root, empty_manifest({"input_size": 200}), growth=growth)
            slowest, t0 = 0.0, time.perf_counter()
            for i in range(n):
                t = time.perf_counter()
                commits.add(*_record(i))
                slowest = max(slowest, time.perf_counter() - t)
            commits.flush()
            seconds = time.perf_counter() - t0
    finally:
        commits_module.write_manifest = real
    return {"videos": n, "growth": growth, "seconds": round(seconds, 3),
            "slowest_record_s": round(slowest, 4), "writes": len(sizes),
            "bytes_written": sum(sizes), "manifest_bytes": sizes[-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, nargs="+", default=[1000, 4000, 20000])
    ap.add_argument("--reference-max", type=int, default=4000,
                    help="largest N the write-every-video reference runs at")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if min(args.videos) < 1:
        ap.error(f"--videos {min(args.videos)}: each count must be >= 1")
    rows = []
    for n in args.videos:
        row = {"videos": n, "grouped": run(n, GROWTH)}
        print(f"{n} grouped: {row['grouped']['seconds']} s", file=sys.stderr)
        if n <= args.reference_max:
            row["every_video"] = run(n, 0.0)
            row["every_video_over_grouped_s"] = round(
                row["every_video"]["seconds"] / row["grouped"]["seconds"], 1)
            print(f"{n} every video: {row['every_video']['seconds']} s", file=sys.stderr)
        rows.append(row)
    emit({"benchmark": "manifest", "command": command_line(
        ["benchmarks/manifest.py", *(sys.argv[1:] if argv is None else argv)]),
        "growth": GROWTH, "cpus": os.cpu_count(), "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
