"""``catneuron evaluate`` with its baseline cache empty, then full, against no cache at all,
timed in the same run on a copy of one trained run.

The drawn baselines (random-weight and exemplar stacks, linear filters) depend on the model's
configuration, the data, the probe and the settings, not on the trained weights
(:mod:`jobs.report.baseline_cache`), so a run evaluated again, or another run of the same
config on the same data, reads them. Each evaluate is a fresh process, as a user runs it, and
the three cases run in turn ``--repeat`` times (a new empty cache each time), so a slow minute
of the machine hits all three; the result records each wall time, their medians and whether
every ``evaluation.json`` is the same bytes::

    python benchmarks/evaluate_cache.py --run runs/demo/train \\
        --out benchmarks/results/evaluate_cache.json
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import cli, emit

SKIPPED = ("gallery", "evaluation.json")  # what evaluate writes or never reads


def timed_evaluate(run: Path, flags: list[str]) -> tuple[float, str]:
    """(wall seconds, evaluation.json's text) of one ``catneuron evaluate`` process."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.evaluate", "--run", str(run), "--quiet",
                    *flags], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, (run / "evaluation.json").read_text()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a trained local run (copied; not changed)")
    p.add_argument("--repeat", type=int, default=2, help="rounds of the three cases [2]")
    p.add_argument("--baseline-draws", type=int, default=None, metavar="N",
                   help="evaluate's --baseline-draws [its default]")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if not (Path(args.run) / "model.pt").is_file():
        raise FileNotFoundError(f"{args.run}: no model.pt (train the run first)")
    seconds: dict[str, list[float]] = {"no_cache": [], "cache_empty": [], "cache_full": []}
    texts = set()
    with tempfile.TemporaryDirectory(prefix="evaluate-cache-") as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns(*SKIPPED))
        draws = [] if args.baseline_draws is None else ["--baseline-draws",
                                                        str(args.baseline_draws)]
        for i in range(args.repeat):
            folder = str(Path(tmp) / f"cache{i}")
            cases = {"no_cache": ["--no-baseline-cache"],
                     "cache_empty": ["--baseline-cache", folder],
                     "cache_full": ["--baseline-cache", folder]}
            for name, flags in cases.items():
                s, text = timed_evaluate(run, flags + draws)
                seconds[name].append(round(s, 2))
                texts.add(text)
        cache_bytes = sum(f.stat().st_size for f in Path(folder).glob("*.npz"))
    median = {name: statistics.median(v) for name, v in seconds.items()}
    emit({"what": "catneuron evaluate wall time (a fresh process each, imports included): "
                  "with no baseline cache, with an empty one (computed and written), and with "
                  "the full one (read)",
          "run": args.run, "baseline_draws": args.baseline_draws, "seconds": seconds,
          "median_seconds": median,
          "speedup_full_over_none": round(median["no_cache"] / median["cache_full"], 2),
          "evaluation_json_identical": len(texts) == 1,
          "cache_file_bytes": cache_bytes}, args.out)
    return 0


if __name__ == "__main__":
    cli(main)
