"""Every top-stage unit's best frames in the training corpus, from ``catneuron evaluate``'s one
pass over it, kept in ``RUN/corpus_tops.json`` for ``catneuron visualize``.

evaluate runs every training frame through the stack once to find the headline unit's top frames
(its corpus share). The top stage computes all its units' responses to a frame together, so the
same pass gives every unit its top frames at no extra cost. visualize needs exactly these (its
top-k scan of the dataset) and takes them from the file instead of running the dataset through
the stack a second time, when the file answers its question:

- it was written for this ``model.pt``: the SHA-256 of its bytes (a re-trained run makes the
  file stale; a copied run folder, whatever its files' times, does not);
- it covers the whole dataset visualize scans: the same shard names with the same row counts;
- it holds at least ``--top-k`` frames per unit, or every frame of the dataset.

Otherwise visualize scans as before. Frames are numbered as visualize numbers them
(``shard_index << 32 | row``, :mod:`cluster.topk`). Only layers of at most :data:`MAX_UNITS`
units are kept (the file stays small: ``units x k`` ids and responses). The file is JSON:
nothing in it runs and no path in it is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from cluster.topk import ROW_BITS
from models.neurons.topk import RunningTopK
from pipeline import storage

FILE = "corpus_tops.json"
KEPT = 100  # frames per unit written to the file: visualize's pool (10 x --top-k) up to this
MAX_UNITS = 8192  # wider layers are left to visualize's own scan
SCHEMA = 2  # 2: the model's digest (``model_sha256``) in place of the files' times


def model_digest(model: str | os.PathLike) -> str:
    """The SHA-256 (hex) of the bytes of ``model`` (a ``model.pt``: path or URI): what a
    corpus_tops.json was written for."""
    return hashlib.sha256(storage.read_bytes(model)).hexdigest()


@torch.no_grad()
def corpus_tops(stack, frames: np.ndarray, stage: int, k: int,
                batch: int = 256) -> dict[str, RunningTopK]:
    """Per layer of ``stage`` (at most :data:`MAX_UNITS` units), the top ``k`` frames of every
    unit over uint8 ``frames`` (N, C, H, W); ids are row indices into ``frames``. One up-pass:
    the stage's maps from what it reads (``RBMStack.reads``), no other stage's own output."""
    st = stack.stages[stage]
    tops: dict[str, RunningTopK] = {}
    x = torch.from_numpy(frames)
    for i in range(0, len(x), batch):
        maps = st.maps(stack.reads(x[i:i + batch], stage))
        ids = torch.arange(i, i + len(x[i:i + batch]))
        for layer, m in maps.items():
            r = m.flatten(1)
            if r.shape[1] > MAX_UNITS:
                continue
            tops.setdefault(layer, RunningTopK(r.shape[1], k)).update(r, ids)
    return tops


def frame_ids(rows: Sequence[int], n: int) -> np.ndarray:
    """Ids (``shard_index << 32 | row``) of the first ``n`` frames of shards of ``rows`` frames
    each, read in order."""
    ids = np.concatenate([(s << ROW_BITS) + np.arange(r, dtype=np.int64)
                          for s, r in enumerate(rows)] or [np.zeros(0, np.int64)])
    if len(ids) < n:
        raise ValueError(f"the shards hold {len(ids)} frames, fewer than the {n} scanned")
    return ids[:n]


def to_json(stage: int, tops: dict[str, RunningTopK], shards: Sequence[str],
            rows: Sequence[int], model_sha256: str, kept: int = KEPT) -> str:
    """The file's text: the first ``kept`` frames per unit of ``tops``, whose ids are row
    indices into every frame of ``shards`` (``rows`` frames each) read in order, ranked by the
    model whose ``model.pt`` has the digest ``model_sha256`` (:func:`model_digest`)."""
    ids = frame_ids(rows, int(sum(rows)))
    doc = {"schema": SCHEMA, "model_sha256": model_sha256, "stage": stage,
           "shards": [Path(s).name for s in shards],
           "rows": [int(r) for r in rows],
           "layers": {layer: {"ids": ids[t.ids[:, :kept].numpy()].tolist(),
                              "values": t.values[:, :kept].tolist()}
                      for layer, t in tops.items()}}
    return json.dumps(doc)


def read(run: Path, shards: Sequence[str], rows: Sequence[int], k: int, *,
         units: Mapping[tuple[int, str], int] | None = None
         ) -> dict[tuple[int, str], RunningTopK]:
    """``{(stage, layer): top k}`` from ``run``'s file when it answers visualize's scan of
    ``shards`` (``rows`` frames each) for ``k`` frames a unit; ``{}`` when it does not (absent,
    written for another ``model.pt``, another dataset, too few frames, or unreadable). With
    ``units`` (``{(stage, layer): unit count}``) only those layers are given, and only where the
    file holds one row per unit: a layer of another width (a damaged file) is left to the scan."""
    path = run / FILE
    try:
        doc = json.loads(path.read_text())
        if (doc.get("schema") != SCHEMA or doc["model_sha256"] != model_digest(run / "model.pt")
                or doc["shards"] != [Path(s).name for s in shards]
                or doc["rows"] != [int(r) for r in rows]):
            return {}
        out = {}
        for layer, d in doc["layers"].items():
            key = (int(doc["stage"]), str(layer))
            top = _layer_tops(d, rows, k)
            if top is None:
                return {}
            if units is None or units.get(key) == top.ids.shape[0]:
                out[key] = top
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}  # AttributeError: a document or a "layers" that is no JSON object;
        # RecursionError: one nested too deep to parse


def _layer_tops(d: dict, rows: Sequence[int], k: int) -> RunningTopK | None:
    """One layer's top ``k`` of the file's ``{"ids", "values"}``; None when its ids and values
    disagree in shape, hold too few frames or name a frame the dataset does not hold."""
    ids = torch.tensor(d["ids"], dtype=torch.long)  # (units, kept)
    values = torch.tensor(d["values"], dtype=torch.float32)  # (units, kept)
    if ids.ndim != 2 or ids.shape != values.shape or ids.shape[1] < min(k, sum(rows)):
        return None
    shard, row = ids >> ROW_BITS, ids & ((1 << ROW_BITS) - 1)
    if bool((ids < 0).any() or (shard >= len(rows)).any()
            or (row >= torch.tensor(rows)[shard.clamp(max=len(rows) - 1)]).any()):
        return None  # a frame the dataset does not hold
    top = RunningTopK(ids.shape[0], k)
    top.merge(values[:, :k], ids[:, :k])
    return top


def read_rows(run: Path, shards: Sequence[str], rows: Sequence[int], stage: int, k: int
              ) -> dict[str, RunningTopK] | None:
    """Stage ``stage``'s layers of ``run``'s file (:func:`read`) with each frame's id its row
    in the frames of ``shards`` read in order (:func:`corpus_tops`'s ids); None when the file
    does not answer for ``k`` frames a unit or holds another stage."""
    layers = {layer: top for (s, layer), top in read(run, shards, rows, k).items() if s == stage}
    if not layers:
        return None
    first = torch.tensor(np.cumsum([0, *rows[:-1]]), dtype=torch.long)
    for top in layers.values():
        top.ids = first[top.ids >> ROW_BITS] + (top.ids & ((1 << ROW_BITS) - 1))
    return layers


def select(tops: RunningTopK, units: Sequence[int]) -> RunningTopK:
    """The rows of ``units`` (flat indices) of a whole layer's top-k, in that order."""
    out = RunningTopK(len(units), tops.k)
    rows = torch.as_tensor(list(units), dtype=torch.long)
    out.merge(tops.values[rows], tops.ids[rows])
    return out
