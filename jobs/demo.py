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

It prints one progress line per step; each step's own output (event lines, tables, Ray's
messages) goes to ``OUT/logs/<step>.log``, or to the terminal with ``--verbose``. A failed step
prints the end of its log. It ends with the verdict of ``evaluation.json`` (the face unit, or the
baseline that wins), the best unit's and the baselines' held-out figures in one table, and the
gallery's ``file://`` URL. A step whose output is complete is skipped (ingest: every demo video
``ok`` in the manifest; train: ``model.pt`` holds every stage; evaluate / visualize: their output
newer than ``model.pt``), and training resumes from its last checkpoint, so after an interruption
the same command continues where it stopped; Ctrl-C names the step it stopped in (and, in train,
the stage and step). One demo at a time runs in a folder (``OUT/demo.lock``); a second is refused.
Exit status 0 on success, 1 when a step fails, 2 on usage errors, 130 when interrupted.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jobs.errors import ArgumentParser, Interrupted, UserError, command, location
from pipeline.file_lock import FileLock, LockHeld

STATE = "demo.json"
LOCK = "demo.lock"  # held (flock) while a demo runs in the folder


class DemoError(UserError):
    """A step failed (``status`` 1, the default here) or the output folder cannot be used (2):
    printed by :mod:`jobs.errors`."""

    status = 1


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
    baseline_draws: int | None = None  # catneuron evaluate --baseline-draws (None: its default)

    def evaluate_argv(self) -> list[str]:
        """``catneuron evaluate``'s options for this size, the draws included."""
        draws = [] if self.baseline_draws is None else ["--baseline-draws",
                                                        str(self.baseline_draws)]
        return [*self.evaluate_args, *draws]


FULL = DemoSize("full", None)
FAST = DemoSize("fast", 60, ("--train.steps=40", "--train.checkpoint_every=20",
                             "--train.log_interval=10"),
                ("--splits", "5", "--filters", "200"),
                ("--starts", "1", "--steps", "5", "--top-k", "4"), baseline_draws=2)


@dataclass(frozen=True)
class Demo:
    """The demo's folders: ``out/data`` (dataset) and ``out/train`` (the run)."""

    out: Path
    size: DemoSize
    verbose: bool = False
    at: list[str] = field(default_factory=list)  # the step running now (empty between steps)

    @property
    def logs(self) -> Path:
        return self.out / "logs"

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


@contextlib.contextmanager
def output_to(log: Path | None) -> Iterator[None]:
    """Send everything written to this process's stdout and stderr to ``log`` (appended):
    ``sys.stdout`` / ``sys.stderr`` and file descriptors 1 and 2, so Ray's messages and child
    processes started meanwhile too. None leaves them on the terminal."""
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "a", buffering=1, encoding="utf-8") as f, \
                contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def log_tail(log: Path, n: int = 12) -> str:
    """The last ``n`` lines of a step's log (progress-bar redraws dropped)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def _call(demo: Demo, module: str, argv: list[str]) -> None:
    """Run ``jobs.<module>.main(argv)``, its output in ``OUT/logs/<module>.log`` (unless
    ``--verbose``); a non-zero status is a failed step, 130 (a job that caught Ctrl-C itself)
    an interruption."""
    log = None if demo.verbose else demo.logs / f"{module}.log"
    with output_to(log):
        status = int(importlib.import_module(f"jobs.{module}").main(argv) or 0)
    if status == 130:
        raise KeyboardInterrupt
    if status:
        where = "see above" if log is None else f"its output: {log}; the end of it:\n" + (
            log_tail(log))
        raise DemoError(f"{module} exited with status {status} ({where})\nfix it and run "
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
    _call(demo, "ingest", argv)
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
    _call(demo, "train", demo.train_argv())
    # the gallery shows the command that made the run (a resume only continues it)
    (demo.run / "command.txt").write_text(
        shlex.join(["catneuron", "train", *demo.start_argv()]) + "\n")
    return "done"


def evaluate(demo: Demo) -> str:
    """Score every unit on the built-in probe (skipped when evaluation.json is up to date)."""
    if _evaluation_current(demo):
        return "skipped: evaluation.json is newer than model.pt"
    _call(demo, "evaluate", ["--run", str(demo.run), *demo.size.evaluate_argv()])
    return "done"


def _evaluation_current(demo: Demo) -> bool:
    """Whether ``evaluation.json`` is newer than ``model.pt`` and scored the way this demo
    scores: with a verdict (a file from an older version has none) and as many exemplar-network
    draws as this size asks for. An unreadable file is not current (evaluate writes it again)."""
    from jobs.report.evaluation import EXEMPLAR_DRAWS, exemplar_draws

    path = demo.run / "evaluation.json"
    if not _newer(path, demo.model):
        return False
    want = demo.size.baseline_draws or EXEMPLAR_DRAWS
    try:
        evaluation = json.loads(path.read_text())
        return "verdict" in evaluation and exemplar_draws(evaluation) == want
    except (OSError, ValueError, TypeError, AttributeError):  # unreadable, not JSON, odd shape
        return False


def visualize(demo: Demo) -> str:
    """Render the units and the gallery (skipped when visualize/index.json is up to date)."""
    if _newer(demo.run / "visualize" / "index.json", demo.model):
        return "skipped: visualize/index.json is newer than model.pt"
    _call(demo, "visualize", ["--run", str(demo.run), *demo.size.visualize_args])
    return "done"


STEPS: tuple[tuple[str, Callable[[Demo], str]], ...] = (
    ("ingest", ingest), ("train", train), ("evaluate", evaluate), ("visualize", visualize))


def _lock(demo: Demo) -> FileLock:
    """The exclusive lock on ``OUT/demo.lock`` (:class:`pipeline.file_lock.FileLock`), held
    until released or the process ends; a second demo in the folder is refused at once: its
    steps would remove the first's half-written files (``visualize.partial``)."""
    try:
        return FileLock(demo.out / LOCK)
    except LockHeld as held:
        raise DemoError(f"{demo.out} is in use by another catneuron demo (pid {held.holder}): "
                        "wait for it to end, or choose another --out", 2) from None


