"""The embedded demo corpus and its matched-twin probe: deterministic, placements as the layout
says and recorded frame by frame, one paste path, probe held out and confound-free."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from models.neurons.image_stats import CONFOUND_LIMIT, confound_balanced_accuracy
from pipeline import demo_corpus as dc
from pipeline import demo_probe as dp
from pipeline.decode import DecodeConfig
from pipeline.demo_paste import _weighted_stats, mask, paste
from pipeline.probe import builtin_probe
from tests.pipeline.conftest import cv2_frames


def _digest(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def _check_placements(meta: dict, h: int, w: int, layout: dc.Layout) -> None:
    """Kinds in proportion, LFW ids of the video sets, every box inside the kept square."""
    left = (w - h) // 2
    n_total = sum(v["n_frames"] for v in meta["videos"])
    counts = {"face": 0, "non_face": 0}
    for v in meta["videos"]:
        for p in v["placements"]:
            ids = dc.VIDEO_FACES if p["kind"] == "face" else dc.VIDEO_NON_FACES
            assert p["patch"] in ids and len(p["boxes"]) == p["stop"] - p["start"]
            counts[p["kind"]] += p["stop"] - p["start"]
            for y0, x0, y1, x1 in p["boxes"]:
                side = y1 - y0
                assert x1 - x0 == side and 0 <= y0 and y1 <= h and left <= x0 and x1 <= left + h
                assert layout.scale[0] * h - 1 <= side <= layout.scale[1] * h + 1
            sides = [b[2] - b[0] for b in p["boxes"]]
            centres = [(b[1] + b[3]) / 2 for b in p["boxes"]]
            assert len(set(sides)) > 1 or len(set(centres)) > 1  # it drifts or changes size
    assert abs(counts["face"] / n_total - layout.face_fraction) < 0.08
    assert abs(counts["non_face"] / n_total - layout.non_face_fraction) < 0.08


def test_deterministic_videos_with_every_placement_recorded(tmp_path):
    a = dc.write_demo_videos(tmp_path / "a", seed=1, n_videos=3, n_frames=120, size=48)
    b = dc.write_demo_videos(tmp_path / "b", seed=1, n_videos=3, n_frames=120, size=48)
    c = dc.write_demo_videos(tmp_path / "c", seed=2, n_videos=3, n_frames=120, size=48)
    assert _digest(a) == _digest(b) and _digest(a) != _digest(c)
    frames = cv2_frames(a[0])
    assert len(frames) == 120 and frames[0].shape == (48, 64, 3)
    meta = json.loads((tmp_path / "a" / dc.CORPUS_JSON).read_text())
    used_photos = {v["photo"] for v in meta["videos"]}
    assert used_photos <= set(dc.TRAIN_PHOTOS) and not used_photos & set(dc.HELD_OUT_PHOTOS)
    _check_placements(meta, 48, 64, dc.Layout())
    # a frame differs from the bare pan/zoom of its photo inside its box only
    v = meta["videos"][0]
    photo = dc.bundled_photo(v["photo"])
    labels = dc.frame_labels(v, 120)
    inside, outside = [], []
    for t, frame in enumerate(frames):
        bg = dc._camera(photo, t / 119, v["camera"], 64, 48)[:, :, ::-1]  # RGB -> BGR
        err = np.abs(frame.astype(int) - bg).max(axis=2) > 40
        kind, box = labels[t]
        if kind == "none":
            outside.append(err.mean())
            continue
        y0, x0, y1, x1 = box
        inside.append(err[y0:y1, x0:x1].mean())
        err[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = False
        outside.append(err.mean())
    assert np.mean(inside) > 0.02 and np.mean(outside) < 0.01
    kinds = dc.frame_kinds([f"{a[0]}#sha", str(a[0])], [3, 50])
    assert kinds == [labels[3][0], labels[50][0]]
    assert dc.frame_kinds([f"a/{a[0].name}#sha"], [50], root=tmp_path) == [labels[50][0]]
    assert {k for k, _ in labels} == {"face", "non_face", "none"}
    assert dc.frame_kinds([str(tmp_path / "elsewhere.mp4")], [0]) is None
    # a relative source climbing out of the dataset folder reads no record out there
    assert dc.frame_kinds([f"../{tmp_path.name}/a/{a[0].name}#sha"], [50],
                          root=tmp_path / "a") is None
    # appearances: one id per placement's stretch and per run of bare frames
    ids = dc.frame_appearances([str(a[0])] * 120, list(range(120)))
    runs = [t for t in range(120) if t == 0 or labels[t][0] != labels[t - 1][0]
            or (labels[t][0] != "none" and ids[t] != ids[t - 1])]
    assert len(set(ids)) == len(runs)  # a new id exactly where a stretch starts
    assert all((ids[t] == ids[t - 1]) == (t not in runs) for t in range(1, 120))
    assert {ids[t] for t in range(120) if labels[t][0] != "none"} == {
        f"{a[0].name}:p{k}" for k in range(len(v["placements"]))}
    assert dc.frame_appearances([str(tmp_path / "elsewhere.mp4")], [0]) is None


@pytest.mark.parametrize("damage", [{"n_frames": None}, {"n_frames": "120"},
                                    {"placements": 3}, {"placements": [{"start": 0}]}])
def test_a_damaged_corpus_record_gives_no_labels_not_an_error(tmp_path, damage):
    out = tmp_path / "corpus"
    video = dc.write_demo_videos(out, seed=1, n_videos=1, n_frames=30, size=48)[0]
    meta = json.loads((out / dc.CORPUS_JSON).read_text())
    meta["videos"][0].update(damage)
    if damage.get("n_frames", 0) is None:
        del meta["videos"][0]["n_frames"]
    (out / dc.CORPUS_JSON).write_text(json.dumps(meta))
    assert dc.corpus_labels([f"corpus/{video.name}#sha"], [3], root=tmp_path) == (None, None)


@pytest.mark.parametrize("name", ["ABSOLUTE", "../outside.mp4"])
def test_a_corpus_record_naming_a_file_elsewhere_is_written_again(tmp_path, name):
    """``demo_corpus.json`` naming a video outside its folder: the corpus is written again and
    only files of the folder come back."""
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"not a corpus video")
    out = tmp_path / "corpus"
    first = dc.write_demo_videos(out, seed=1, n_videos=2, n_frames=30, size=48)
    meta = json.loads((out / dc.CORPUS_JSON).read_text())
    meta["videos"][0]["file"] = str(outside) if name == "ABSOLUTE" else name
    (out / dc.CORPUS_JSON).write_text(json.dumps(meta))
    again = dc.write_demo_videos(out, seed=1, n_videos=2, n_frames=30, size=48)
    assert again == first and all(p.parent == out for p in again)


def test_paste_gives_any_patch_the_region_mean_and_spread():
    rng = np.random.default_rng(0)
    lfw = dc.lfw_faces()
    image = rng.integers(40, 200, (64, 64, 3)).astype(np.uint8)
    box = (10, 12, 42, 44)
    a = mask(32)
    region = image[10:42, 12:44].astype(np.float64).mean(2)
    want = _weighted_stats(region, a)
    for patch in (lfw[3], lfw[120], (lfw[7] * 0.2 + 200).astype(np.uint8)):  # face, non-face,
        out = image.copy()  # and a bright flat face
        paste(out, patch, box)
        got = _weighted_stats(out[10:42, 12:44].astype(np.float64).mean(2), a)
        assert abs(got[0] - want[0]) < 2.0 and abs(got[1] - want[1]) < 0.15 * want[1]
        assert np.array_equal(out[:10], image[:10])  # nothing outside the box
    with pytest.raises(ValueError, match="not a square inside"):
        paste(image.copy(), lfw[0], (50, 50, 70, 70))


def test_probe_is_matched_twins_of_unseen_data():
    p = dp.probe_set(render=48)
    assert p.images.shape == (600, 48, 48, 3) and p.images.dtype == np.uint8
    assert np.bincount(p.labels).tolist() == [200, 200, 200]
    assert set(p.groups.tolist()) == set(dc.PROBE_FACES)
    assert not set(dc.PROBE_FACES) & (set(dc.VIDEO_FACES) | set(dc.VIDEO_NON_FACES))
    assert not {i + dp.TWIN_OFFSET for i in dc.PROBE_FACES} - set(dc.PROBE_NON_FACES)
    assert set(p.parts[np.isin(p.groups, list(dp.TUNE_FACES))]) == {"tune"}
    assert set(p.parts[~np.isin(p.groups, list(dp.TUNE_FACES))]) == {"report"}
    face, twin, bare = p.images[0::3], p.images[1::3], p.images[2::3]
    assert (p.boxes[0::3] == p.boxes[1::3]).all() and (p.boxes[1::3] == p.boxes[2::3]).all()
    for f, t, b, (y0, x0, y1, x1) in zip(face[:8], twin[:8], bare[:8], p.boxes[0::3][:8],
                                         strict=True):
        keep = np.ones(b.shape[:2], bool)
        keep[y0:y1, x0:x1] = False
        assert np.array_equal(f[keep], b[keep]) and np.array_equal(t[keep], b[keep])
        assert not np.array_equal(f, t)
    assert np.array_equal(dp.probe_set(render=48).images, p.images)


def test_builtin_probe_is_confound_free_on_both_parts():
    """Four image statistics, cross-validated by identity, do not separate faces from twins."""
    probe = builtin_probe(DecodeConfig(input_size=64, channels=1))
    assert probe.images.shape == (600, 1, 64, 64) and probe.negatives == ("non_faces",)
    assert probe.classes == dp.CLASSES and probe.boxes.max() <= 64
    for part in ("tune", "report"):
        q = probe.part(part)
        keep = q.labels < 2
        ba = confound_balanced_accuracy(q.images[keep], (q.labels[keep] == 0).astype(int),
                                        q.groups[keep])
        assert ba <= CONFOUND_LIMIT, (part, ba)
