"""``catneuron demo``: the whole experiment on the embedded corpus, no network.

Examples::

    catneuron demo                       # runs/demo: data/, train/ (+ evaluation, gallery)
    catneuron demo --fast --out /tmp/d   # reduced size (CI): fewer frames and steps

Steps, each the same code as its own subcommand:

1. ingest: write the demo videos (``pipeline.demo_corpus``) and decode them with the Ray decode
   actors into ``OUT/data`` (``catneuron ingest --demo``);
2. train: the stacked RBM with parameter-server workers on a local Ray cluster, config
   :func:`demo_config_path` (``catneuron train``);
3. evaluate: selectivity on the built-in probe, which the videos never show
   (``catneuron evaluate`` → ``OUT/train/evaluation.json``);
4. visualize: top frames, optimal stimuli, invariance, and the gallery
   (``catneuron visualize`` → ``OUT/train/visualize/``, ``OUT/train/gallery/``).

It ends with the best face unit against its baselines and the gallery's ``file://`` URL. A step
whose output is complete is skipped (ingest: every demo video ``ok`` in the manifest; train:
``model.pt`` holds every stage; evaluate / visualize: their output newer than ``model.pt``), and
training resumes from its last checkpoint, so after an interruption the same command continues
where it stopped. Exit status 0 on success, 1 when a step fails, 2 on usage errors, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs.cli import parse_or_status

STATE = "demo.json"


class DemoError(RuntimeError):
    """A step failed or the output folder cannot be used; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def demo_config_path() -> Path:
    """The config the demo uses: the shipped demo (``configs/demo.toml``), the one
    ``catneuron train`` loads when given no ``--config``."""
    from jobs.config import shipped_config

    return shipped_config("demo")


@dataclass(frozen=True)
class DemoSize:
    """How big the demo runs: frames kept per video at ingest, train config overrides, and
    extra ``catneuron evaluate`` and ``catneuron visualize`` options."""

    name: str
    max_frames: int | None
    train_overrides: tuple[str, ...] = ()
    evaluate_args: tuple[str, ...] = ()
    visualize_args: tuple[str, ...] = ()


FULL = DemoSize("full", None)
FAST = DemoSize("fast", 60, ("--train.steps=40", "--train.warm_start_steps=10",
                             "--train.checkpoint_every=20", "--train.log_interval=10"),
                ("--splits", "5", "--filters", "200"),
                ("--starts", "1", "--steps", "5", "--top-k", "4"))


@dataclass(frozen=True)
class Demo:
    """The demo's folders: ``out/data`` (dataset) and ``out/train`` (the run)."""

    out: Path
    size: DemoSize

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def run(self) -> Path:
        return self.out / "train"

    @property
    def model(self) -> Path:
        return self.run / "model.pt"

    def overrides(self) -> list[str]:
        """The demo config's overrides: this folder's dataset and run, and the size."""
        return [f"--data.path={json.dumps(str(self.data.resolve()))}",
                f"--train.run_dir={json.dumps(str(self.run.resolve()))}",
                *self.size.train_overrides]

    def start_argv(self) -> list[str]:
        """``catneuron train`` arguments that start the run: the demo config on this folder."""
        return ["--config", str(demo_config_path()), *self.overrides()]

    def train_argv(self) -> list[str]:
        """Start the run, or continue it with its own config once ``RUN/config.toml`` exists."""
        if (self.run / "config.toml").is_file():
            return ["--resume", "--run-dir", str(self.run.resolve())]
        return self.start_argv()


def _newer(path: Path, than: Path) -> bool:
    return path.is_file() and than.is_file() and path.stat().st_mtime > than.stat().st_mtime


def _call(module: str, argv: list[str]) -> None:
    """Run ``jobs.<module>.main(argv)``; a non-zero status is a failed step, 130 (a job that
    caught Ctrl-C itself) an interruption."""
    status = int(importlib.import_module(f"jobs.{module}").main(argv) or 0)
    if status == 130:
        raise KeyboardInterrupt
    if status:
        raise DemoError(f"{module} exited with status {status} (see above); fix it and run "
                        "the same command again to continue", status)


def ingest(demo: Demo) -> str:
    """Write the demo videos and decode them into ``OUT/data`` (skipped when complete)."""
    from pipeline.demo_corpus import write_demo_videos
    from pipeline.shards import read_manifest

    videos = write_demo_videos(demo.data / "_videos")
    try:
        manifest = read_manifest(demo.data)
        # a source is its path, or "path#content-hash" where the manifest records identity
        ok = {Path(str(v["source"]).split("#", 1)[0]).name for v in manifest["videos"]
              if v.get("status") == "ok"}
        if {p.name for p in videos} <= ok:
            return f"skipped: all {len(videos)} videos in {demo.data}/_manifest.json"
    except (FileNotFoundError, ValueError):
        pass
    argv = ["--demo", "--out", str(demo.data)]
    if demo.size.max_frames:
        argv += ["--max-frames", str(demo.size.max_frames)]
    _call("ingest", argv)
    return "done"


def _stages_trained(demo: Demo) -> tuple[int, int]:
    """(stages in model.pt, stages the config trains)."""
    from cluster.state_io import read_state
    from jobs.config import load

    saved = demo.run / "config.toml"
    config = load(saved) if saved.is_file() else load(demo_config_path(), demo.overrides())
    if not demo.model.is_file():
        return 0, config.n_stages
    saved = read_state(demo.model)
    return int(saved.get("stages_trained", 0)), config.n_stages


def train(demo: Demo) -> str:
    """Train (or resume) the stack until ``model.pt`` holds every stage."""
    have, want = _stages_trained(demo)
    if have >= want:
        return f"skipped: {demo.model} holds all {want} stages"
    _call("train", demo.train_argv())
    # the gallery shows the command that made the run (a resume only continues it)
    (demo.run / "command.txt").write_text(
        shlex.join(["catneuron", "train", *demo.start_argv()]) + "\n")
    return "done"


