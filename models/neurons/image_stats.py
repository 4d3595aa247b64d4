"""Four hand-made numbers per image, and how well they alone separate a probe's classes.

A probe on which brightness, contrast or sharpness gives the positives away cannot tell a unit
that detects the class from one that measures those. Per grey image ``g`` (mean of the
channels, float in grey levels):

- ``mean``: ``mean(g)``;
- ``std``: ``std(g)``;
- ``gradient_energy``: ``mean(gx^2 + gy^2)`` with 3x3 Sobel derivatives (sharpness);
- ``laplacian_variance``: ``var(Laplacian(g))`` (fine detail; the usual focus measure).

:func:`confound_balanced_accuracy` is the cross-validated balanced accuracy of a logistic
regression on these four (standardised): near 0.5, the probe's classes do not differ in them;
above :data:`CONFOUND_LIMIT`, a unit's score on the probe may be these statistics' score.
"""

from __future__ import annotations

import cv2
import numpy as np

NAMES = ("mean", "std", "gradient_energy", "laplacian_variance")
#: Above this cross-validated balanced accuracy, image statistics alone separate the classes.
CONFOUND_LIMIT = 0.60


def image_statistics(images: np.ndarray) -> np.ndarray:
    """(N, 4) float64 :data:`NAMES` of uint8 images (N, C, H, W)."""
    out = np.empty((len(images), len(NAMES)), np.float64)
    for n, im in enumerate(images):
        g = im.astype(np.float64).mean(0)  # (C, H, W) -> (H, W) grey
        gx = cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3)
        gy = cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3)
        out[n] = (g.mean(), g.std(), (gx * gx + gy * gy).mean(),
                  cv2.Laplacian(g, cv2.CV_64F).var())
    return out


def confound_balanced_accuracy(images: np.ndarray, y: np.ndarray,
                               groups: np.ndarray | None = None, seed: int = 0) -> float | None:
    """Cross-validated (5 folds, grouped by ``groups`` when given, so an image and its twin
    are never split across training and test) balanced accuracy of a logistic regression on
    :func:`image_statistics` predicting ``y`` (N,) 0/1; None when a class has < 2 images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    y = np.asarray(y, np.int64)
    n_folds = int(min(5, np.bincount(y, minlength=2).min()))
    if groups is not None:
        n_folds = min(n_folds, len(np.unique(groups)))
    if n_folds < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    x = image_statistics(images)
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed) if groups is None \
        else GroupKFold(n_folds)
    with threadpool_limits(1):  # a small fit: one BLAS thread (many wait longer than they work)
        scores = cross_val_score(model, x, y, groups=groups, cv=cv, scoring="balanced_accuracy")
    return float(np.mean(scores))
