"""What one stage of a stack is: its kind, its learner and its geometry (:class:`StageConfig`).

Three kinds of stage, each ``unit responses -> pooling`` with its own learner:

- ``"local"``: an RBM with untied weights at every position (Le et al. 2012's local receptive
  fields), L2 pooling over a window of each map, local contrast normalisation.
- ``"tied"``: one filter bank shared by every position (a convolution), learned by a
  convolutional RBM (Lee et al. 2009, ``learner = "rbm"``) or by spherical k-means on whitened
  patches (Coates & Ng 2011, ``learner = "kmeans"``); each response optionally split by sign into
  two maps, then RMS/L2/max pooling.
- ``"competitive"``: windows of the stage below, read at every position of every size of an
  image pyramid (``sizes``), whitened to ``dims`` values and normalised; ``n_maps`` units that
  compete for each window, learned by a one-of-K RBM (``"rbm"``, the RBM form of spherical
  k-means) or by spherical k-means (``"kmeans"``); each unit pooled by max over every position
  and size (its response is ``u_k . w``, ``u_k`` its weights and ``w`` the unit-length window).

:func:`stage_shapes` gives each kind's shapes; :func:`check_stage` its one-line errors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from models.rbm.dense import RBMConfig
from models.rbm.local_geometry import positions

KINDS = ("local", "tied", "competitive")
LEARNERS = ("rbm", "kmeans")
POOL_KINDS = ("l2", "rms", "max")


@dataclass(frozen=True, kw_only=True)
class StageConfig(RBMConfig):
    """One stage; fields are given by keyword.

    Attributes
    ----------
    kind : ``"local"``, ``"tied"`` or ``"competitive"`` (see the module docstring).
    learner : ``"rbm"`` or ``"kmeans"`` (``"local"`` stages take ``"rbm"`` only).
    field : receptive-field side in units of the stage's input maps (the window side of a
        competitive stage).
    stride : step between receptive fields.
    n_maps : units per position (K); a competitive stage's number of competing units.
    pool, pool_stride, pool_kind : pooling window side, step and kind (``"l2"``, ``"rms"``,
        ``"max"``) over one map's positions (local and tied stages).
    lcn_sigma : std (in pooled positions) of the LCN after pooling (local stages).
    sign_split : a tied stage's response ``x`` becomes two maps ``relu(x), relu(-x)``.
    sizes : a competitive stage reads the frame at each ``size x size`` (an image pyramid; the
        stages below it must be tied, so that they run at any size); empty: once, as given.
    dims : whitened values per window (competitive stages).
    whiten_eps : the whitening's regulariser, as a share of the mean kept variance (competitive)
        or of a unit patch variance (tied k-means).
    rows_per_frame : training rows drawn per frame (tied k-means: patches; competitive: windows).
    init : where a competitive stage's units start: ``"exemplar"``, at random whitened training
        windows; ``"spread"``, at spread-out ones (k-means++ seeding,
        :mod:`models.competitive.seeding`).
    visible : ``"gaussian"`` or ``"bernoulli"`` (local stages; tied RBMs are Gaussian).
    learning_rate : overrides the stack's ``UpdateConfig.learning_rate`` for this stage.
    k, persistent, n_chains, sparsity_target, sparsity_cost, sparsity_decay, init_std,
    check_interval : the RBM learner's, inherited from ``RBMConfig``.
    """

    kind: Literal["local", "tied", "competitive"] = "local"
    learner: Literal["rbm", "kmeans"] = "rbm"
    field: int
    stride: int = 1
    n_maps: int = 8
    pool: int = 5
    pool_stride: int = 1
    pool_kind: Literal["l2", "rms", "max"] = "l2"
    lcn_sigma: float = 1.0
    sign_split: bool = False
    sizes: tuple[int, ...] = ()
    dims: int = 64
    whiten_eps: float = 0.1
    rows_per_frame: int = 16
    init: Literal["exemplar", "spread"] = "exemplar"
    visible: Literal["gaussian", "bernoulli"] = "gaussian"
    learning_rate: float | None = None

    def rbm_config(self) -> RBMConfig:
        """The RBMConfig of this stage's learner (its fields, taken by name)."""
        return RBMConfig(**{f.name: getattr(self, f.name) for f in fields(RBMConfig)})


