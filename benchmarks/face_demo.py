"""Confirm a face-neuron setting through the project's own path, one run per training seed.

For each seed: ``catneuron train --config CONFIG`` (parameter-server workers on a local Ray
cluster) into ``OUT/seed<k>``, timed, then ``catneuron evaluate`` on the run (the built-in
matched-twin probe's reporting part). Writes one JSON per seed to
``benchmarks/results/face_demo/`` with the probe's confound figure, the verdict, the best
top-stage unit, every baseline, the reference, the training wall time and the machine's load
average (the machine may be shared).

    python benchmarks/face_demo.py --config demo \
        --data /tmp/face/data --out /tmp/face/runs/demo --seeds 0 1 2
    python benchmarks/face_demo.py --run runs/demo/train --reuse --name demo_seed0  # the demo's
    python benchmarks/face_demo.py --run RUN --part tune --name NAME  # while choosing a setting
    python benchmarks/face_demo.py --out OUT --seeds 0 1 2 --no-train --choose-on tune --name N
        # the units chosen on the tuning part, scored on the reporting part (one fixed split)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from results_file import cli

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "face_demo"


def train(config: str, data: str, run: Path, seed: int, extra: list[str]) -> dict:
    """``catneuron train`` one seed into ``run``; its wall time and the load around it."""
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.train", "--config", config,
                    f'--data.path="{data}"', f"--train.seed={seed}",
                    f'--train.run_dir="{run}"', "--quiet", *extra], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return {"train_wall_s": round(time.perf_counter() - t0, 1), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}


def logged_train_s(run: Path) -> float:
    """Training time from the run's own ``events.log`` (first line to the last stage's end)."""
    lines = [ln for ln in (run / "events.log").read_text().splitlines() if ln[:4].isdigit()]
    stamps = [datetime.fromisoformat(ln.split()[0]) for ln in lines]
    return (max(stamps) - min(stamps)).total_seconds()


def record(run: Path, seed: int, extra: list[str], timing: dict, reuse: bool = False,
           part: str = "report", choose_on: str | None = None, eval_seed: int = 0) -> dict:
    """One seed's record: the run's resolved config, timing, probe, verdict, best top unit,
    baselines and reference. ``part``: the probe part scored (``tune`` while choosing a
    setting, ``report`` for the figures); ``choose_on``: instead, units chosen on that part and
    scored on the others (``catneuron evaluate --choose-on``). ``reuse``: take the run's
    ``evaluation.json`` when it is newer than its ``model.pt`` and scored the same way (e.g.
    written by ``catneuron demo``) instead of evaluating again."""
    from jobs.report.evaluation import EXEMPLAR_DRAWS, exemplar_draws  # evaluate's default

    t0 = time.perf_counter()
    ev_path = run / "evaluation.json"
    how = (["--choose-on", choose_on] if choose_on else ["--part", part]) + [
        "--seed", str(eval_seed)]  # the evaluation's splits and baseline draws
    fresh = False
    if ev_path.is_file() and ev_path.stat().st_mtime > (run / "model.pt").stat().st_mtime:
        old = json.loads(ev_path.read_text())
        fresh = (old["protocol"].get("choose_on") == choose_on
                 and old["protocol"].get("seed") == eval_seed
                 and (choose_on is not None or old["probe"].get("part") == part)
                 and exemplar_draws(old) == EXEMPLAR_DRAWS)
    if not (reuse and fresh):
        subprocess.run([sys.executable, "-m", "jobs.evaluate", "--run", str(run), *how,
                        "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    ev = json.loads(ev_path.read_text())
    best_base = max(ev["baselines"].items(), key=lambda kv: kv[1]["heldout_balanced_accuracy"])
    return {"config_text": (run / "config.toml").read_text(), "overrides": extra, "seed": seed,
            **timing, "evaluate_wall_s": None if reuse and fresh else round(
                time.perf_counter() - t0, 1), "protocol": ev["protocol"],
            "cpus": os.cpu_count(), "arithmetic": ev.get("arithmetic"),
            "probe": ev["probe"], "verdict": ev["verdict"],
            "best_neuron": ev["best_neuron"], "baselines": ev["baselines"],
            "reference": ev["reference"], "best_baseline": best_base[0],
            "margin": round(ev["best_neuron"]["heldout_balanced_accuracy"]
                            - best_base[1]["heldout_balanced_accuracy"], 4),
            "linear_readout": ev["linear_readout"]}


def report(name: str, rec: dict) -> None:
    """Write the record and print its line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rec, indent=1))
    b = rec["best_neuron"]
    print(f"{name}: top unit {b['layer']} #{b['index']} polarity {b['polarity']:+d} held-out BA "
          f"{b['heldout_balanced_accuracy']:.3f} AUC {b['heldout_auc']:.3f}; best baseline "
          f"{rec['best_baseline']} margin {rec['margin']:+.3f}; confound "
          f"{rec['probe']['confound_balanced_accuracy']}\n  {rec['verdict']['text']}",
          flush=True)