def _check_state(demo: Demo) -> FileLock:
    """Refuse an --out that is not a folder or that another demo is using, and to mix a --fast
    and a full demo in one folder; record this one's size. The folder's lock
    (:func:`_lock`)."""
    if demo.out.exists() and not demo.out.is_dir():
        raise DemoError(f"--out {demo.out} is a file, not a folder: choose another --out", 2)
    path = demo.out / STATE
    if path.is_file():
        try:
            size = json.loads(path.read_text()).get("size")
        except (ValueError, AttributeError):
            size = None
        if size not in (FAST.name, FULL.name):
            raise DemoError(f"{path} is damaged: it should read {{\"size\": \"fast\"}} or "
                            "{\"size\": \"full\"}, as the folder's demo was run; fix it, or "
                            "choose another --out", 2)
        if size != demo.size.name:
            flag = "--fast" if size == "fast" else "no --fast"
            raise DemoError(f"{demo.out} holds a demo made with {flag}: run it the same way, "
                            "or choose another --out", 2)
    try:
        demo.out.mkdir(parents=True, exist_ok=True)
        lock = _lock(demo)
        try:
            tmp = path.with_name(f".{STATE}.tmp")  # a demo killed mid-write leaves no half file
            tmp.write_text(json.dumps({"size": demo.size.name}) + "\n")
            tmp.replace(path)
        except OSError:
            lock.release()
            raise
    except OSError as exc:  # a file above it, a read-only or virtual file system, a full disk
        raise DemoError(f"--out {demo.out}: cannot write a folder there "
                        f"({exc.strerror or exc}): choose another --out", 2) from None
    return lock


def run_steps(demo: Demo) -> dict[str, tuple[str, float]]:
    """Run every step in order with a progress line each; step -> (status, seconds)."""
    results = {}
    for n, (name, step) in enumerate(STEPS, 1):
        print(f"[{n}/{len(STEPS)}] {name} ...", flush=True)
        demo.at[:] = [name]
        t0 = time.perf_counter()
        status = step(demo)
        demo.at.clear()
        results[name] = (status, time.perf_counter() - t0)
        print(f"[{n}/{len(STEPS)}] {name}: {status} ({results[name][1]:.1f} s)", flush=True)
    if results["visualize"][0] != "done":  # visualize builds it; else build it from the files
        from jobs.gallery import build_gallery

        t0 = time.perf_counter()
        build_gallery(demo.run)
        results["gallery"] = ("rebuilt from the run's files", time.perf_counter() - t0)
    return results


def interrupted(demo: Demo) -> str:
    """The line Ctrl-C prints: the step it stopped in and, in train, the stage and step
    (:func:`jobs.train.where_interrupted`)."""
    if not demo.at:
        return "interrupted; run the same command again to continue"
    where = demo.at[0]
    if where == "train":
        from jobs.train import where_interrupted

        try:
            stage, step = where_interrupted(str(demo.run), _stages_trained(demo)[1])
            where += f" at stage {stage} step {step}"
        except (OSError, ValueError, RuntimeError):  # a model.pt cut short by the interrupt
            pass
    return f"interrupted in {where}; run the same command again to continue"


def summary(demo: Demo, results: dict[str, tuple[str, float]]) -> str:
    """The closing lines: the verdict, the best unit against its baselines, the gallery,
    timings."""
    from jobs.gallery.inputs import RunInputs, read_json

    lines = ["", "== catneuron demo"]
    evaluation = read_json(demo.run / "evaluation.json", "evaluation", RunInputs(demo.run))
    if evaluation is None:
        lines.append("face unit: not evaluated (no evaluation.json; needs catneuron evaluate)")
    else:
        lines += verdict_lines(evaluation) + arithmetic_lines(evaluation)
    index = demo.run / "gallery" / "index.html"
    lines += [f"gallery: {index}", f"  {index.resolve().as_uri()}",
              "time: " + ", ".join(f"{k} {s:.1f} s" for k, (_, s) in results.items())
              + f"; total {sum(s for _, s in results.values()):.1f} s"]
    if not demo.verbose:
        lines.append(f"each step's output: {demo.logs}/ (or run with --verbose)")
    return "\n".join(lines)