def stage_shapes(st: StageConfig, shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
    """``{"hidden": (C, H, W), "output": (C, H, W)}`` of a stage whose input is ``shape``
    (a competitive stage has no position grid to show: its units are pooled over all of them,
    so it gives ``"output"`` only)."""
    _, size, _ = shape
    if st.kind == "competitive":
        return {"output": (st.n_maps, 1, 1)}
    grid = positions(size, st.field, st.stride)
    side = positions(grid, st.pool, st.pool_stride)
    maps = st.n_maps * (2 if st.kind == "tied" and st.sign_split else 1)
    return {"hidden": (st.n_maps, grid, grid), "output": (maps, side, side)}


def check_stage(st: StageConfig, shape: tuple[int, int, int], name: str, *, top: bool) -> None:
    """Raise ValueError naming the field if ``st`` cannot run on inputs of ``shape``."""
    _, size, _ = shape
    if st.kind not in KINDS:
        raise ValueError(f"{name}.kind={st.kind!r} must be one of {KINDS}")
    if st.learner not in LEARNERS or (st.kind == "local" and st.learner != "rbm"):
        raise ValueError(f"{name}.learner={st.learner!r}: local stages take 'rbm', tied and "
                         f"competitive stages 'rbm' or 'kmeans'")
    for attr in ("field", "stride", "n_maps", "pool", "pool_stride", "k", "dims",
                 "rows_per_frame"):
        if int(getattr(st, attr)) < 1:
            raise ValueError(f"{name}.{attr}={getattr(st, attr)} must be >= 1")
    if st.field > size:
        raise ValueError(f"{name}.field={st.field} > input {size}")
    if st.pool_kind not in POOL_KINDS:
        raise ValueError(f"{name}.pool_kind={st.pool_kind!r} must be one of {POOL_KINDS}")
    if not st.lcn_sigma > 0 or not st.whiten_eps > 0:
        raise ValueError(f"{name}.lcn_sigma and whiten_eps must be > 0")
    if st.visible not in ("gaussian", "bernoulli"):
        raise ValueError(f"{name}.visible={st.visible!r} must be 'gaussian' or 'bernoulli'")
    if st.learning_rate is not None and not st.learning_rate > 0:
        raise ValueError(f"{name}.learning_rate={st.learning_rate} must be > 0")
    if st.init not in ("exemplar", "spread") or (st.init == "spread"
                                                  and st.kind != "competitive"):
        raise ValueError(f"{name}.init={st.init!r}: 'exemplar', or 'spread' for a competitive "
                         f"stage")
    if st.kind == "competitive":
        _check_competitive(st, shape, name, top)
        return
    if st.sizes:
        raise ValueError(f"{name}.sizes: only a competitive stage reads a pyramid")
    grid = positions(size, st.field, st.stride)
    if st.pool > grid:
        raise ValueError(f"{name}.pool={st.pool} > {grid} hidden positions per side "
                         f"(input {size}, field {st.field}, stride {st.stride})")


def _check_competitive(st: StageConfig, shape: tuple[int, int, int], name: str,
                       top: bool) -> None:
    """A competitive stage's own rules (its window fits every level, whitening fits)."""
    c, size, _ = shape
    if not top:
        raise ValueError(f"{name}.kind='competitive' pools over every position: it must be the "
                         f"top stage")
    if st.dims > c * st.field * st.field:
        raise ValueError(f"{name}.dims={st.dims} > {c}x{st.field}x{st.field} values per window")
    if st.n_maps < 2:
        raise ValueError(f"{name}.n_maps={st.n_maps}: units that compete need n_maps >= 2")
