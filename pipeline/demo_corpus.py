"""The embedded demo corpus: real video files composed from data that scikit-image ships.

Each video pans and zooms across one of scikit-image's photographs (``skimage.data``). Over it,
for about a third of the frames each, appear faces 0-49 of its bundled LFW subset
(``skimage.data.lfw_subset()``: 200 grey 25x25 crops, 0-99 faces, 100-199 non-faces) and
non-face patches 100-149 of the same subset; the last third is bare. Each appearance lasts
``Layout.segment`` frames, anywhere in the central square that ingest keeps, its side 30-70 %
of that square's, drifting and changing size. Faces and non-face patches go through the same
paste path (:func:`pipeline.demo_paste.paste`: same resampling, same mask, the covered region's
mean and spread), so being a pasted, softer square tells nothing. This is the "cat neuron"
set-up of Le et al. (ICML 2012) in miniature: unlabelled frames in which faces are common but
not everywhere.

The corpus record (``demo_corpus.json``) keeps every placement: frame range, kind (``"face"`` /
``"non_face"``), LFW patch id and the box of every frame, so every frame has a label
(:func:`frame_labels`). The videos never show what the probe (:mod:`pipeline.demo_probe`) is
made of: faces 50-99, non-faces 150-199 and :data:`HELD_OUT_PHOTOS`.

Deterministic by seed; ten videos take a few seconds to write.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from pipeline.demo_paste import paste
from pipeline.shards import is_plain_name

#: Photographs used as video backgrounds.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "camera", "cat", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "text", "cell", "colorwheel",
)
#: Photographs never used in the videos; the probe's backgrounds.
HELD_OUT_PHOTOS: tuple[str, ...] = ("coffee", "rocket", "clock", "brick")
#: LFW-subset indices: faces and non-face patches shown in the videos, and those kept for the
#: probe (a probe face ``i`` is paired with the non-face ``i + 100``).
VIDEO_FACES = range(0, 50)
VIDEO_NON_FACES = range(100, 150)
PROBE_FACES = range(50, 100)
PROBE_NON_FACES = range(150, 200)
CORPUS_JSON = "demo_corpus.json"


@dataclass(frozen=True)
class Layout:
    """How faces and non-face patches appear in the videos.

    Attributes
    ----------
    face_fraction, non_face_fraction : shares of the frames showing a face / a non-face patch
        (the rest is bare).
    scale : (min, max) patch side as a fraction of the central square's side; each appearance
        moves between two draws from this range, its box always inside the square.
    segment : frames per appearance (and per bare stretch).
    """

    face_fraction: float = 1 / 3
    non_face_fraction: float = 1 / 3
    scale: tuple[float, float] = (0.3, 0.7)
    segment: int = 20


def bundled_photo(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as uint8 RGB (H, W, 3)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def lfw_faces() -> np.ndarray:
    """The LFW subset as uint8 (200, 25, 25)."""
    import skimage.data

    return (skimage.data.lfw_subset() * 255).round().astype(np.uint8)


def _kinds(rng: np.random.Generator, n_seg: int, layout: Layout) -> list[str | None]:
    """Shuffled segment kinds in the layout's proportions (``None`` = bare)."""
    n_face = int(round(layout.face_fraction * n_seg))
    n_non = int(round(layout.non_face_fraction * n_seg))
    kinds = ["face"] * n_face + ["non_face"] * n_non + [None] * (n_seg - n_face - n_non)
    return [kinds[i] for i in rng.permutation(n_seg)]


def _end(rng: np.random.Generator, sq: int, layout: Layout) -> tuple[float, float, float]:
    """One end of an appearance: side and centre (x, y) in pixels of an ``sq`` square, such
    that the box lies inside it."""
    side = float(rng.uniform(*layout.scale)) * sq
    cx, cy = rng.uniform(side / 2, sq - side / 2, 2)
    return side, float(cx), float(cy)


