"""How :class:`models.rbm.estimator.BernoulliRBMEstimator` runs its mini-batches: one strategy.

All three strategies run the estimator's rule over the mini-batches ``X[starts[i]:starts[i+1]]``
behind one method, :meth:`FitStep.run`, and update the RBM in place:

- :class:`ComputeApply`: the core's general step, ``apply_update(compute_update(v))`` (any
  CD-k / PCD-k setting, momentum, weight decay, sparsity).
- :class:`TorchPCD1`: scikit-learn's rule (PCD-1, momentum-free SGD) in fused torch ops on
  reused buffers (:class:`models.rbm.pcd1_fused.FusedPCD1`): same arithmetic and random stream as
  the general step, fewer passes; for large mini-batches and GPUs.
- :class:`CompiledPCD1`: the same rule as one compiled numba loop per epoch
  (:func:`models.kernels.estimator.pcd1_batches`, its own counter-based random stream), for small
  CPU mini-batches, where eager torch spends more time dispatching than multiplying.

:func:`choose_fit_step` picks one from the RBM's settings, device and the mini-batch size; the
estimator builds it once per RBM and batch size.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from models.kernels import estimator as estimator_kernels
from models.kernels.threads import cpu_threads
from models.rbm.dense import BernoulliRBM
from models.rbm.pcd1_fused import FusedPCD1

SMALL_WORK = 1 << 22  # multiply-adds of one mini-batch's matmul below which one thread is faster


class FitStep(Protocol):
    """Runs an RBM's training rule over mini-batches, updating it in place."""

    def run(self, X: np.ndarray, starts: np.ndarray, n_epochs: int) -> None:
        """``n_epochs`` passes over the mini-batches ``X[starts[i]:starts[i + 1]]`` in order."""


def plain_rule(rbm: BernoulliRBM) -> bool:
    """True for scikit-learn's rule: PCD-1, momentum-free SGD, no decay, no sparsity."""
    cfg, upd = rbm.config, rbm.update_config
    return (
        cfg.k == 1
        and cfg.persistent
        and cfg.sparsity_target is None
        and rbm.chain_h is not None
        and upd.method == "sgd"
        and upd.momentum == 0.0
        and upd.initial_momentum == 0.0
        and upd.weight_decay == 0.0
    )


def threads_for(rbm: BernoulliRBM, n_rows: int) -> int | None:
    """1 CPU thread when a mini-batch's matmuls are tiny (< 2^22 multiply-adds: the thread
    hand-off costs more than the product), else None (leave torch's count); None off CPU."""
    if rbm.device.type != "cpu":
        return None
    return 1 if n_rows * rbm.n_visible * rbm.n_hidden < SMALL_WORK else None


def choose_fit_step(rbm: BernoulliRBM, n_rows: int, *, compiled: bool = True) -> FitStep:
    """The strategy for mini-batches of ``n_rows`` rows.

    The compiled loop (``compiled=True`` and numba installed) serves the plain rule on CPU when
    the mini-batch is small enough to be overhead-bound (one thread, see :func:`threads_for`);
    bigger ones are GEMM-bound and run faster through torch's multi-threaded GEMMs.
    """
    threads = threads_for(rbm, n_rows)
    if not plain_rule(rbm):
        return ComputeApply(rbm, threads)
    if compiled and estimator_kernels.HAVE_NUMBA and rbm.device.type == "cpu" and threads == 1:
        return CompiledPCD1(rbm)
    return TorchPCD1(rbm, threads)


def _batches(X: np.ndarray, rbm: BernoulliRBM, starts: np.ndarray) -> tuple[torch.Tensor, list]:
    """X on the RBM's device and dtype (zero-copy on CPU when dtypes match) and its slices."""
    v = torch.from_numpy(X).to(device=rbm.device, dtype=rbm.dtype)
    return v, [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]


class ComputeApply:
    """The general step: ``rbm.apply_update(rbm.compute_update(v))`` per mini-batch."""

    def __init__(self, rbm: BernoulliRBM, threads: int | None) -> None:
        self.rbm, self.threads = rbm, threads

    def run(self, X: np.ndarray, starts: np.ndarray, n_epochs: int) -> None:
        rbm = self.rbm
        v, slices = _batches(X, rbm, starts)
        with cpu_threads(self.threads):
            for _ in range(n_epochs):
                for s in slices:
                    rbm.apply_update(rbm.compute_update(v[s]))


class TorchPCD1:
    """PCD-1 with momentum-free SGD in fused torch ops (:class:`FusedPCD1`, buffers reused
    while the mini-batch size stays the same)."""

    def __init__(self, rbm: BernoulliRBM, threads: int | None) -> None:
        self.rbm, self.threads = rbm, threads
        self.fused: FusedPCD1 | None = None

    def run(self, X: np.ndarray, starts: np.ndarray, n_epochs: int) -> None:
        rbm = self.rbm
        v, slices = _batches(X, rbm, starts)
        with cpu_threads(self.threads):
            for _ in range(n_epochs):
                for s in slices:
                    vs = v[s]
                    if self.fused is None or not self.fused.fits(rbm, vs.shape[0]):
                        self.fused = FusedPCD1(rbm, vs.shape[0])
                    self.fused.step(vs)
                    rbm.count_updates(1)


class CompiledPCD1:
    """PCD-1 with momentum-free SGD as one compiled numba call per epoch; checks the parameters
    for divergence at the end of every run (free on CPU)."""

    def __init__(self, rbm: BernoulliRBM) -> None:
        self.rbm = rbm

    def run(self, X: np.ndarray, starts: np.ndarray, n_epochs: int) -> None:
        rbm = self.rbm
        p = rbm.params
        n_batches = len(starts) - 1
        for _ in range(n_epochs):
            # two keys of the counter-based generator per batch, drawn in one go
            keys = torch.randint(0, 2**63 - 1, (2 * n_batches,), generator=rbm.generator)
            estimator_kernels.pcd1_batches(
                X, starts, p["W"].numpy(), p["b"].numpy(), p["c"].numpy(), rbm.chain_h.numpy(),
                float(rbm.update_config.learning_rate), keys.numpy(),
            )
            rbm.count_updates(n_batches)
        rbm.check_finite()
