"""How much image statistics alone give away, on the built-in probe and in the demo corpus.

For each set, the cross-validated balanced accuracy of a logistic regression on four image
statistics (mean, standard deviation, gradient energy, Laplacian variance:
``models.neurons.image_stats``), folds grouped so that an image and its twin (probe) or one
video's frames (corpus) are never split:

- the probe's faces against their twins, tuning and reporting parts, as shipped (each patch
  given the mean and spread of the region it covers) and with the patches pasted as they are;
- the probe's faces against the bare backgrounds (what the twins control for);
- the demo dataset's face frames against its non-face-patch frames, and against bare frames.

    python benchmarks/face_confound.py --data runs/demo/data \
        --out benchmarks/results/face_confound.json

Prints the JSON, and writes it to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import cli, emit  # noqa: E402

from models.neurons.image_stats import confound_balanced_accuracy  # noqa: E402
from pipeline.decode import DecodeConfig  # noqa: E402
from pipeline.probe import builtin_probe  # noqa: E402


def probe_figures(size: int) -> dict:
    """Faces vs twins (both parts, matched and not) and faces vs bare backgrounds."""
    out = {}
    for match in (True, False):
        probe = builtin_probe(DecodeConfig(input_size=size, channels=1), match=match)
        for part in ("tune", "report"):
            q = probe.part(part)
            for neg, name in ((1, "twins"), (2, "backgrounds")):
                if neg == 2 and not match:
                    continue
                keep = np.isin(q.labels, [0, neg])
                ba = confound_balanced_accuracy(q.images[keep], (q.labels[keep] == 0) * 1,
                                                q.groups[keep])
                key = f"faces_vs_{name}_{part}" + ("" if match else "_unmatched")
                out[key] = round(ba, 4)
    return out


def corpus_figures(data: str) -> dict:
    """Face frames vs non-face-patch frames and vs bare frames of the ingested demo corpus."""
    import pyarrow.parquet as pq

    from pipeline.demo_corpus import frame_kinds
    from pipeline.reader import list_shards, read_frames

    frames = read_frames(data)
    cols = [pq.read_table(p, columns=["source", "frame_index"]) for p in list_shards(data)]
    sources = [s for t in cols for s in t.column("source").to_pylist()]
    index = [i for t in cols for i in t.column("frame_index").to_pylist()]
    kinds = np.asarray(frame_kinds(sources, index, data))
    videos = np.unique(sources, return_inverse=True)[1]
    out = {"n_frames": int(len(frames)),
           "kind_counts": {k: int((kinds == k).sum()) for k in ("face", "non_face", "none")}}
    for neg in ("non_face", "none"):
        keep = np.isin(kinds, ["face", neg])
        out[f"face_vs_{neg}_frames"] = round(confound_balanced_accuracy(
            frames[keep], (kinds[keep] == "face") * 1, videos[keep]), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset from catneuron ingest --demo")
    p.add_argument("--size", type=int, default=64, help="probe side (the model's input) [64]")
    p.add_argument("--out", help="write the JSON here as well as to stdout")
    a = p.parse_args(argv)
    rec = {"data": a.data, "probe": probe_figures(a.size), "corpus": corpus_figures(a.data)}
    emit(rec, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
