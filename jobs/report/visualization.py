"""One ``catneuron visualize`` run: choose units (of every layer evaluate ranked, the headline
unit always), scan the dataset, write every stage's pictures and JSON into
``RUN/visualize.partial/``, then swap it in for ``RUN/visualize/``.

Wall time is recorded per part (``timings_s`` in ``index.json``) so the slow part is visible.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cluster.scan import RayOnDemand
from cluster.state_io import read_trained_stack
from cluster.topk import fetch_frames, fetch_records, shard_row_counts
from jobs.report import corpus_tops
from jobs.report.distinct_frames import DEFAULT_GAP, pool_size, spread_out
from jobs.report.training_curves import write_training_curves
from jobs.report.unit_images import (
    LAYER,
    box_of,
    write_invariance,
    write_stimuli,
    write_top_frames,
    write_weights,
)
from jobs.report.unit_selection import (
    EvaluatedUnits,
    Key,
    activation_variance,
    choose_units,
    evaluated_units,
    rank_units,
)
from jobs.unit_scan import scan_layers
from models.neurons.stimulus import StimulusConfig
from models.neurons.units import LAYERS, layer_shape, stage_layers, unit_position
from models.rbm.dense import default_device
from pipeline.reader import FrameReader, list_shards, read_frames

INVARIANCE_FRAMES = 4  # each frame is resampled 33 times (scales, angles, shifts) per unit


@dataclass(frozen=True)
class Options:
    """What to render (``catneuron visualize``'s flags): ``top_k`` frames per unit; per stage the
    ``selective`` most selective units plus ``units`` drawn at random are shown in detail, the
    ``invariance`` most selective with invariance curves (the mean over their first
    ``INVARIANCE_FRAMES`` top frames); optimal stimuli with ``starts`` random
    starts and ``steps`` ascent steps; ``actors`` top-k actors (0: one per Ray
    CPU); ``sample_frames`` frames for the activation variance; ``seed`` for every draw;
    ``min_gap``: a unit's top frames of one video at least this many frames apart where its
    pool allows (:mod:`jobs.report.distinct_frames`; 0: the plain top-k)."""

    top_k: int = 9
    min_gap: int = DEFAULT_GAP
    units: int = 4
    selective: int = 8
    invariance: int = 3
    starts: int = 2
    steps: int = 20
    actors: int = 0
    sample_frames: int = 512
    seed: int = 0
    quiet: bool = False

    @classmethod
    def from_args(cls, args) -> Options:
        """The options from parsed command-line arguments of the same names."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


class Visualization:
    """The run's stack, dataset and options; :meth:`write` produces ``RUN/visualize/``.

    Raises ValueError (a usage error) when the dataset's frames do not fit the model.
    """

    def __init__(self, run: Path, root: Path, options: Options) -> None:
        self.run, self.root, self.options = run, root, options
        self.stack, n_trained = read_trained_stack(run / "model.pt", device=default_device())
        self.shards = list_shards(root)
        cfg = self.stack.config
        shape = read_frames(root, shards=self.shards[:1], limit=1).shape[1:]
        if tuple(shape) != (cfg.channels, cfg.input_size, cfg.input_size):
            raise ValueError(f"{root}: frames are {tuple(shape)} (C, H, W) but the model takes "
                             f"{(cfg.channels, cfg.input_size, cfg.input_size)}; pass --data "
                             "with the dataset the run was trained on")
        self.stages = list(range(max(1, n_trained)))
        self.stimulus = StimulusConfig(n_starts=options.starts, n_steps=options.steps)
        self.timings: dict[str, float] = {}
        self.from_evaluate: list[Key] = []  # (stage, layer)s whose top frames came from evaluate
        self.quiet = options.quiet or not sys.stderr.isatty()
        self.pool = pool_size(options.top_k, options.min_gap)  # frames ranked per unit
        self.evaluated = evaluated_units(self.run)  # RUN/evaluation.json, read once
        self.check_units_shown()

    def check_units_shown(self) -> None:
        """ValueError (a usage error) when a stage would show no pooled unit in detail:
        ``--selective 0 --units 0`` and ``evaluation.json`` names none of its units (its best,
        the headline), so its top-k scan has no unit to rank. Refused before anything is
        written."""
        if self.options.selective or self.options.units:
            return
        bare = [s for s in self.stages
                if not self.evaluated.must_show(s, LAYER, self.n_units(s, LAYER))]
        if bare:
            raise ValueError(f"--selective 0 --units 0: no unit of stage {bare[0]} to show "
                             "(RUN/evaluation.json names none of its pooled units); pass "
                             "--selective or --units of at least 1")

    def bar(self, total: int, desc: str) -> tqdm:
        """A progress bar on stderr (silent with --quiet or off a terminal)."""
        return tqdm(total=total, desc=desc, disable=self.quiet, file=sys.stderr, leave=False)

    def write(self) -> Path:
        """Build everything; the path of ``RUN/visualize/index.json``."""
        partial = self.run / "visualize.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir()
        with timed(self.timings, "select units"):
            selection = self.select()
        with timed(self.timings, "top-k scan"):
            pools = self.scan({key: sel.detailed for key, sel in selection.items()})
        with timed(self.timings, "read top frames"):
            ids = np.concatenate([t.ids.numpy().ravel() for t in pools.values()])
            records = fetch_records(ids, self.shards)  # (source, frame index): no pixels
            tops = {key: spread_out(pool, records, self.options.top_k, self.options.min_gap)
                    for key, pool in pools.items()}
            frames = fetch_frames(np.concatenate([t.ids.numpy().ravel() for t in tops.values()]),
                                  self.shards)
        stages = []
        for s in self.stages:
            sels = {layer: sel for (k, layer), sel in selection.items() if k == s}
            doc = self.stage(s, sels, tops, frames, partial)
            (partial / f"stage{s}.json").write_text(json.dumps(doc, indent=1))
            stages.append({"stage": s, "file": f"stage{s}.json"})
        with timed(self.timings, "training curves"):
            curves = write_training_curves(self.run, partial)
        index = {"schema": 1, "stages": stages, "curves": curves,
                 "top_frames_from_evaluate": [list(k) for k in self.from_evaluate],
                 "top_frames_min_gap": self.options.min_gap,
                 "top_frames_pool": self.pool,
                 "timings_s": {k: round(v, 3) for k, v in self.timings.items()}}
        (partial / "index.json").write_text(json.dumps(index, indent=1))
        replace_folder(partial, self.run / "visualize")
        return self.run / "visualize" / "index.json"

    def select(self) -> dict[Key, Selection]:
        """Per (stage, layer), the units listed and those shown in detail: pooled units as
        ranked (or by variance), the other layers' ranked units, and every layer's best and the
        headline unit whatever their rank
        (:class:`jobs.report.unit_selection.EvaluatedUnits`)."""
        evaluated = self.evaluated
        rng = np.random.default_rng(self.options.seed)
        order = rng.permutation(len(self.shards))
        variances = self.variances(evaluated, [self.shards[i] for i in order])
        out = {}
        for s in self.stages:
            ranking = evaluated.rankings.get((s, LAYER), [])
            n_units = self.n_units(s, LAYER)
            ranked = rank_units(ranking, variances[s], n_units)
            selective, detailed = choose_units(ranked, self.options.selective,
                                               self.options.units, rng)
            must = evaluated.must_show(s, LAYER, n_units)
            detailed = sorted(set(detailed) | set(must))
            local0 = s == 0 and self.stack.config.stages[0].kind == "local"
            listed = sorted(ranked) if local0 else detailed  # a local stage 0: every unit
            by_index = {int(r["index"]): r for r in ranking}
            info = {i: {"selectivity": selectivity(by_index.get(i)),
                        "activation_variance": _item(variances[s], i)} for i in listed}
            out[(s, LAYER)] = Selection(selective, detailed, listed, info, must)
            for layer in stage_layers(self.stack.config, s):
                if layer != LAYER and layer in LAYERS:
                    sel = self._other_layer(evaluated, s, layer)
                    if sel is not None:
                        out[(s, layer)] = sel
        return out

    def n_units(self, s: int, layer: str) -> int:
        """How many units ``layer`` of stage ``s`` has (the bound of every index read from a
        file)."""
        return int(np.prod(layer_shape(self.stack.config, s, layer)))

    def variances(self, evaluated: EvaluatedUnits, shards: list[str]) -> list[torch.Tensor]:
        """Per stage, each pooled unit's activation variance over ``sample_frames`` frames of
        ``shards`` (:func:`~jobs.report.unit_selection.activation_variance`), for the stages
        whose units the evaluation does not rank far enough to name the ``selective`` most
        selective (below the lowest such stage too: one pass computes them); an empty tensor
        for a stage above it (its ranking orders the units shown, and its random draws need no
        order)."""
        short = [s for s in self.stages
                 if len(evaluated.rankings.get((s, LAYER), [])) < self.options.selective]
        if not short:
            return [torch.empty(0) for _ in self.stages]
        sample = read_frames(self.root, shards=shards, limit=self.options.sample_frames)
        found = activation_variance(self.stack, sample, max(short))
        return found + [torch.empty(0) for _ in self.stages[len(found):]]

    def _other_layer(self, evaluated: EvaluatedUnits, s: int, layer: str) -> Selection | None:
        """A non-pooled layer's selection: its ``selective`` best ranked units plus its best
        and the headline unit (None when the evaluation names none of its units)."""
        n = self.n_units(s, layer)
        ranking = [r for r in evaluated.rankings.get((s, layer), []) if 0 <= r["index"] < n]
        selective = [int(r["index"]) for r in ranking][: self.options.selective]
        must = evaluated.must_show(s, layer, n)
        detailed = sorted(set(selective) | set(must))
        if not detailed:
            return None
        by_index = {int(r["index"]): r for r in ranking}
        info = {i: {"selectivity": selectivity(by_index.get(i)), "activation_variance": None}
                for i in detailed}
        return Selection(selective, detailed, detailed, info, must)

    def scan(self, units: dict[Key, list[int]]):
        """Each listed unit's pool (its top :attr:`pool` frames) over the whole dataset: from
        ``catneuron evaluate``'s pass over it when ``RUN/corpus_tops.json`` answers
        (:mod:`jobs.report.corpus_tops`), the other units by a scan of the dataset
        (:func:`jobs.unit_scan.scan_layers`: Ray actors, one per CPU unless ``--actors``, when
        they pay; Ray is started only then)."""
        known = corpus_tops.read(self.run, self.shards, shard_row_counts(self.shards),
                                 self.pool, units={key: self.n_units(*key) for key in units})
        tops = {key: corpus_tops.select(known[key], idx) for key, idx in units.items()
                if key in known}
        self.from_evaluate = sorted(tops)
        rest = {key: idx for key, idx in units.items() if key not in known}
        if rest:
            tops.update(self.scan_dataset(rest))
        return tops

    def scan_dataset(self, units: dict[Key, list[int]]):
        """Each unit of ``units``'s pool over the whole dataset, by Ray actors."""
        n_frames = FrameReader(self.root, batch_size=1, shards=self.shards).num_rows()
        with self.bar(n_frames, "top-k frames") as bar, RayOnDemand() as ray:
            return scan_layers(str(self.run / "model.pt"), self.shards, units,
                               self.pool, progress=bar.update,
                               n_actors=lambda: ray.actors(self.options.actors))

    def stage(self, s: int, sels: dict[str, Selection], tops: dict, frames: dict,
              out: Path) -> dict:
        """Write one stage's pictures (the mosaic of its listed pooled units, the rest for the
        units in detail, every layer); its ``stage{k}.json`` document."""
        units, shapes = [], {}
        for layer, sel in sels.items():
            units += self.layer_units(s, layer, sel, tops[(s, layer)], frames, out)
            shapes[layer] = list(layer_shape(self.stack.config, s, layer))
        return {"schema": 1, "stage": s, "kind": self.stack.config.stages[s].kind,
                "learner": self.stack.config.stages[s].learner, "layer": LAYER,
                "shape": shapes[LAYER],
                "shapes": shapes, "mosaic_png": f"stage{s}/mosaic.png", "units": units}

    def layer_units(self, s: int, layer: str, sel: Selection, top, frames: dict,
                    out: Path) -> list[dict]:
        """The pictures of one (stage, layer)'s units; their ``stage{k}.json`` entries."""
        stack, detailed = self.stack, sel.detailed
        with timed(self.timings, "weights and projections"):
            weights = write_weights(stack, s, detailed, sel.listed if layer == LAYER else None,
                                    out, layer)
        with timed(self.timings, "top frames"):
            tops = write_top_frames(stack, s, detailed, top.values, top.ids, frames, out, layer)
        with timed(self.timings, "optimal stimulus"), self.bar(len(detailed), f"stimuli {s}") as b:
            g = torch.Generator(device=stack.device).manual_seed(self.options.seed + s)
            stimuli = write_stimuli(stack, s, detailed, self.stimulus, out, generator=g,
                                    progress=b.update, layer=layer)
        with timed(self.timings, "invariance"):
            row = {i: u for u, i in enumerate(detailed)}
            ranked = sel.selective[: self.options.invariance] if layer == LAYER else []
            curved = list(dict.fromkeys(sel.always + ranked))
            top_frames = {i: np.stack([frames[int(f)][0] for f in
                                       top.ids[row[i], :INVARIANCE_FRAMES].tolist()])
                          for i in curved}
            invariance = write_invariance(stack, s, curved, top_frames, out, layer)
        shape = layer_shape(stack.config, s, layer)
        units = []
        for i in sel.listed:
            m, y, x = unit_position(shape, i)
            units.append({"index": i, "layer": layer, "map": m, "y": y, "x": x, **sel.info[i],
                          "selective": i in sel.selective, "detailed": i in row,
                          **weights.get(i, {"weights_png": None}),
                          "top_frames": tops.get(i), "box": box_of(stack, s, i, layer),
                          "optimal_stimulus": stimuli.get(i), "invariance": invariance.get(i)})
        return units


@dataclass(frozen=True)
class Selection:
    """One stage's units: the ``selective`` (most selective first), the ``detailed`` (top
    frames, optimal stimulus, weights PNG; index order), the ``listed`` in ``stage{k}.json``
    (all of stage 0's pooled units, else the detailed), each listed unit's selectivity fields
    and the units shown whatever their rank (``always``)."""

    selective: list[int]
    detailed: list[int]
    listed: list[int]
    info: dict[int, dict]
    always: list[int]  # the layer's best and the headline unit: invariance curves too


@contextmanager
def timed(timings: dict[str, float], name: str):
    """Add the block's wall time to ``timings[name]``."""
    t0 = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def replace_folder(partial: Path, final: Path) -> None:
    """Swap a finished ``partial`` folder in for ``final`` (removing the old one)."""
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)


def _item(values: torch.Tensor, i: int) -> float | None:
    """``values[i]`` as a float; None when the values were not computed (empty)."""
    return float(values[i]) if len(values) else None


def selectivity(entry: dict | None) -> dict | None:
    """The contract's ``selectivity`` of a unit from its evaluation ranking entry: the unit's
    own held-out figure (balanced accuracy, its spread over the splits, AUC)."""
    if entry is None:
        return None
    return {k: entry[k] for k in ("heldout_balanced_accuracy", "heldout_balanced_accuracy_std",
                                  "heldout_auc") if k in entry}