def verdict_lines(evaluation: dict) -> list[str]:
    """The verdict (``evaluation.json``'s, as is; an older file's read the older way, said so)
    then one aligned table: the best unit and every baseline and reference, held out."""
    from jobs.gallery.figures import REFERENCES, baseline_rows, headline, score

    head = headline(evaluation)
    if head["older"]:
        v = head["old"]
        words = {"found": "beats every baseline by more than its spread over splits",
                 "not_found": "does NOT beat the baselines: no face unit at this scale",
                 "unknown": "cannot be compared (figures missing)"}[v["state"]]
        lines = [f"best face unit: {v['name']}: {words}",
                 "  (evaluation.json is from an older version: run catneuron evaluate again "
                 "for the verdict)"]
    else:
        lines = [f"verdict: {head['text']}"]
    best = evaluation.get("best_neuron")
    rows = [(f"best unit: {head['unit']['name']}" if head["unit"] else "best unit",
             score(best))]
    rows += [(f"baseline: {r['name']}", r["score"]) for r in baseline_rows(
        evaluation.get("baselines"))]
    rows += [(f"reference: {r['name']}", r["score"]) for r in baseline_rows(
        evaluation.get("reference"), REFERENCES)]
    return lines + figure_table(rows)


def arithmetic_lines(evaluation: dict) -> list[str]:
    """The arithmetic the figures were computed with (``evaluation.json``'s, written by
    :func:`models.kernels.arithmetic.fingerprint`), when the file names a whole one: another
    CPU's kernels round differently, so figures published from another machine may differ."""
    from models.kernels.arithmetic import describe, is_fingerprint

    fp = evaluation.get("arithmetic")
    if not is_fingerprint(fp):
        return []
    return [f"computed with: {describe(fp)} (figures repeat bit for bit with the same; see "
            "Arithmetic in the README)"]


def figure_table(rows: list[tuple[str, dict]]) -> list[str]:
    """Aligned rows: name, held-out balanced accuracy ± spread, held-out AUC."""
    def fig(x):
        return "n/a" if x is None else f"{x:.3f}"

    cells = [(name, fig(s["heldout_balanced_accuracy"]) + (
        f" ± {fig(s['heldout_balanced_accuracy_std'])}"
        if s["heldout_balanced_accuracy_std"] is not None else ""), fig(s["heldout_auc"]))
        for name, s in rows]
    head = ("held out (unit chosen on one half)", "balanced accuracy", "AUC")
    w = [max(len(c[k]) for c in [head, *cells]) for k in range(3)]
    return [f"  {a:<{w[0]}}  {b:<{w[1]}}  {c:>{w[2]}}" for a, b, c in [head, *cells]]


def _shutdown_ray() -> None:
    """Stop the local Ray this process started (if any)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@command("catneuron demo")
def main(argv: list[str] | None = None) -> int:
    """Run ``catneuron demo``; returns the exit status (:mod:`jobs.errors`)."""
    p = ArgumentParser(
        prog="catneuron demo",
        description="Run the whole experiment on the embedded corpus, no network: ingest, train, "
                    "evaluate, visualize, then the gallery and a summary. Run it again to "
                    "continue after an interruption; finished steps are skipped.")
    p.add_argument("--out", type=lambda text: Path(location(text)), default=Path("runs/demo"),
                   help="demo folder: OUT/data (dataset), OUT/train (run) [runs/demo]")
    p.add_argument("--verbose", action="store_true",
                   help="show each step's own output here instead of in OUT/logs/<step>.log")
    p.add_argument("--fast", action="store_true",
                   help=f"reduced size for CI: {FAST.max_frames} frames a video, train "
                        + " ".join(FAST.train_overrides) + ", evaluate "
                        + " ".join(FAST.evaluate_argv()) + ", visualize "
                        + " ".join(FAST.visualize_args))
    args = p.parse_args(argv)
    demo = Demo(args.out, FAST if args.fast else FULL, args.verbose)
    lock = None
    try:
        lock = _check_state(demo)
        results = run_steps(demo)
        print(summary(demo, results))
        return 0
    except KeyboardInterrupt:
        print(file=sys.stderr)  # after the ^C the terminal echoed
        raise Interrupted(interrupted(demo)) from None
    finally:
        if lock is not None:  # else no step ran: no Ray to stop, nothing written
            with output_to(None if demo.verbose else demo.logs / "ray.log"):
                _shutdown_ray()
            lock.release()


if __name__ == "__main__":
    sys.exit(main())