def evaluate(demo: Demo) -> str:
    """Score every unit on the built-in probe (skipped when evaluation.json is up to date)."""
    if _newer(demo.run / "evaluation.json", demo.model):
        return "skipped: evaluation.json is newer than model.pt"
    _call("evaluate", ["--run", str(demo.run), *demo.size.evaluate_args])
    return "done"


def visualize(demo: Demo) -> str:
    """Render the units and the gallery (skipped when visualize/index.json is up to date)."""
    if _newer(demo.run / "visualize" / "index.json", demo.model):
        return "skipped: visualize/index.json is newer than model.pt"
    _call("visualize", ["--run", str(demo.run), *demo.size.visualize_args])
    return "done"


STEPS: tuple[tuple[str, Callable[[Demo], str]], ...] = (
    ("ingest", ingest), ("train", train), ("evaluate", evaluate), ("visualize", visualize))


def _check_state(demo: Demo) -> None:
    """Refuse to mix a --fast and a full demo in one folder; record this one's size."""
    path = demo.out / STATE
    if path.is_file():
        try:
            size = json.loads(path.read_text()).get("size")
        except (ValueError, AttributeError):
            size = None
        if size != demo.size.name:
            flag = "--fast" if size == "fast" else "no --fast"
            raise DemoError(f"{demo.out} holds a demo made with {flag}: run it the same way, "
                            "or choose another --out", 2)
    demo.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"size": demo.size.name}) + "\n")


def run_steps(demo: Demo) -> dict[str, tuple[str, float]]:
    """Run every step in order with a progress line each; step -> (status, seconds)."""
    results = {}
    for n, (name, step) in enumerate(STEPS, 1):
        print(f"[{n}/{len(STEPS)}] {name} ...", flush=True)
        t0 = time.perf_counter()
        status = step(demo)
        results[name] = (status, time.perf_counter() - t0)
        print(f"[{n}/{len(STEPS)}] {name}: {status} ({results[name][1]:.1f} s)", flush=True)
    if results["visualize"][0] != "done":  # visualize builds it; else build it from the files
        from jobs.gallery import build_gallery

        t0 = time.perf_counter()
        build_gallery(demo.run)
        results["gallery"] = ("rebuilt from the run's files", time.perf_counter() - t0)
    return results


def summary(demo: Demo, results: dict[str, tuple[str, float]]) -> str:
    """The closing lines: the best face unit against its baselines, the gallery, timings."""
    from jobs.gallery_inputs import RunInputs, read_json
    from jobs.gallery_views import verdict

    lines = ["", "== catneuron demo"]
    evaluation = read_json(demo.run / "evaluation.json", "evaluation", RunInputs(demo.run))
    if evaluation is None:
        lines.append("face unit: not evaluated (no evaluation.json; needs catneuron evaluate)")
    else:
        v = verdict(evaluation.get("best_neuron"), evaluation.get("baselines"))
        lines += _verdict_lines(v)
    index = demo.run / "gallery" / "index.html"
    lines += [f"gallery: {index}", f"  {index.resolve().as_uri()}",
              "time: " + ", ".join(f"{k} {s:.1f} s" for k, (_, s) in results.items())
              + f"; total {sum(s for _, s in results.values()):.1f} s"]
    return "\n".join(lines)


def _verdict_lines(v: dict) -> list[str]:
    """The verdict in words, then held-out balanced accuracy / AUC of the unit and baselines."""
    def fig(x):
        return "n/a" if x is None else f"{x:.3f}"

    unit = v["unit"]
    words = {"found": "beats every baseline by more than its spread over splits",
             "not_found": "does NOT beat the baselines: no face unit at this scale",
             "unknown": "cannot be compared (figures missing)"}[v["state"]]
    lines = [f"best face unit: {v['name']}: {words}",
             f"  {'held-out balanced accuracy / AUC':<44} {fig(unit['heldout_balanced_accuracy'])}"
             f" ± {fig(unit['heldout_balanced_accuracy_std'])} / {fig(unit['heldout_auc'])}"]
    for row in v["rows"]:
        s = row["score"]
        lines.append(f"  baseline: {row['name']:<34} {fig(s['heldout_balanced_accuracy'])}"
                     f"         / {fig(s['heldout_auc'])}")
    return lines


def _shutdown_ray() -> None:
    """Stop the local Ray this process started (if any)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run ``catneuron demo``; returns the exit status."""
    p = argparse.ArgumentParser(
        prog="catneuron demo",
        description="Run the whole experiment on the embedded corpus, no network: ingest, train, "
                    "evaluate, visualize, then the gallery and a summary. Run it again to "
                    "continue after an interruption; finished steps are skipped.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"),
                   help="demo folder: OUT/data (dataset), OUT/train (run) [runs/demo]")
    p.add_argument("--fast", action="store_true",
                   help=f"reduced size for CI: {FAST.max_frames} frames a video, train "
                        + " ".join(FAST.train_overrides) + ", evaluate "
                        + " ".join(FAST.evaluate_args) + ", visualize "
                        + " ".join(FAST.visualize_args))
    args = parse_or_status(p, argv)
    if isinstance(args, int):
        return args
    demo = Demo(args.out, FAST if args.fast else FULL)
    try:
        _check_state(demo)
        results = run_steps(demo)
        print(summary(demo, results))
        return 0
    except DemoError as e:
        print(f"catneuron demo: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("\ncatneuron demo: interrupted; run the same command again to continue",
              file=sys.stderr)
        return 130
    finally:
        _shutdown_ray()


if __name__ == "__main__":
    sys.exit(main())