ROWS = (("always_negative", "always negative"), ("best_pixel", "best single pixel"),
        ("image_statistics", "image statistics (mean, std, gradient energy, Laplacian var.)"),
        ("linear_filters", "best of 1,000 whole-frame linear filters from training frames"),
        ("random_weights", "same network, random weights (best of 3 draws)"),
        ("exemplar_filters", "same network, training patches as weights (exemplar filters; "
         "mean of the draws)"),
        ("spread_exemplar_filters", "same network, spread-out (k-means++) training windows as "
         "weights (mean of the draws)"),
        ("stage0", "best unit of stage 0"))


def _cell(s: dict) -> str:
    """``BA ± std / AUC``; for a baseline drawn several times, the means and then the range and
    spread of the draws' balanced accuracies."""
    cell = (f"{s['heldout_balanced_accuracy']:.3f} ± {s['heldout_balanced_accuracy_std']:.3f}"
            f" / {s['heldout_auc']:.3f}")
    if "draws" in s:
        ba = s["draws"]["heldout_balanced_accuracy"]
        cell += f" (draws {min(ba):.3f}–{max(ba):.3f}, spread {s['draws']['std']:.3f})"
    return cell


def _appearances(r: dict) -> str:
    """``12, 12 / 50``: the appearance counts of an evaluation; ``—`` from one without them."""
    b = r["best_neuron"]
    if b.get("corpus_top100_appearances") is None:
        return "—"
    return (f"{b['corpus_top100_appearances']}, {b['corpus_top100_face_appearances']} / "
            f"{b['corpus_face_appearances']}")


def table(names: list[str]) -> str:
    """The README's Markdown table from result files ``RESULTS/<name>.json``."""
    recs = [json.loads((RESULTS / f"{n}.json").read_text()) for n in names]
    head = "| held-out BA ± std / AUC | " + " | ".join(f"seed {r['seed']}" for r in recs) + " |"
    lines = [head, "|" + " --- |" * (len(recs) + 1)]
    lines.append("| **best top-stage unit** | " + " | ".join(
        f"**{_cell(r['best_neuron'])}** (stage {r['best_neuron']['stage']} "
        f"{r['best_neuron']['layer']} #{r['best_neuron']['index']}, polarity "
        f"{r['best_neuron']['polarity']:+d})" for r in recs) + " |")
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(
            _cell(r["baselines"][key]) if key in r["baselines"] else "—" for r in recs) + " |")
    lines.append("| reference: mean training face as a template, best position and size | "
                 + " | ".join(_cell(r["reference"]["mean_face_template"]) for r in recs) + " |")
    extra = (("probe confound (image statistics, cross-validated BA)",
              lambda r: f"{r['probe']['confound_balanced_accuracy']:.2f}"),
             ("best unit: share of splits choosing it",
              lambda r: "— (one split)" if r["protocol"].get("choose_on")
              else f"{r['best_neuron']['stability']['top_share']:.2f}"),
             ("best unit: face share of its top 100 training frames (base rate)",
              lambda r: f"{r['best_neuron']['corpus_top100_face_share']:.2f} "
                        f"({r['best_neuron']['corpus_face_base_rate']:.2f})"),
             ("best unit: distinct appearances among those 100, faces among them / the "
              "corpus's face appearances", _appearances),
             ("best unit by face size: small / medium / large", lambda r: " / ".join(
                 f"{b['heldout_balanced_accuracy']:.2f}"
                 for b in r["best_neuron"]["by_size"].values())),
             ("verdict", lambda r: r["verdict"]["text"]))
    lines += [f"| {label} | " + " | ".join(f(r) for r in recs) + " |" for label, f in extra]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="train config (with --data, --out)")
    p.add_argument("--data", help="dataset from catneuron ingest --demo")
    p.add_argument("--out", type=Path, help="folder for the runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--name", default="face_demo", help="result file prefix")
    p.add_argument("--no-train", action="store_true",
                   help="evaluate runs already in OUT (training time from their events.log)")
    p.add_argument("--run", type=Path, help="evaluate this finished run only (e.g. the demo's)")
    p.add_argument("--reuse", action="store_true",
                   help="with --run: use its evaluation.json if newer than model.pt")
    p.add_argument("--part", choices=("tune", "report"), default="report",
                   help="probe part scored: 'tune' while choosing a setting [report]")
    p.add_argument("--choose-on", choices=("tune",),
                   help="instead of --part: units chosen on this part, scored on the others")
    p.add_argument("--eval-seed", type=int, default=0,
                   help="catneuron evaluate --seed: its splits and baseline draws [0]")
    p.add_argument("--table", nargs="+", metavar="NAME",
                   help="print the Markdown table of these result files and exit")
    a, extra = p.parse_known_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    if a.run is not None:
        seed = int(re.search(r"^seed\s*=\s*(\d+)", (a.run / "config.toml").read_text(),
                             re.M).group(1))
        report(a.name, record(a.run, seed, [], {"train_logged_s": logged_train_s(a.run)},
                              a.reuse, a.part, a.choose_on, a.eval_seed))
        return 0
    if not (a.config and a.data and a.out):
        p.error("give --run RUN, or --config, --data and --out")
    for seed in a.seeds:
        run = a.out / f"seed{seed}"
        timing = ({"train_logged_s": logged_train_s(run)} if a.no_train
                  else train(a.config, a.data, run, seed, extra))
        report(f"{a.name}_seed{seed}", record(run, seed, extra, timing, part=a.part,
                                              choose_on=a.choose_on, eval_seed=a.eval_seed))
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
