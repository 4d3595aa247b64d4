"""The embedded demo corpus: deterministic, faces as its FaceLayout says, probe held out."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np

from pipeline import demo_corpus as dc
from tests.pipeline.conftest import cv2_frames


def _digest(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_deterministic_real_videos_with_faces_as_the_layout_says(tmp_path):
    a = dc.write_demo_videos(tmp_path / "a", seed=1, n_videos=3, n_frames=60, size=48)
    b = dc.write_demo_videos(tmp_path / "b", seed=1, n_videos=3, n_frames=60, size=48)
    c = dc.write_demo_videos(tmp_path / "c", seed=2, n_videos=3, n_frames=60, size=48)
    assert _digest(a) == _digest(b) and _digest(a) != _digest(c)
    frames = cv2_frames(a[0])
    assert len(frames) == 60 and frames[0].shape == (48, 64, 3)
    meta = json.loads((tmp_path / "a" / dc.CORPUS_JSON).read_text())
    used_photos = {v["photo"] for v in meta["videos"]}
    assert used_photos <= set(dc.TRAIN_PHOTOS) and not used_photos & set(dc.HELD_OUT_PHOTOS)
    layout = dc.FaceLayout()
    for v in meta["videos"]:
        n_face = sum(s["stop"] - s["start"] for s in v["faces"])
        assert abs(n_face / 60 - layout.fraction) < 0.05
        assert all(s["face"] in dc.VIDEO_FACES for s in v["faces"])
        scales = [x for s in v["faces"] for x in s["scale"]]
        assert min(scales) >= layout.scale[0] and max(scales) <= layout.scale[1]
        centres = [x for s in v["faces"] for x in (*s["xy0"], *s["xy1"])]
        assert min(centres) >= layout.centre[0] and max(centres) <= layout.centre[1]
    # frames without a face are the pan/zoom of the photo (up to codec error); face frames differ
    v = meta["videos"][0]
    photo = dc._photo(v["photo"])
    in_face = {t for s in v["faces"] for t in range(s["start"], s["stop"])}
    err = []
    for t, frame in enumerate(frames):
        bg = cv2.cvtColor(dc._camera(photo, t / 59, v["camera"], 64, 48), cv2.COLOR_RGB2BGR)
        err.append(np.abs(frame.astype(int) - bg).max(axis=2).astype(float))
    face_err = np.mean([np.mean(e > 40) for t, e in enumerate(err) if t in in_face])
    bg_err = np.mean([np.mean(e > 40) for t, e in enumerate(err) if t not in in_face])
    assert face_err > 0.01 and bg_err < 0.01 and face_err > 5 * bg_err


def test_probe_set_is_disjoint_from_the_videos():
    x, y = dc.probe_set(size=32)
    assert x.shape == (250, 1, 32, 32) and x.dtype == np.uint8
    assert y.tolist() == [1] * 50 + [0] * 200
    lfw = (__import__("skimage.data").data.lfw_subset() * 255).round().astype(np.uint8)
    assert np.array_equal(x[0, 0], cv2.resize(lfw[50], (32, 32)))  # face 50 is the first probe
    assert not set(dc.VIDEO_FACES) & set(dc.PROBE_FACES)
    assert not set(dc.TRAIN_PHOTOS) & set(dc.HELD_OUT_PHOTOS)
    x2, _ = dc.probe_set(size=32)
    assert np.array_equal(x, x2)