def _placements(rng: np.random.Generator, n_frames: int, h: int, w: int,
                layout: Layout) -> list[dict]:
    """Appearances of one video: frame range, kind, LFW id and the box of every frame.

    Boxes are ``[y0, x0, y1, x1]`` in frame pixels, inside the central ``h x h`` square (the
    part ingest keeps); size and centre move linearly between two random ends, and as the
    constraint ``side / 2 <= centre <= h - side / 2`` is convex, every frame's box stays inside.
    """
    n_seg = max(1, n_frames // layout.segment)
    bounds = np.linspace(0, n_frames, n_seg + 1).round().astype(int)
    left = (w - h) // 2
    out = []
    for k, kind in enumerate(_kinds(rng, n_seg, layout)):
        if kind is None:
            continue
        start, stop = int(bounds[k]), int(bounds[k + 1])
        ids = VIDEO_FACES if kind == "face" else VIDEO_NON_FACES
        e0, e1 = _end(rng, h, layout), _end(rng, h, layout)
        boxes = []
        for t in range(start, stop):
            u = (t - start) / max(1, stop - start - 1)
            side, cx, cy = (a + (b - a) * u for a, b in zip(e0, e1, strict=True))
            side = int(round(side))
            y0 = int(np.clip(round(cy - side / 2), 0, h - side))
            x0 = int(np.clip(round(cx - side / 2), 0, h - side)) + left
            boxes.append([y0, x0, y0 + side, x0 + side])
        out.append({"start": start, "stop": stop, "kind": kind, "patch": int(rng.choice(ids)),
                    "boxes": boxes})
    return out


def frame_labels(video: dict, n_frames: int) -> list[tuple[str, list[int] | None]]:
    """``(kind, box)`` of every frame of one video's record: ``"face"`` / ``"non_face"`` with
    its ``[y0, x0, y1, x1]`` box in frame pixels, or ``("none", None)`` for a bare frame."""
    labels: list[tuple[str, list[int] | None]] = [("none", None)] * n_frames
    for p in video["placements"]:
        for t, box in zip(range(p["start"], p["stop"]), p["boxes"], strict=True):
            labels[t] = (p["kind"], box)
    return labels


def _camera(photo: np.ndarray, t: float, path: dict, out_w: int, out_h: int) -> np.ndarray:
    """The frame at time ``t`` in [0, 1] of a linear pan + zoom over ``photo``."""
    ph, pw = photo.shape[:2]
    zoom = path["zoom0"] + (path["zoom1"] - path["zoom0"]) * t
    # window: the largest out_w:out_h rectangle that fits, shrunk by the zoom factor
    base = min(pw / out_w, ph / out_h)
    cw, ch = out_w * base / zoom, out_h * base / zoom
    cx = path["x0"] + (path["x1"] - path["x0"]) * t
    cy = path["y0"] + (path["y1"] - path["y0"]) * t
    x = np.clip(cx * pw - cw / 2, 0, pw - cw)
    y = np.clip(cy * ph - ch / 2, 0, ph - ch)
    m = np.array([[cw / out_w, 0, x], [0, ch / out_h, y]], np.float64)
    return cv2.warpAffine(photo, m, (out_w, out_h), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def _open_writer(path_stem: Path, fps: float, w: int, h: int) -> tuple[cv2.VideoWriter, Path]:
    """An MP4 (mp4v) writer, or MJPG AVI where this OpenCV build cannot write MP4."""
    for fourcc, ext in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        p = path_stem.with_suffix(ext)
        tmp = p.with_name(f".{p.stem}.tmp{ext}")
        wr = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
        if wr.isOpened():
            return wr, p
        wr.release()
        tmp.unlink(missing_ok=True)
    raise RuntimeError("OpenCV cannot write MP4 or AVI video here; install opencv-python-headless")


def write_demo_videos(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    n_videos: int = 10,
    size: int = 96,
    n_frames: int = 300,
    fps: float = 25.0,
    layout: Layout = Layout(),
) -> list[Path]:
    """Write the demo videos into ``out_dir`` and return their paths.

    Parameters
    ----------
    out_dir:
        Folder for the videos (created) and ``demo_corpus.json`` (what each video shows: photo,
        camera path, and every placement: frame range, kind, LFW id, box per frame).
    seed:
        Seeds every random choice; the same seed writes the same videos.
    n_videos, n_frames, fps:
        Corpus size: ``n_videos * n_frames`` frames in all (default 3,000).
    size:
        Frame height; frames are ``4/3 * size`` wide (landscape, as most footage), so ingest's
        centre crop and resize are exercised.
    layout:
        How often and how large faces and non-face patches appear (:class:`Layout`).

    Videos already present from an earlier call with the same arguments are kept.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = size, (size * 4 // 3) // 2 * 2
    args = {"seed": seed, "n_videos": n_videos, "size": size, "n_frames": n_frames, "fps": fps,
            "layout": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in asdict(layout).items()}}
    meta_path = out / CORPUS_JSON
    if meta_path.is_file():
        meta = read_corpus_record(meta_path)
        names = [v.get("file") if isinstance(v, dict) else None for v in meta["videos"]]
        paths = [out / name for name in names if is_plain_name(name)]
        if (meta.get("args") == args and len(paths) == len(names) == n_videos
                and all(p.is_file() and p.stat().st_size for p in paths)):
            return paths
    rng = np.random.default_rng(seed)
    lfw = lfw_faces()
    photos = {name: bundled_photo(name) for name in TRAIN_PHOTOS}
    order = [TRAIN_PHOTOS[i] for i in rng.permutation(len(TRAIN_PHOTOS))]
    paths, records = [], []
    for v in range(n_videos):
        name = order[v % len(order)]
        cam = {
            "zoom0": float(rng.uniform(1.0, 2.5)), "zoom1": float(rng.uniform(1.0, 2.5)),
            "x0": float(rng.uniform(0.2, 0.8)), "x1": float(rng.uniform(0.2, 0.8)),
            "y0": float(rng.uniform(0.2, 0.8)), "y1": float(rng.uniform(0.2, 0.8)),
        }
        placements = _placements(rng, n_frames, h, w, layout)
        record = {"file": "", "photo": name, "camera": cam, "n_frames": n_frames,
                  "placements": placements}
        path = _write_video(out / f"demo-{seed}-{v:02d}", photos[name], lfw, record, fps, w, h)
        record["file"] = path.name
        paths.append(path)
        records.append(record)
    tmp_meta = out / f".{CORPUS_JSON}.tmp"
    tmp_meta.write_text(json.dumps({"args": args, "held_out_photos": list(HELD_OUT_PHOTOS),
                                    "videos": records}))
    os.replace(tmp_meta, meta_path)
    return paths


def _write_video(stem: Path, photo: np.ndarray, lfw: np.ndarray, record: dict, fps: float,
                 w: int, h: int) -> Path:
    """Render one video's frames (camera over ``photo``, then its placements) to a file."""
    n = record["n_frames"]
    labels = frame_labels(record, n)
    patch_at = {t: p["patch"] for p in record["placements"] for t in range(p["start"], p["stop"])}
    writer, path = _open_writer(stem, fps, w, h)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        for t in range(n):
            rgb = _camera(photo, t / max(1, n - 1), record["camera"], w, h)
            if labels[t][1] is not None:
                paste(rgb, lfw[patch_at[t]], tuple(labels[t][1]))
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    os.replace(tmp, path)
    return path


def frame_kinds(sources: list[str], frame_indices: list[int],
                root: str | os.PathLike = ".") -> list[str] | None:
    """The kind (``"face"``, ``"non_face"``, ``"none"``) of dataset rows given by their video
    ``source`` (a path, relative ones under the dataset folder ``root``, or
    ``path#content-hash``) and ``frame_index``, from the ``demo_corpus.json`` beside each
    video; None when a video has no such record (not a demo video, or a remote one)."""
    return corpus_labels(sources, frame_indices, root)[0]


def frame_appearances(sources: list[str], frame_indices: list[int],
                      root: str | os.PathLike = ".") -> list[str] | None:
    """The appearance each row belongs to, as :func:`frame_kinds` reads them: one id per
    pasted patch's stretch of frames (``"VIDEO:p3"``, its placement 3) or per run of bare
    frames (``"VIDEO:b120"``, the run starting at frame 120). Consecutive frames of one
    appearance are near copies, so counting appearances rather than frames says how many
    independent sightings a set of top frames holds. None as for :func:`frame_kinds`."""
    return corpus_labels(sources, frame_indices, root)[1]


def corpus_labels(sources: list[str], frame_indices: list[int], root: str | os.PathLike = "."
                  ) -> tuple[list[str], list[str]] | tuple[None, None]:
    """(:func:`frame_kinds`, :func:`frame_appearances`) of the rows from one read of each
    video's corpus record; (None, None) as for :func:`frame_kinds`."""
    rows = _corpus_rows(sources, frame_indices, root)
    if rows is None:
        return None, None
    return ([rec["labels"][t][0] for _, t, rec in rows],
            [f"{name}:{rec['appearances'][t]}" for name, t, rec in rows])


def _corpus_rows(sources: list[str], frame_indices: list[int], root: str | os.PathLike
                 ) -> list[tuple[str, int, dict]] | None:
    """``(video name, frame index, its record)`` per row; None if any row's video has no
    corpus record or the index is outside it. A relative source lies under the dataset folder
    (the demo's ``_videos/NAME.mp4#digest``): one that climbs out with ``..`` has no record
    (no ``demo_corpus.json`` outside the folder is read through it); an absolute one is the
    video file ``catneuron ingest`` was given."""
    records: dict[str, dict | None] = {}
    out = []
    for src, t in zip(sources, frame_indices, strict=True):
        rel = PurePosixPath(str(src).split("#", 1)[0])
        if ".." in rel.parts:
            return None
        path = Path(root) / rel
        if path.name not in records:
            records[path.name] = _video_record(path)
        rec = records[path.name]
        if rec is None or not 0 <= t < rec["n_frames"]:
            return None
        out.append((path.name, t, rec))
    return out


def read_corpus_record(path: Path) -> dict:
    """A folder's ``demo_corpus.json``: ``{"args", "videos": [...]}``; no videos when it is
    missing or damaged (the corpus is then written again). A video's ``file`` is used only as
    a plain file name of the folder (:func:`pipeline.shards.is_plain_name`)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), list):
        return {"args": None, "videos": []}
    return meta


def _video_record(video: Path) -> dict | None:
    """``{"n_frames", "labels", "appearances"}`` of one demo video from its folder's corpus
    record (``appearances``: ``"p<k>"`` for placement k's frames, ``"b<start>"`` for a run of
    bare frames starting at ``start``)."""
    for v in read_corpus_record(video.parent / CORPUS_JSON)["videos"]:
        if isinstance(v, dict) and v.get("file") == video.name and "placements" in v:
            try:
                n = v["n_frames"]
                return {"n_frames": n, "labels": frame_labels(v, n),
                        "appearances": _appearances(v, n)}
            except (KeyError, TypeError, ValueError, IndexError, AttributeError):
                return None  # a damaged record: the corpus figures are left out
    return None


def _appearances(video: dict, n_frames: int) -> list[str]:
    """Per frame of one video's record: ``"p<k>"`` inside placement k, else ``"b<start>"``
    for the run of bare frames that starts at frame ``start``."""
    out: list[str | None] = [None] * n_frames
    for k, p in enumerate(video["placements"]):
        out[p["start"]:p["stop"]] = [f"p{k}"] * (p["stop"] - p["start"])
    for t in range(n_frames):
        if out[t] is None:
            out[t] = out[t - 1] if t and out[t - 1].startswith("b") else f"b{t}"
    return out
